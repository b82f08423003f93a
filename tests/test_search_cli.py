from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

import search
from nas.winner import Winner

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
        ("--search.proxy", "wrcr", "unknown proxy or vote 'wrcr'"),
        ("--search.space", "nb301", "unknown search space 'nb301'; available: mbv2, nb201"),
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
