"""Lightning callbacks built on :mod:`nas`."""

from callbacks.zero_shot_search import ZeroShotSearch

__all__ = ["ZeroShotSearch"]
