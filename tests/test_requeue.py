"""Preemption at a batch boundary: the HPC checkpoint holds whole steps and the restart goes on from the next."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.demos.boring_classes import BoringModel

from callbacks import RequeueOnSignal


class _Steps(Callback):
    """Records the batches trained; sends ``signum`` to this process inside batch ``at`` (mid-step)."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.seen = at, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(trainer.global_step)
        if batch_idx == self.at:
            os.kill(os.getpid(), signal.SIGUSR1)


def _trainer(root: Path, steps: int, *callbacks: Callback) -> Trainer:
    return Trainer(default_root_dir=root, max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))  # fmt: skip


def test_the_signal_is_acted_on_between_steps_and_the_restart_continues(tmp_path: Path) -> None:
    marker = tmp_path / "requeued"
    requeue = RequeueOnSignal(requeue=["touch", str(marker)])
    first = _Steps(at=2)
    torch.manual_seed(0)
    _trainer(tmp_path, 8, requeue, first).fit(BoringModel())
    assert first.seen == [0, 1, 2], "the batch in flight finishes; no new one starts"
    assert requeue.saved == str(tmp_path / "hpc_ckpt_1.ckpt") and marker.exists(), "saved, then requeued"
    assert torch.load(requeue.saved, weights_only=False)["global_step"] == 3
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL, "the previous handler is back"

    again = _Steps()
    _trainer(tmp_path, 8, again).fit(BoringModel(), ckpt_path=requeue.saved)
    assert again.seen == [3, 4, 5, 6, 7], "continues at the next step: no step lost, none repeated"


def test_an_unknown_signal_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        RequeueOnSignal("SIGNOPE")
