"""Lightning callbacks built on :mod:`nas`."""

from callbacks.progressive_resize import ProgressiveResize
from callbacks.requeue import RequeueOnSignal
from callbacks.zero_shot_search import ZeroShotSearch

__all__ = ["ProgressiveResize", "RequeueOnSignal", "ZeroShotSearch"]
