"""Preemption without a lost or repeated step: SLURM's warning signal acted on between steps."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override


class RequeueOnSignal(Callback):
    """Save an HPC checkpoint and requeue the job at the first batch boundary after ``signal_name``.

    Lightning's own handler (``SLURMEnvironment(auto_requeue=True)``) saves the checkpoint inside
    the signal handler, wherever the training step is: a signal that lands inside an optimizer
    step saves ``global_step`` N with batch N+1 half done, and the restart skips a step. Here the
    handler only records the signal; at the end of the batch in flight every rank learns whether
    any rank got it, all save ``hpc_ckpt_<N>.ckpt`` in ``default_root_dir`` (the file
    ``--ckpt_path hpc`` resumes from), rank 0 runs ``requeue`` and the run stops. The restart
    continues at the next step, with no gap and no repeat.

    ``train.py`` installs it under SLURM together with ``SLURMEnvironment(auto_requeue=False)``,
    so that Lightning does not install its own handler.

    Args:
        signal_name: the signal SLURM sends before the time limit (``#SBATCH --signal``).
        requeue: the command that requeues the job; default ``scontrol requeue $SLURM_JOB_ID``.

    Raises:
        ValueError: an unknown signal name.
    """

    def __init__(self, signal_name: str = "SIGUSR1", requeue: Sequence[str] | None = None) -> None:
        if signal_name not in signal.Signals.__members__:
            raise ValueError(f"unknown signal {signal_name!r}; expected a name such as 'SIGUSR1' or 'SIGTERM'")
        self.signum = signal.Signals[signal_name]
        self.requeue = list(requeue) if requeue is not None else None
        self.received = False
        self.saved: str | None = None
        self._previous: Any = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = True

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._previous = signal.signal(self.signum, self._on_signal)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        path = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        trainer.save_checkpoint(path)
        self.saved = path
        rank_zero_info(f"{self.signum.name}: saved {path} at global step {trainer.global_step}; requeueing the job")
        if trainer.is_global_zero:
            command = self.requeue or ["scontrol", "requeue", os.environ.get("SLURM_JOB_ID", "")]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                rank_zero_info(f"requeue failed ({' '.join(command)}): {result.stderr.strip()}")
            else:
                rank_zero_info(f"Requeued SLURM job: {os.environ.get('SLURM_JOB_ID', '?')}")
        trainer.should_stop = True

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None
