from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nas import benchmark


def test_rank_correlations() -> None:
    tau, rho = benchmark.rank_correlations([1, 2, 3, 4], [10, 20, 30, 40])
    assert tau == pytest.approx(1.0) and rho == pytest.approx(1.0)
    tau, rho = benchmark.rank_correlations([float("-inf"), 2, 3], [1, 2, 3])
    assert rho == pytest.approx(1.0), "-inf is the worst score and ranks lowest"
    with pytest.raises(ValueError, match="NaN"):
        benchmark.rank_correlations([float("nan"), 1], [1, 2])


def test_sampling_is_seeded_and_distinct() -> None:
    a = benchmark.sample_indices(50, 3, 15625)
    assert a == benchmark.sample_indices(50, 3, 15625) and len(set(a)) == 50
    assert a != benchmark.sample_indices(50, 4, 15625)
    with pytest.raises(ValueError, match=r"--n must be in \[1, 15625\]"):
        benchmark.sample_indices(0, 0, 15625)


def test_end_to_end_writes_csv_plot_and_resumes(tmp_path, capsys) -> None:
    args = ["--n", "3", "--seeds", "0", "--proxies", "wrcor", "params", "--batch-size", "8",
            "--reference-timing", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    summary = benchmark.main(args)
    out = capsys.readouterr().out
    assert "| wrcor |" in out and "cifar100 rho" in out and "forward+backward" in out
    with open(tmp_path / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {"wrcor", "params", "cifar10", "imagenet16_120", "sec_wrcor"} <= set(rows[0])
    assert all(np.isfinite(float(r["wrcor"])) for r in rows)
    assert (tmp_path / "scatter.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text())["architectures"] == 3
    assert set(summary["correlations"]["wrcor"]) == {"cifar10", "cifar100", "imagenet16_120"}
    # a rerun reuses every stored score
    benchmark.main([*args[:-1], "--no-progress"])
    with open(tmp_path / "scores.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3
    # a different proxy list does not silently mix into the same file
    with pytest.raises(ValueError, match="holds a run with columns"):
        benchmark.main(["--n", "3", "--proxies", "acor", "--out", str(tmp_path), "--no-progress"])


def test_unknown_proxy_is_rejected(capsys) -> None:
    with pytest.raises(SystemExit):
        benchmark.main(["--proxies", "nope"])
    assert "unknown proxy 'nope'" in capsys.readouterr().err
