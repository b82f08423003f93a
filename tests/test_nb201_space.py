from __future__ import annotations

import csv

import numpy as np
import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import nas
from nas.arch.nb201 import OPS
from nas.data import nb201_table
from tests.conftest import RESNET_CELL

space = nas.spaces.get("nb201")


def test_registry() -> None:
    assert "nb201" in nas.spaces.available()
    with pytest.raises(ValueError, match="unknown search space 'nope'.*nb201"):
        nas.spaces.get("nope")


def test_every_table_string_round_trips_and_indexes(shared_data) -> None:
    table = nb201_table()
    assert len(table) == 15625 == len(space)
    with open(shared_data / "nb201" / "nb201_test_acc.csv", newline="") as f:
        shipped = {int(r["index"]): r for r in csv.DictReader(f)}
    for i, text in enumerate(table.arch):
        arch = space.decode(text)
        assert space.encode(arch) == text
        assert space.index(arch) == i
        assert shipped[i]["arch"] == text
    assert len({space.decode(t) for t in table.arch}) == 15625
    assert max(table.accuracy["cifar10"]) == pytest.approx(94.373, abs=1e-3)
    assert space.accuracy(space.decode(RESNET_CELL)) == pytest.approx(93.91, abs=1e-3)
    assert space.at(space.index(space.decode(RESNET_CELL))) == space.decode(RESNET_CELL)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (RESNET_CELL, 559_386),  # the benchmark's ResNet-like cell
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 73_306),  # stem, reductions, head only
        ("|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|", 241_306),
        ("|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|skip_connect~1|avg_pool_3x3~2|", 73_306),
    ],
)
def test_parameter_counts_equal_the_benchmark(cell: str, expected: int) -> None:
    arch = space.decode(cell)
    model = space.build(arch, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert space.params(arch) == expected


def test_analytic_flops_match_flop_counter() -> None:
    rng = np.random.default_rng(3)
    for _ in range(4):
        arch = space.sample(rng)
        model = space.build(arch).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(torch.randn(1, 3, 32, 32))
        assert space.flops(arch) == fc.get_total_flops() // 2, space.encode(arch)
        assert space.params(arch) == sum(p.numel() for p in model.parameters())


def test_structure_matches_the_benchmark() -> None:
    model = space.build(space.decode(RESNET_CELL), num_classes=100)
    assert len(model.cells) == 17
    assert [type(c).__name__ for c in model.cells].count("ResNetReduction") == 2
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 8, 8)
    assert len(model.layer_units()) == 18


def test_seeded_sampling_and_single_edge_mutation() -> None:
    a = [space.sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    samples = {space.sample(rng) for _ in range(300)}
    assert len(samples) > 250
    ops_seen = {op for s in samples for op in s.ops}
    assert ops_seen == set(OPS)
    for arch in list(samples)[:50]:
        child = space.mutate(arch, rng)
        assert sum(x != y for x, y in zip(arch.ops, child.ops, strict=True)) == 1
    arch = next(iter(samples))
    assert space.from_decisions(space.decisions(arch)) == arch
    assert space.decision_sizes() == [5] * 6


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'.*allowed: none, skip_connect"),
        ("|none~0|+|none~0|none~1|", "expected 3 node groups"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge token 'none~1'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 takes 2 inputs"),
        ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "malformed node group 'none~0'"),
        ("", "expected 3 node groups"),
    ],
)
def test_malformed_strings_name_the_bad_token(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        space.decode(text)


def test_out_of_range_index() -> None:
    with pytest.raises(ValueError, match="index 15625 out of range"):
        space.at(15625)


def test_timm_entry_point() -> None:
    model = timm.create_model("nb201", arch=RESNET_CELL, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 559_386
    assert model.num_features == 64 and model.num_classes == 10
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert space.timm_spec(space.decode(RESNET_CELL)) == ("nb201", {"arch": RESNET_CELL})
    default = timm.create_model("nb201")
    assert default.ops == space.decode(RESNET_CELL).ops, "without arch: the ResNet-like cell"
    with pytest.raises(ValueError, match="unknown op 'conv'"):
        timm.create_model("nb201", arch="|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")
