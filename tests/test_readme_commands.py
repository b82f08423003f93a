"""The README's quickstart and train step, run as a user runs them (shrunk: CPU, few candidates, one step)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import search
import train
from nas.winner import Winner

ROOT = Path(__file__).resolve().parents[1]

#: ``make search`` (the quickstart) runs this; it writes runs/search/nb201_cifar10/winner.yaml.
SEARCH = "python search.py"
#: The README's train step, right after ``make search``.
TRAIN = (
    "python train.py fit --config configs/train/nb201_cifar10.yaml "
    "--model.arch runs/search/nb201_cifar10/winner.yaml"
)
SHRINK_SEARCH = ["--search.num_candidates", "3", "--search.batch_size", "8", "--trainer.accelerator", "cpu"]
SHRINK_TRAIN = [
    "--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
    "--data.init_args.batch_size=16",
]  # fmt: skip


def _args(command: str, program: str) -> list[str]:
    words = shlex.split(command)
    assert words[:2] == ["python", program], command
    return words[2:]


def test_make_search_runs_the_quickstart_command() -> None:
    recipe = re.search(r"^search:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None and recipe.group(1).split() == ["$(PY)", *shlex.split(SEARCH)[1:]], recipe


def test_the_train_step_works_right_after_the_quickstart(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # runs/ lands here, as in a fresh checkout
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    winner = search.main([*_args(SEARCH, "search.py"), *SHRINK_SEARCH])
    written = tmp_path / "runs" / "search" / "nb201_cifar10" / "winner.yaml"
    assert Winner.from_yaml(written) == winner

    cli = train.main([*_args(TRAIN, "train.py"), *SHRINK_TRAIN])
    assert cli.model.hparams.arch == winner.model
    assert cli.model.hparams.model_kwargs["arch"] == winner.arch, "trains the searched cell"
    assert cli.trainer.global_step == 2
    assert (tmp_path / "runs" / "train" / "nb201_cifar10" / "checkpoints" / "last.ckpt").is_file()
