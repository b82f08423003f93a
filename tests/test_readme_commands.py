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


def _readme_commands() -> list[str]:
    """Every ``python ...`` line of the README's bash blocks (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("python "):
                out.append(" ".join(line.split()))
    return out


def test_the_readme_shows_these_commands_verbatim() -> None:
    shown = _readme_commands()
    for command in (TRAIN, SMALL_IMAGES_SEARCH, SMALL_IMAGES_TRAIN):
        assert " ".join(command.split()) in shown, command


#: The README's search and one-epoch training on small images (the CIFAR-10 JPEG tree).
SMALL_IMAGES_SEARCH = "python search.py --config configs/search/mbv2_cifar10.yaml --data.init_args.root cifar10_jpeg"
SMALL_IMAGES_TRAIN = (
    "python train.py fit --config configs/train/mbv2_imagenet.yaml --model.arch runs/search/mbv2_cifar10/winner.yaml "
    "--data.init_args.root cifar10_jpeg --model.num_classes 10 --trainer.max_epochs 1 --trainer.accelerator cpu "
    "--trainer.devices 1 --trainer.precision 32-true"
)


def test_small_images_search_then_one_epoch_from_the_readme(tmp_path: Path, monkeypatch, cifar10_jpeg: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "cifar10_jpeg").symlink_to(cifar10_jpeg)
    winner = search.main([*_args(SMALL_IMAGES_SEARCH, "search.py"), "--search.num_candidates", "3"])
    assert winner.space == "mbv2" and winner.resolution == 32 and winner.flops <= 20e6
    assert Winner.from_yaml(tmp_path / "runs" / "search" / "mbv2_cifar10" / "winner.yaml") == winner
    cli = train.main([*_args(SMALL_IMAGES_TRAIN, "train.py"), "--trainer.limit_train_batches=2",
                      "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
                      "--trainer.enable_progress_bar=false", "--data.init_args.num_workers=0"])  # fmt: skip
    assert cli.model.hparams.model_kwargs["arch"] == winner.arch and cli.trainer.global_step == 2
    assert cli.datamodule.image_size == 32, "trains at the winner's resolution"


def test_the_readme_evaluation_commands_run_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's commands over the stored scores run verbatim (they score nothing)."""
    import runpy
    import sys

    from nas.evaluate.__main__ import main as evaluate

    monkeypatch.chdir(tmp_path)  # runs/ lands here
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    stored = [c for c in _readme_commands() if c.startswith("python -m nas.evaluate") and "--stored-only" in c]
    searches = [c for c in _readme_commands() if c.startswith("python benchmarks/search_nb201.py")]
    assert stored and searches, "the README shows how to rebuild the tables from the stored scores"
    for command in stored:
        summary = evaluate(shlex.split(command)[3:] + ["--no-progress"])
        assert summary["cells"] > 0 and "0 scored in this run" in capsys.readouterr().out, command
    for command in searches:
        monkeypatch.setattr(sys, "argv", shlex.split(command)[1:])
        runpy.run_path(str(tmp_path / shlex.split(command)[1]), run_name="__main__")
        out = capsys.readouterr().out
        assert "scores computed in this run: 0" in out and "random: 93.33 ± 0.46" in out, out[-500:]
