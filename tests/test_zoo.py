from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

import nas
from nas import zoo
from nas.proxies import base
from nas.proxies.many import SHARED_PASSES, expand, failed, score_many
from tests.test_baselines import _one_thread, small_batch, small_nb201  # noqa: F401  (autouse fixture)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Proxies registered in a test disappear afterwards."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_shared_passes_equal_the_standalone_proxies() -> None:
    model = small_nb201()
    x, y = small_batch()
    names = [n for p in SHARED_PASSES for n in p.members]
    many = score_many(names, model, x, y)
    assert list(many) == names
    for n in names:
        alone = nas.proxies.score(n, model, x, y)
        assert many[n].score == pytest.approx(alone.score, rel=1e-9, abs=1e-12), n
        assert many[n].diagnostics == alone.diagnostics, n
        assert many[n].seconds > 0


def test_votes_expand_to_distinct_members(scratch_registry) -> None:
    calls: list[str] = []

    @base.register("counting", needs_targets=False)
    def counting(model, inputs, targets=None):
        calls.append("counting")
        return base.ProxyResult("counting", 1.0)

    nas.proxies.register_vote("twice", ("counting", "l2_norm"))
    try:
        assert expand(["sjw", "spw", "wrcor"]) == ["synflow", "jacob_cov", "wrcor", "l2_norm"]
        out = score_many(["twice", "counting", "l2_norm"], small_nb201(), *small_batch())
        assert list(out) == ["counting", "l2_norm"] and calls == ["counting"]
    finally:
        nas.proxies.vote._VOTES.pop("twice")
    with pytest.raises(ValueError, match="unknown proxy or vote 'nope'; proxies: .*votes: .*sjw"):
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


def test_zoo_end_to_end(tmp_path, capsys) -> None:
    args = ["--n", "3", "--seeds", "0", "--batch-size", "8", "--threads", "1", "--out", str(tmp_path), "--no-progress"]
    summary = zoo.main(args)
    out = capsys.readouterr().out
    everything = [*nas.proxies.available(), *nas.proxies.available_votes()]
    for name in everything:
        assert f"| {name} |" in out, name
    assert "| full zoo (score_many) |" in out and "x fwd+bwd" in out and "cifar100 rho" in out
    with open(tmp_path / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {"wrcor", "synflow", "sec_zoo", "sec_fwd_bwd", "failures"} <= set(rows[0])
    assert "sjw" not in rows[0], "votes are not per-architecture scores"
    assert set(summary["correlations"]) == set(everything)
    assert (tmp_path / "scatter.png").stat().st_size > 1000
    nbsz = json.loads((tmp_path / "zc_nasbench201.json").read_text())
    assert set(nbsz) == {"cifar10", "cifar100", "ImageNet16-120"}
    entry = nbsz["cifar100"][rows[0]["arch"]]
    assert entry["val_accuracy"] == pytest.approx(float(rows[0]["cifar100"]))
    assert set(entry["synflow"]) >= {"score", "time"}
    # a rerun reuses every stored score (nothing is appended)
    zoo.main(args)
    with open(tmp_path / "scores.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3
    with pytest.raises(ValueError, match="holds a run with columns"):
        zoo.main([*args, "--proxies", "synflow"])
