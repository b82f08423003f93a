"""Training on top of :mod:`nas`: the LightningModule that trains a timm classifier."""

from training.module import ClassificationModule, load_teacher

__all__ = ["ClassificationModule", "load_teacher"]
