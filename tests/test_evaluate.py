"""The one evaluation command (``python -m nas.evaluate``) and the shared-pass scorer beneath it."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas import evaluate
from nas.evaluate.__main__ import main
from nas.proxies import base
from nas.proxies.multi import expand, failed, score_many
from tests.test_baselines import _one_thread, small_batch, small_nb201  # noqa: F401  (autouse fixture)

RESULTS = "benchmarks/results"


@pytest.fixture
def scratch_registry(monkeypatch):
    """Proxies registered in a test disappear afterwards."""
    monkeypatch.setattr(base.REGISTRY, "_entries", dict(base.REGISTRY._entries))


def _rows(folder):
    with open(folder / "candidates.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_rank_correlations_and_top_metrics() -> None:
    tau, rho = evaluate.rank_correlations([1, 2, 3, 4], [10, 20, 30, 40])
    assert tau == pytest.approx(1.0) and rho == pytest.approx(1.0)
    tau, rho = evaluate.rank_correlations([float("-inf"), 2, 3], [1, 2, 3])
    assert rho == pytest.approx(1.0), "-inf is the worst score and ranks lowest"
    with pytest.raises(ValueError, match="NaN"):
        evaluate.rank_correlations([float("nan"), 1], [1, 2])
    assert evaluate.top_mean([3, 1, 2], [90, 70, 80], 2) == pytest.approx(85.0)


def test_ndcg_is_vkdnws() -> None:
    """Reference values of scikit-learn's ndcg_score(2 ** acc - 1, score, k=1000), VKDNW's definition."""
    acc = [94.0, 93.5, 91.0, 85.0, 70.0]
    assert evaluate.ndcg([0.3, 0.9, 0.5, 0.1, 0.2], acc) == pytest.approx(0.8524340149, abs=1e-9)
    assert evaluate.ndcg([0.3, 0.9, 0.5, 0.1, 0.2], acc, k=1) == pytest.approx(0.7071067812, abs=1e-9)
    assert evaluate.ndcg([0.9, 0.9, 0.5, 0.1, 0.2], acc) == pytest.approx(0.96414, abs=1e-5), "ties share their gain"
    assert evaluate.ndcg(acc, acc) == pytest.approx(1.0)
    damaged = [80, 70, 100, 90, 60, 50, 40, 30, 20, 10]  # the VKDNW paper's toy example
    assert evaluate.ndcg(list(range(10, 0, -1)), damaged) == pytest.approx(0.5001, abs=1e-4)


def test_search_expectation_is_the_mean_winner_of_random_draws() -> None:
    truth = np.arange(10, dtype=float)
    m = truth[:, None].copy()  # a perfect proxy: the winner of a draw is its best cell
    mean, se = evaluate.search_expectation(m, truth, lambda x: x[:, 0], n=10, draws=5)
    assert mean == 9.0 and se == 0.0, "N = all cells always finds the best"
    rng = np.random.default_rng(0)
    expected = np.mean([truth[rng.choice(10, 3, replace=False)].max() for _ in range(50)])
    mean, _ = evaluate.search_expectation(m, truth, lambda x: x[:, 0], n=3, draws=50, seed=0)
    assert mean == pytest.approx(expected)


def test_sampling_is_seeded_and_distinct() -> None:
    table = nas.data.nb201_table()
    a = evaluate.sample_rows(table, 50, 3)
    assert a == evaluate.sample_rows(table, 50, 3) and len(set(a)) == 50
    assert a != evaluate.sample_rows(table, 50, 4)
    with pytest.raises(ValueError, match=r"--n must be in \[1, 15625\]"):
        evaluate.sample_rows(table, 0, 0)


def test_shared_passes_equal_the_standalone_proxies() -> None:
    model = small_nb201()
    x, y = small_batch()
    names = [n for f in map(base.FAMILIES.get, base.FAMILIES.available()) for n in f.members]
    many = score_many(names, model, x, y)
    assert list(many) == names
    for n in names:
        alone = nas.proxies.score(n, model, x, y)
        assert many[n].score == pytest.approx(alone.score, rel=1e-9, abs=1e-12), n
        assert many[n].diagnostics == alone.diagnostics, n
        assert many[n].seconds > 0


def test_options_split_a_shared_pass_only_where_they_differ() -> None:
    model, (x, y) = small_nb201(), small_batch()
    opts = {"wrcor": {"padding": "circular"}, "rcor": {"padding": "circular"}, "acor": {}}
    many = score_many(["wrcor", "rcor", "acor"], model, x, y, opts)
    for n in ("wrcor", "rcor", "acor"):
        alone = nas.proxies.score(n, model, x, y, **opts[n])
        assert many[n].score == pytest.approx(alone.score, rel=1e-9), n
        assert many[n].diagnostics["padding"] == opts[n].get("padding", "model")
    with pytest.raises(ValueError, match=r"options given for \['synflow'\]"):
        score_many(["wrcor"], model, x, y, {"synflow": {}})
    with pytest.raises(ValueError, match="padding='reflect' is not allowed"):
        score_many(["wrcor"], model, x, y, {"wrcor": {"padding": "reflect"}})


def test_aggregates_expand_to_distinct_members(scratch_registry) -> None:
    calls: list[str] = []

    @base.register("counting", needs_targets=False)
    def counting(model, inputs, targets=None):
        calls.append("counting")
        return base.ProxyResult("counting", 1.0)

    nas.proxies.register_aggregate("twice", ("counting", "l2_norm"))
    assert expand(["sjw", "spw", "wrcor"]) == ["synflow", "jacob_cov", "wrcor", "l2_norm"]
    out = score_many(["twice", "counting", "l2_norm"], small_nb201(), *small_batch())
    assert list(out) == ["counting", "l2_norm"] and calls == ["counting"]
    with pytest.raises(ValueError, match="unknown proxy 'nope'; available: .*sjw"):
        score_many(["nope"], small_nb201(), *small_batch())
    with pytest.raises(ValueError, match="needs labels"):
        score_many(["l2_norm", "snip"], small_nb201(), small_batch()[0])


def test_a_failing_proxy_is_recorded_and_the_others_complete(scratch_registry) -> None:
    @base.register("broken", needs_targets=False)
    def broken(model, inputs, targets=None):
        raise RuntimeError("boom")

    model = small_nb201()
    out = score_many(["broken", "synflow", "grad_norm", "wrcor"], model, *small_batch())
    assert failed(out["broken"]) and out["broken"].score == float("-inf")
    assert out["broken"].diagnostics["error"] == "RuntimeError: boom"
    assert all(math.isfinite(out[n].score) and not failed(out[n]) for n in ("synflow", "grad_norm", "wrcor"))

    class NoLayers(nn.Module):  # the whole gradient family fails; WRCor still runs
        def forward(self, x):
            return torch.relu(x.flatten(1)[:, :5] * 2.0)

    x = torch.randn(6, 3, 4, 4)
    y = torch.randint(0, 5, (6,))
    out = score_many(["grad_norm", "snip", "grasp", "wrcor", "zen"], NoLayers(), x, y)
    for n in ("grad_norm", "snip", "grasp"):
        assert failed(out[n]) and "has no Conv/Linear" in out[n].diagnostics["error"], out[n]
    assert failed(out["zen"]) and "BatchNorm" in out["zen"].diagnostics["error"]
    assert not failed(out["wrcor"])


def test_end_to_end_writes_folder_table_export_and_resumes(tmp_path, capsys) -> None:
    args = ["--n", "3", "--seeds", "0", "--proxies", "wrcor", "params", "sjw", "--batch-size", "8",
            "--threads", "1", "--export-nbsz", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    summary = main(args)
    out = capsys.readouterr().out
    for name in ("wrcor", "params", "synflow", "jacob_cov", "sjw"):
        assert f"| {name} |" in out, name
    assert "### cifar100" in out and "nDCG" in out and "E[random search]" in out and "x fwd+bwd" in out
    rows = _rows(tmp_path)
    assert len(rows) == 3 and {"wrcor", "sec_wrcor", "fwd_bwd", "errors"} <= set(rows[0])
    assert "sjw" not in rows[0], "aggregates are not per-architecture scores"
    assert all(np.isfinite(float(r["wrcor"])) and float(r["fwd_bwd"]) > 0 for r in rows)
    assert (tmp_path / "scatter.png").stat().st_size > 1000
    assert set(summary["metrics"]["sjw"]) == {"cifar10", "cifar100", "imagenet16_120"}
    nbsz = json.loads((tmp_path / "zc_nasbench201.json").read_text())
    assert set(nbsz) == {"cifar10", "cifar100", "ImageNet16-120"}
    table = nas.data.nb201_table()
    entry = nbsz["cifar100"][rows[0]["arch"]]
    assert entry["val_accuracy"] == pytest.approx(table.accuracy["cifar100"][table.index_of[rows[0]["arch"]]])
    assert set(entry["synflow"]) >= {"score", "time"}
    main(args)  # a rerun reuses every stored score
    assert len(_rows(tmp_path)) == 3 and "0 scored in this run" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # other proxies do not silently mix into the same folder
        main([*args, "--proxies", "acor"])
    assert "holds a run with other settings" in capsys.readouterr().err


def test_the_network_seed_is_the_benchmark_index_rule(tmp_path) -> None:
    main(["--n", "1", "--proxies", "wrcor", "--batch-size", "8", "--init-seed", "2", "--out", str(tmp_path),
          "--no-progress", "--proxy-kwargs", "{wrcor: {padding: circular}}"])  # fmt: skip
    row = _rows(tmp_path)[0]
    space, table = nas.spaces.get("nb201"), nas.data.nb201_table()
    torch.manual_seed(2 * 1_000_003 + table.index_of[row["arch"]])
    model = space.build(space.decode(row["arch"]), num_classes=10)
    x, y = nas.data.cifar10_batch(8)
    assert float(row["wrcor"]) == pytest.approx(nas.proxies.score("wrcor", model, x, y, padding="circular").score, abs=1e-9)


def test_shards_combine_through_caches_into_the_unsharded_table(tmp_path, capsys) -> None:
    base_args = ["--n", "4", "--seeds", "0", "--proxies", "params", "synflow", "--batch-size", "8", "--no-progress"]
    for k in (0, 1):
        summary = main([*base_args, "--shard", f"{k}/2", "--out", str(tmp_path / f"s{k}")])
        assert summary["cells"] == 2
    shards = [_rows(tmp_path / f"s{k}") for k in (0, 1)]
    assert not {r["arch"] for r in shards[0]} & {r["arch"] for r in shards[1]}
    capsys.readouterr()
    from_shards = main([*base_args, "--out", str(tmp_path / "merged"), "--cache", str(tmp_path / "s0"), str(tmp_path / "s1")])
    assert "0 scored in this run" in capsys.readouterr().out
    whole = main([*base_args, "--out", str(tmp_path / "whole")])
    assert from_shards["metrics"] == whole["metrics"]


def test_stored_only_tables_what_is_stored(tmp_path, capsys) -> None:
    base_args = ["--n", "6", "--seeds", "0", "--proxies", "params", "--batch-size", "8", "--no-progress", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        main([*base_args, "--stored-only"])
    assert "no seed has 3 or more stored cells" in capsys.readouterr().err
    main([*base_args, "--shard", "0/2"])
    summary = main([*base_args, "--stored-only"])
    assert "seed 0: 3 stored" in capsys.readouterr().out
    assert summary["cells"] == 3


def test_stored_tables_rebuild_without_rescoring(capsys) -> None:
    """The shipped 3 x 1,000-cell zoo scores give the table BENCHMARKS.md records."""
    summary = main(["--n", "1000", "--seeds", "0", "1", "2", "--proxies", "wrcor", "sjw", "--stored-only", "--no-progress",
                    "--cache", f"{RESULTS}/nb201_zoo_3x1000", "--expectation-draws", "20", "--out", "/tmp/evaluate-stored"])  # fmt: skip
    rho = summary["metrics"]["wrcor"]["cifar10"]["rho"]
    assert (round(rho["mean"], 3), round(rho["std"], 3)) == (0.828, 0.007)
    assert round(summary["metrics"]["sjw"]["cifar10"]["rho"]["mean"], 3) == 0.875


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--shard", "2/2", "0 <= K < N"), ("--shard", "a/b", "K/N"), ("--device", "tpu", "cpu, cuda, cuda:N or auto"),
     ("--proxies", "nope", "unknown proxy 'nope'"), ("--space", "mbv2", "has no ground-truth table"),
     ("--proxy-kwargs", "[1]", "must map proxy names")],
)  # fmt: skip
def test_bad_arguments_are_rejected(flag, value, message, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--n", "2", flag, value, "--out", "/tmp/evaluate-bad"])
    assert message in capsys.readouterr().err


def test_options_are_not_matched_by_prefix(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--n", "2", "--prox", "wrcor"])
    assert "unrecognized arguments: --prox" in capsys.readouterr().err


@pytest.mark.parametrize(("space", "export"), [("nb101", "zc_nasbench101.json"), ("darts", "zc_nasbench301.json")])
def test_every_benchmark_space_evaluates_on_its_own_table(space, export, tmp_path, capsys) -> None:
    summary = main(["--space", space, "--n", "4", "--proxies", "params", "flops", "--batch-size", "4", "--no-progress",
                    "--no-reference-timing", "--export-nbsz", "--out", str(tmp_path)])  # fmt: skip
    assert summary["cells"] == 4 and set(summary["metrics"]["params"]) == {"cifar10"}
    table = nas.spaces.get(space).benchmark()
    nbsz = json.loads((tmp_path / export).read_text())
    (arch, entry), *_ = nbsz["cifar10"].items()
    assert entry["val_accuracy"] == pytest.approx(table.accuracy["cifar10"][table.arch.index(arch)])
    assert "init seed 0" in capsys.readouterr().out
