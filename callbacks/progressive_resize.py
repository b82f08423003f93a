"""Progressive resizing: train at low resolution first, ramping up to the full one."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override


def resolution(epoch: int, start_ramp: int, end_ramp: int, min_res: int, max_res: int) -> int:
    """Training resolution of ``epoch``.

    ``min_res`` up to ``start_ramp``, ``max_res`` from ``end_ramp`` on, and in between the linear
    interpolation rounded to the nearest multiple of 32.

    Raises:
        ValueError: ``min_res > max_res`` or ``start_ramp > end_ramp``.
    """
    if min_res > max_res:
        raise ValueError(f"min_res={min_res} must be <= max_res={max_res}")
    if start_ramp > end_ramp:
        raise ValueError(f"start_ramp={start_ramp} must be <= end_ramp={end_ramp}")
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    frac = (epoch - start_ramp) / (end_ramp - start_ramp)
    return int(round((min_res + frac * (max_res - min_res)) / 32)) * 32


class ProgressiveResize(Callback):
    """Set the training crop size of an FFCV datamodule at the start of every epoch.

    The datamodule must expose ``train_decoder``, the FFCV resized-crop decoder of its training
    loader (:class:`datamodules.FFCVDataModule` does). Its ``output_size`` is assigned when
    training starts (after a checkpoint is restored) and at the start of every epoch. The
    datamodule's loader begins an epoch only when its first batch is taken and FFCV sizes its
    buffers per epoch, so the new size applies to that epoch without recompiling the pipeline.
    Validation keeps the datamodule's ``val_image_size``.

    Args:
        min_res: resolution up to ``start_ramp``.
        max_res: resolution from ``end_ramp`` on.
        start_ramp: last epoch at ``min_res``.
        end_ramp: first epoch at ``max_res``.

    Raises:
        ValueError: bad resolutions or epochs (at construction).
        TypeError: the trainer's datamodule has no ``train_decoder`` (at setup).

    Example:
        >>> ProgressiveResize(min_res=160, max_res=192, start_ramp=65, end_ramp=76)  # doctest: +ELLIPSIS
        <...ProgressiveResize object at ...>
    """

    def __init__(
        self, min_res: int = 160, max_res: int = 192, start_ramp: int = 0, end_ramp: int = 0
    ) -> None:
        if min_res < 1 or max_res < 1:
            raise ValueError(f"resolutions must be >= 1, got min_res={min_res}, max_res={max_res}")
        resolution(0, start_ramp, end_ramp, min_res, max_res)  # checks the ranges
        self.min_res = min_res
        self.max_res = max_res
        self.start_ramp = start_ramp
        self.end_ramp = end_ramp
        self.current: int | None = None

    def resolution(self, epoch: int) -> int:
        """The training resolution of ``epoch`` for this schedule."""
        return resolution(epoch, self.start_ramp, self.end_ramp, self.min_res, self.max_res)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not hasattr(trainer.datamodule, "train_decoder"):
            raise TypeError(
                "ProgressiveResize needs a datamodule with a train_decoder (FFCVDataModule), "
                f"got {type(trainer.datamodule).__name__}"
            )

    def _apply(self, trainer: pl.Trainer) -> None:
        decoder = trainer.datamodule.train_decoder
        if decoder is None:
            raise RuntimeError(
                "the datamodule's train_decoder is not built yet (no train_dataloader)"
            )
        res = self.resolution(trainer.current_epoch)
        decoder.output_size = (res, res)
        if res != self.current:
            rank_zero_info(
                f"progressive resizing: epoch {trainer.current_epoch} trains at {res}x{res}"
            )
        self.current = res

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer)  # covers a run resumed in the middle of an epoch

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer)
        pl_module.log("train/resolution", float(self.current), on_step=False, on_epoch=True)
