from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import nas
from nas.arch.darts import DARTS_V1, DARTS_V2, OPS, DartsGenotype, input_pairs, parse
from nas.data import nb301_table
from nas.models.darts import DartsNetwork
from nas.spaces.darts import DartsSpace

space = nas.spaces.get("darts")
small = DartsSpace(channels=4, layers=5, resolution=16)

# quark0/darts cnn/genotypes.py, verbatim.
DARTS_V2_STR = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
# The same genotype in NASLib's compact form (pairs [input, op_index], DARTS's edge order).
DARTS_V2_COMPACT = (
    "[[[0, 3], [1, 3], [0, 3], [1, 3], [1, 3], [0, 2], [0, 2], [2, 5]], "
    "[[0, 0], [1, 0], [2, 2], [1, 0], [0, 0], [2, 2], [2, 2], [1, 0]]]"
)
# PC-DARTS's CIFAR-10 cell (yuhuixu1993/PC-DARTS genotypes.py), with its range() concats.
PC_DARTS_STR = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
    "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), "
    "reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_and_defaults() -> None:
    assert "darts" in nas.spaces.available()
    assert (space.channels, space.layers, space.resolution) == (32, 8, 32)  # NASLib's zero-cost NB301 networks


@pytest.mark.parametrize(
    ("genotype", "expected", "published"),
    [
        (DARTS_V2_STR, 3_349_342, "3.3M"),  # DARTS paper, Table 1 (second order); README "3.3M model params"
        (PC_DARTS_STR, 3_634_678, "3.6M"),  # PC-DARTS paper, Table 1
        (DARTS_V1.to_genotype_str(), 3_169_414, None),  # the paper's table says 3.3M; this cell counts 3.2M
    ],
)
def test_evaluation_network_parameter_counts(genotype: str, expected: int, published: str | None) -> None:
    model = timm.create_model("darts", genotype=genotype, num_classes=10)
    assert n_params(model) == expected
    assert DartsSpace(channels=36, layers=20).params(parse(genotype)) == expected
    if published is not None:
        assert f"{expected / 1e6:.1f}M" == published


def test_default_timm_model_is_darts_v2_without_auxiliary_head() -> None:
    model = timm.create_model("darts")
    assert model.genotype == DARTS_V2 and len(model.cells) == 20 and model.num_classes == 10  # CIFAR-10
    aux = timm.create_model("darts", num_classes=10, auxiliary=True)
    # DARTS counts parameters without the auxiliary head (utils.count_parameters_in_MB).
    main = sum(p.numel() for name, p in aux.named_parameters() if not name.startswith("auxiliary_head"))
    assert main == 3_349_342 < n_params(aux) == 3_825_768
    assert DartsSpace(36, 20).flops(DARTS_V2) == 528_359_040


def test_darts_and_compact_strings_decode_to_one_genotype() -> None:
    a, b = parse(DARTS_V2_STR), parse(DARTS_V2_COMPACT)
    assert a == b == DARTS_V2 and hash(a) == hash(b)
    for text in (a.encode(), a.to_genotype_str(), a.to_compact_str()):
        assert space.decode(text) == a
    assert space.decode(space.encode(a)) == a and space.encode(space.decode(space.encode(a))) == space.encode(a)
    assert DartsGenotype.from_compact(a.to_compact()) == a
    # NASLib's own sampler yields numpy integers
    as_numpy = [[(np.int64(i), np.int64(o)) for i, o in cell] for cell in a.to_compact()]
    assert DartsGenotype.from_compact(as_numpy) == a and type(DartsGenotype.from_compact(as_numpy).normal[0][0][0]) is int
    assert a.to_darts()["normal_concat"] == [2, 3, 4, 5]
    # a node's two edges are an unordered pair: swapping them is the same genotype
    swapped = [[(n[1], n[0]) for n in a.normal], a.reduce]
    assert DartsGenotype(*swapped) == a and DartsGenotype(*swapped).encode() == a.encode()
    assert a.normal[2] == ((0, "skip_connect"), (1, "sep_conv_3x3"))  # stored sorted by input


def test_analytic_params_and_macs_equal_the_built_network() -> None:
    rng = np.random.default_rng(0)
    for i in range(40):
        arch = small.sample(rng)
        model = small.build(arch, num_classes=7).eval()
        assert small.params(arch, num_classes=7) == n_params(model), arch.encode()
        if i % 5 == 0:
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                model(torch.randn(1, 3, 16, 16))
            assert small.flops(arch, num_classes=7) == fc.get_total_flops() // 2, arch.encode()
    for _ in range(3):
        arch = space.sample(rng)
        assert space.params(arch) == n_params(space.build(arch)), arch.encode()


def test_seeded_uniform_sampling() -> None:
    assert space.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(1500)]
    assert len(set(samples)) == 1500
    pairs = Counter((a[0], b[0]) for g in samples for cell in (g.normal, g.reduce) for a, b in cell[3:])
    assert set(pairs) == set(input_pairs(3))
    expected = 3000 / len(input_pairs(3))
    assert all(abs(n - expected) < 0.25 * expected for n in pairs.values()), pairs
    ops = Counter(op for g in samples for cell in (g.normal, g.reduce) for node in cell for _, op in node)
    assert set(ops) == set(OPS) and max(ops.values()) < 1.15 * min(ops.values()), ops


def _edges(g: DartsGenotype) -> list[set[tuple[int, str]]]:
    return [set(node) for cell in (g.normal, g.reduce) for node in cell]


def test_mutation_changes_exactly_one_edge() -> None:
    rng = np.random.default_rng(1)
    kinds = Counter()
    for _ in range(300):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        assert child != parent
        diffs = [(p, c) for p, c in zip(_edges(parent), _edges(child), strict=True) if p != c]
        assert len(diffs) == 1, (parent.encode(), child.encode())
        (old,), (new,) = diffs[0][0] - diffs[0][1], diffs[0][1] - diffs[0][0]
        kinds["op" if old[0] == new[0] else "input"] += 1
    assert kinds["op"] > 0 and kinds["input"] > 0


def test_decisions_round_trip_and_cover_the_space() -> None:
    sizes = space.decision_sizes()
    assert sizes == [7, 7, 3, 7, 7, 6, 7, 7, 10, 7, 7] * 2
    assert np.prod([float(s) for s in sizes]) == pytest.approx((180 * 49**4) ** 2)
    rng = np.random.default_rng(2)
    for _ in range(100):
        arch = space.sample(rng)
        choices = space.decisions(arch)
        assert all(0 <= c < n for c, n in zip(choices, sizes, strict=True))
        assert space.from_decisions(choices) == arch
    with pytest.raises(ValueError, match="has 22 decisions, got 3"):
        space.from_decisions([0, 0, 0])
    with pytest.raises(ValueError, match=r"decision 2 = 3 out of range \[0, 2\]"):
        space.from_decisions([0, 0, 3] + [0] * 19)


def test_network_structure_and_timm_interface() -> None:
    arch = small.sample(np.random.default_rng(4))
    model = small.build(arch, num_classes=100)
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 100)
    assert model.forward_features(x).shape == (2, 4 * 16, 4, 4) and model.num_features == 64
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 64)
    assert [c.reduction for c in model.cells] == [False, True, False, True, False]
    units = model.layer_units()
    assert units[0] is model.stem and units[1:] == list(model.cells)
    assert model.get_classifier() is model.classifier
    model.reset_classifier(0)
    assert model(x).shape == (2, 64)
    assert model.pretrained_cfg["mean"] == (0.4914, 0.4822, 0.4465)
    # eval-network pooling ops carry no BN; DARTS's skip at stride 2 is a FactorizedReduce
    for cell in model.cells:
        for op in cell.edges:
            if isinstance(op, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
                assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in op.modules())


def test_drop_path_and_auxiliary_head() -> None:
    model = DartsNetwork(DARTS_V2, 10, channels=4, layers=5, auxiliary=True, drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)  # the auxiliary head expects 8x8 maps
    model.eval()
    logits, aux = model.forward_train(x)
    assert aux is None and torch.equal(logits, model(x))
    model.train()
    logits, aux = model.forward_train(x)
    assert logits.shape == aux.shape == (4, 10)
    model.drop_path_rate = 0.0
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(0)
    assert torch.equal(a, model(x))
    model.drop_path_rate = 0.5
    assert not torch.equal(a, model(x))


def test_timm_entry_point_and_spec() -> None:
    arch = space.sample(np.random.default_rng(5))
    name, kwargs = space.timm_spec(arch)
    assert name == "darts" and kwargs == {"genotype": arch.encode(), "channels": 32, "layers": 8}
    model = timm.create_model(name, num_classes=10, **kwargs)
    assert model.genotype == arch and n_params(model) == space.params(arch)
    for text in (arch.to_genotype_str(), arch.to_compact_str()):
        assert timm.create_model("darts", genotype=text, channels=4, layers=3).genotype == arch
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("darts", pretrained=True)
    with pytest.raises(TypeError, match="unexpected argument"):
        timm.create_model("darts", channels=4, layers=3, widht=3)


def test_wrcor_scores_a_darts_network() -> None:
    model = DartsSpace(channels=4, layers=3).build(space.sample(np.random.default_rng(6)))
    x, y = nas.data.cifar10_batch(16)
    result = nas.proxies.score("wrcor", model, x, y)
    assert np.isfinite(result.score), result.diagnostics


def test_shipped_nb301_table(shared_data) -> None:
    table = nb301_table()
    with open(shared_data / "nb301" / "nb301_naslib_725.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(table) == len(rows) == 725 and len(set(table.arch)) == 725
    for i, row in enumerate(rows):
        arch = space.decode(row["compact"])
        assert table.arch[i] == arch.encode() and table.index_of[arch.encode()] == i
        assert space.accuracy(arch) == float(row["val_accuracy"])
        assert space.table_row(arch) is not None
    assert 91.2 < table.accuracy["cifar10"].min() < table.accuracy["cifar10"].max() < 94.5
    assert space.table_row(DARTS_V2) is None
    with pytest.raises(ValueError, match="is not among the 725 genotypes"):
        space.accuracy(DARTS_V2)
    with pytest.raises(ValueError, match="CIFAR-10 only"):
        space.accuracy(space.decode(rows[0]["compact"]), "cifar100")


NODE = [(0, "skip_connect"), (1, "sep_conv_3x3")]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: DartsGenotype([NODE] * 3, [NODE] * 4), "normal cell has 4 nodes of two edges each, got 3"),
        (lambda: DartsGenotype([NODE] * 4, [NODE * 2] + [NODE] * 3), "reduce cell node 0 takes exactly 2 edges"),
        (lambda: DartsGenotype([[(0, "conv_7x7"), (1, "skip_connect")]] + [NODE] * 3, [NODE] * 4), "unknown op 'conv_7x7'"),
        (lambda: DartsGenotype([NODE, [(0, "skip_connect"), (3, "skip_connect")]] + [NODE] * 2, [NODE] * 4), "input 3 out of range; node 1 takes inputs 0..2"),
        (lambda: DartsGenotype([NODE, [(2, "skip_connect"), (2, "avg_pool_3x3")]] + [NODE] * 2, [NODE] * 4), "both edges come from input 2"),
        (lambda: parse(DARTS_V2_COMPACT.replace("[2, 5]]", "[2, 7]]", 1)), r"op index 7 is not in 0..6"),
        (lambda: parse("[[[0, 3], [1, 3]], []]"), "compact normal cell has 8 pairs"),
        (lambda: parse(DARTS_V2_STR.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]")), r"normal_concat=\[4, 5\]: this space's cells concatenate"),
        (lambda: parse(DARTS_V2_STR.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)")), "input 5 out of range; node 3 takes inputs 0..4"),
        (lambda: parse(DARTS_V2_STR.replace("('dil_conv_3x3', 2)]", "]")), "normal list has 8 pairs .op, input., got 7"),
        (lambda: parse("Genotype(normal=__import__('os').getcwd(), normal_concat=[2, 3, 4, 5], reduce=[], reduce_concat=[2, 3, 4, 5])"), "field normal must be a literal"),
        (lambda: parse("Genotype(normal=[]"), "malformed DARTS genotype"),
        (lambda: parse(DARTS_V2.encode().replace("sep_conv_3x3~0", "sep_conv_3x3@0", 1)), "bad edge token 'sep_conv_3x3@0'"),
        (lambda: parse(DARTS_V2.encode().split(";")[0]), "expected 'normal:...;reduce:...'"),
        (lambda: parse(DARTS_V2.encode().replace("+", "", 1)), "has 3 node groups; expected 4"),
        (lambda: DartsSpace(channels=15), "channels must be an even number"),
        (lambda: DartsSpace(layers=2), "layers must be >= 3"),
        (lambda: DartsSpace(resolution=30), "resolution must be a positive multiple of 4"),
    ],
)
def test_bad_input_is_named(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be str, got int"):
        parse(3)  # type: ignore[arg-type]
