"""Train a timm classifier (a searched winner or any timm model) with Lightning.

Every setting lives in a YAML file under ``configs/train/`` and can be overridden on the command
line::

    python train.py fit --config configs/train/cifar10.yaml
    python train.py fit --config configs/train/imagenet_ffcv.yaml \\
        --model.arch runs/search/mbv2_imagenet/winner.yaml --trainer.devices 8 --data.init_args.batch_size 128
    python train.py fit --config configs/train/imagenet_ffcv.yaml --ckpt_path last   # resume
    python train.py validate --config configs/train/imagenet_ffcv.yaml --ckpt_path best

``--model.arch`` takes a timm model name or the path to a search's ``winner.yaml``. Checkpoints go
to ``--checkpoint.dirpath``: the best by ``val/acc1`` and ``last.ckpt`` (every epoch, and every
``--last_checkpoint.every_n_train_steps`` steps); ``--ckpt_path last`` resumes from there.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import datamodules  # noqa: F401  (so class_path: datamodules.X resolves)
from training import ClassificationModule


class TrainCLI(LightningCLI):
    """LightningCLI with two always-present, configurable checkpoint callbacks.

    ``--checkpoint.*`` keeps the best model by ``val/acc1``; ``--last_checkpoint.*`` writes
    ``last.ckpt`` into the same folder at every epoch end and every ``every_n_train_steps`` steps
    (with no monitor, so mid-epoch saves are never deferred to the next validation).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            k: v for k, v in LightningCLI.subcommands().items() if k in ("fit", "validate", "test")
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc1",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": False,
                "checkpoint.filename": "epoch{epoch:03d}-acc1_{val/acc1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 0,
                "last_checkpoint.save_last": True,
            }
        )
        parser.link_arguments("checkpoint.dirpath", "last_checkpoint.dirpath")


def main(args: Sequence[str] | None = None, run: bool = True) -> LightningCLI:
    """Parse ``args`` (default: the command line), build everything and run the subcommand.

    Args:
        args: command-line arguments, e.g. ``["fit", "--config", "configs/train/cifar10.yaml"]``.
            With ``run=False`` there is no subcommand: the arguments configure the objects only.
        run: run the subcommand (``fit``/``validate``/``test``); False only instantiates.

    Returns:
        The CLI object, holding ``trainer``, ``model`` and ``datamodule``.
    """
    return TrainCLI(
        ClassificationModule,
        LightningDataModule,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf+"},
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [LearningRateMonitor(logging_interval="step")]},
        args=list(args) if args is not None else None,
        run=run,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()
