from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nas
import search
from nas.winner import Winner
from tests.conftest import image_folder

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--search.num_candidates", "4", "--search.batch_size", "8", "--trainer.accelerator", "cpu"]


def scores(folder: Path) -> dict[str, str]:
    with open(folder / "candidates.csv", newline="") as f:
        return {r["arch"]: r["wrcor"] for r in csv.DictReader(f)}


def test_default_search_writes_every_result(tmp_path: Path, capsys) -> None:
    winner = search.main([*SMALL, "--search.output_dir", str(tmp_path)])
    assert winner.space == "nb201" and winner.model == "nb201" and winner.proxy == "wrcor"
    assert Winner.from_yaml(tmp_path / "winner.yaml") == winner
    assert len(scores(tmp_path)) == 4
    assert (tmp_path / "search.png").exists()
    assert winner.score == max(float(v) for v in scores(tmp_path).values())


def test_bad_names_fail_before_any_work(tmp_path: Path) -> None:
    for flag, value, match in [
        ("--search.proxy", "wrcr", "unknown proxy 'wrcr'; available: "),
        ("--search.space", "nb301", f"unknown search space 'nb301'; available: {', '.join(nas.spaces.available())}"),
    ]:
        with pytest.raises((ValueError, SystemExit)) as info:
            search.main([*SMALL, flag, value, "--search.output_dir", str(tmp_path)])
        if info.type is ValueError:
            assert match in str(info.value)
    assert not (tmp_path / "candidates.csv").exists()


def test_two_ddp_processes_agree_with_one(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NAS_NO_PROGRESS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    cmd = [sys.executable, str(ROOT / "search.py"), *SMALL, "--search.num_candidates", "6"]
    subprocess.run([*cmd, "--search.output_dir", str(one)], env=env, check=True, capture_output=True, cwd=ROOT)
    out = subprocess.run(
        [*cmd, "--search.output_dir", str(two), "--trainer.devices", "2", "--trainer.strategy", "ddp"],
        env=env, check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert "winner:" in out.stderr + out.stdout
    assert scores(one) == scores(two), "identical scores whether one or two processes compute them"
    assert Winner.from_yaml(one / "winner.yaml").arch == Winner.from_yaml(two / "winner.yaml").arch


def test_the_imagenet_config_stands_alone(tmp_path: Path, capsys) -> None:
    """configs/search/mbv2_imagenet.yaml inherits nothing from the NAS-Bench-201 default."""
    config = ["--config", str(ROOT / "configs" / "search" / "mbv2_imagenet.yaml")]
    with pytest.raises(SystemExit):
        search.main([*config, "--search.output_dir", str(tmp_path / "none")])
    assert "required: root" in capsys.readouterr().err
    root = image_folder(tmp_path / "images", per_class=4)
    winner = search.main([
        *config, "--data.init_args.root", str(root), "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4",
        "--search.num_candidates", "2", "--search.batch_size", "4", "--search.output_dir", str(tmp_path / "run"),
        "--trainer.accelerator", "cpu",
    ])  # fmt: skip
    assert winner.space == "mbv2" and winner.model == "wrcor_mbv2" and winner.proxy == "sjw"
    assert winner.flops <= 600e6
    assert winner.model_kwargs == {"arch": winner.arch}


def test_search_only_keeps_no_logs_or_checkpoints(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    search.main([*SMALL, "--search.output_dir", str(tmp_path / "run")])
    assert (tmp_path / "run" / "winner.yaml").is_file() and not (tmp_path / "run" / "train").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "no lightning_logs or checkpoints elsewhere"


def test_training_the_winner_keeps_logs_and_checkpoints_as_train_does(tmp_path: Path) -> None:
    out = tmp_path / "run"
    winner = search.main([
        *SMALL, "--search.output_dir", str(out), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    train = out / "train"
    assert (train / "checkpoints" / "last.ckpt").is_file(), "last.ckpt, as train.py writes it"
    assert len(list((train / "checkpoints").glob("epoch000-acc1_*.ckpt"))) == 1, "and the best by val/acc1"
    metrics = list((train / "csv").glob("version_*/metrics.csv"))
    assert metrics and "val/acc1" in metrics[0].read_text(), "CSV logs"
    assert list((train / "tensorboard").glob("version_*/events.*")), "TensorBoard logs"
    ckpt = torch.load(train / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["hyper_parameters"]["model_kwargs"] == winner.model_kwargs, "the checkpoint is the winner's"
