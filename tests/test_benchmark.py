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


def test_shards_merge_into_the_unsharded_table(tmp_path, capsys) -> None:
    base = ["--n", "4", "--seeds", "0", "--proxies", "params", "synflow", "--batch-size", "8", "--no-progress"]
    for k in (0, 1):
        summary = benchmark.main([*base, "--shard", f"{k}/2", "--out", str(tmp_path / f"s{k}")])
        assert summary["architectures"] == 2
    shards = [list(csv.DictReader(open(tmp_path / f"s{k}" / "scores.csv", newline=""))) for k in (0, 1)]
    assert not {r["index"] for r in shards[0]} & {r["index"] for r in shards[1]}
    merged = tmp_path / "merged"
    merged.mkdir()
    with open(merged / "scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(shards[0][0]))
        writer.writeheader()
        writer.writerows([*shards[0], *shards[1]])
    capsys.readouterr()
    from_shards = benchmark.main([*base, "--out", str(merged)])
    assert "0 scored in this run" in capsys.readouterr().out
    whole = benchmark.main([*base, "--out", str(tmp_path / "whole")])
    assert from_shards["correlations"] == whole["correlations"]


def test_stored_only_tables_what_is_stored(tmp_path, capsys) -> None:
    base = ["--n", "6", "--seeds", "0", "--proxies", "params", "--batch-size", "8", "--no-progress", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        benchmark.main([*base, "--stored-only"])
    assert "does not exist" in capsys.readouterr().err
    benchmark.main([*base, "--shard", "0/2"])
    summary = benchmark.main([*base, "--stored-only"])
    assert "seed 0: 3 stored" in capsys.readouterr().out
    assert summary["architectures"] == 3


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--shard", "2/2", "0 <= K < N"), ("--shard", "a/b", "K/N"), ("--device", "tpu", "cpu, cuda, cuda:N or auto")],
)
def test_bad_shard_and_device_are_rejected(flag, value, message, capsys) -> None:
    with pytest.raises(SystemExit):
        benchmark.main(["--n", "2", flag, value])
    assert message in capsys.readouterr().err


def test_circular_padding_scores_the_wrcor_family_only(tmp_path, capsys) -> None:
    import torch

    from nas import proxies, spaces
    from nas.data import cifar10_batch, nb201_table

    index = benchmark.sample_indices(1, 0, 15625)
    rows = benchmark.evaluate(index, ["wrcor"], batch_size=8, padding="circular", progress=False)
    space = spaces.get("nb201")
    torch.manual_seed(index[0])
    model = space.build(space.decode(nb201_table().arch[index[0]]), num_classes=10)
    x, y = cifar10_batch(8)
    assert rows[0]["wrcor"] == pytest.approx(proxies.score("wrcor", model, x, y, padding="circular").score, abs=1e-9)
    assert rows[0]["wrcor"] != pytest.approx(proxies.score("wrcor", model, x, y).score, abs=1e-6)
    with pytest.raises(SystemExit):
        benchmark.main(["--n", "3", "--proxies", "wrcor", "params", "--padding", "circular", "--out", str(tmp_path)])
    assert "--padding circular applies to the WRCor family only, not to params" in capsys.readouterr().err
