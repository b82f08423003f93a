from __future__ import annotations

import csv
import gzip
import itertools
import json
from importlib import resources

import numpy as np
import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import nas
from nas.arch.nb101 import OPS, NB101Arch, decode, hash_module, prune
from nas.data import nb101_table
from nas.models.nb101 import DEFAULT_ARCH, NB101Network, vertex_channels

space = nas.spaces.get("nb101")

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
# The benchmark README's Inception-like cell, and the isomorphic form the dataset stores for it.
README_CELL = NB101Arch(
    [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", C1, C3, C3, C3, MP, "output"],
)  # fmt: skip
README_STORED = NB101Arch(
    [[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", C3, C1, MP, C3, C3, "output"],
)  # fmt: skip
# The official dataset's first record (hash 00005c14...), as NNI and dataset dumps print it.
FIRST_RECORD = NB101Arch(
    [[0, 1, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 1, 0],
     [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", C3, MP, C3, C3, C1, "output"],
)  # fmt: skip
IO_ONLY = NB101Arch([[0, 1], [0, 0]], ["input", "output"])


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        (README_CELL, 2_694_282),  # the benchmark's README / colab query output
        (README_STORED, 2_694_282),  # the same cell as the dataset stores it
        (FIRST_RECORD, 8_555_530),  # the dataset's first record (NNI's query example)
    ],
)
def test_parameter_counts_equal_the_benchmark(arch: NB101Arch, expected: int) -> None:
    assert n_params(space.build(arch)) == expected
    assert space.params(arch) == expected


def test_hash_equals_the_official_dataset_keys() -> None:
    assert FIRST_RECORD.module_hash() == "00005c142e6f48ac74fdcf73e3439874"
    assert README_CELL.module_hash() == "28cfc7874f6d200472e1a9dcd8650aa0"
    assert README_STORED.module_hash() == README_CELL.module_hash()
    assert space.key(README_STORED) == space.key(README_CELL) == README_CELL.module_hash()
    assert space.encode(README_STORED) != space.encode(README_CELL)


def _topological_relabelings(arch: NB101Arch) -> list[NB101Arch]:
    """Every relabeling of the interior vertices that keeps the matrix upper-triangular."""
    n = arch.num_vertices
    out = []
    for perm in itertools.permutations(range(1, n - 1)):
        order = (0, *perm, n - 1)  # new vertex k is old vertex order[k]
        m = [[arch.matrix[order[i]][order[j]] for j in range(n)] for i in range(n)]
        if all(m[i][j] == 0 for i in range(n) for j in range(i + 1)):
            out.append(NB101Arch(m, [arch.ops[v] for v in order]))
    return out


def test_hash_is_isomorphism_invariant_and_sees_ops_and_edges() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        arch = space.sample(rng).pruned()
        relabeled = _topological_relabelings(arch)
        assert len({a.module_hash() for a in relabeled}) == 1, space.encode(arch)
        if arch.num_vertices > 2:
            ops = list(arch.ops)
            ops[1] = next(o for o in OPS if o != ops[1])
            assert NB101Arch(arch.matrix, ops).module_hash() != arch.module_hash()
    assert len(_topological_relabelings(README_CELL)) > 1
    # One edge moved (input -> vertex 2 becomes vertex 1 -> vertex 2) is another cell.
    m = [list(r) for r in README_CELL.matrix]
    m[0][2], m[1][2] = 0, 1
    assert NB101Arch(m, README_CELL.ops).module_hash() != README_CELL.module_hash()
    # The input and output labels (-1, -2) keep a reversed chain apart from the chain.
    chain = ((0, 1, 0), (0, 0, 1), (0, 0, 0))
    assert hash_module(chain, (-1, 0, -2)) != hash_module(chain, (-2, 0, -1))


def test_pruning_as_the_benchmark() -> None:
    # Vertex 2 reaches no output, vertex 3 is not reached from the input, vertex 5 is isolated.
    arch = NB101Arch(
        [[0, 1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0],
         [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]],
        ["input", C1, C3, MP, C3, MP, "output"],
    )  # fmt: skip
    pruned = arch.pruned()
    assert pruned.matrix == ((0, 1, 1, 0), (0, 0, 0, 1), (0, 0, 0, 1), (0, 0, 0, 0))
    assert pruned.ops == ("input", C1, C3, "output")
    assert pruned.pruned() is pruned
    assert arch.module_hash() == pruned.module_hash()
    assert space.params(arch) == space.params(pruned) == n_params(space.build(arch))
    assert prune(((0, 0), (0, 0)), ("input", "output")) is None
    dead = NB101Arch([[0, 1, 1], [0, 0, 0], [0, 0, 0]], ["input", MP, "output"])
    assert dead.pruned() == IO_ONLY


def test_vertex_channels_as_the_benchmark() -> None:
    """The channel split on the cases of the benchmark's own ``model_builder_test``."""
    fan3 = ((0, 1, 1, 1, 0), (0, 0, 0, 0, 1), (0, 0, 0, 0, 1), (0, 0, 0, 0, 1), (0, 0, 0, 0, 0))
    fan2 = ((0, 1, 1, 0), (0, 0, 0, 1), (0, 0, 0, 1), (0, 0, 0, 0))
    widest = ((0, 1, 0, 0, 0), (0, 0, 1, 1, 0), (0, 0, 0, 0, 1), (0, 0, 0, 0, 1), (0, 0, 0, 0, 0))
    two_paths = ((0, 1, 0, 1, 0), (0, 0, 1, 0, 1), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1), (0, 0, 0, 0, 0))
    assert vertex_channels(8, 8, fan3) == [8, 3, 3, 2, 8]
    assert vertex_channels(8, 15, fan3) == [8, 5, 5, 5, 15]
    assert vertex_channels(8, 15, fan2) == [8, 8, 7, 15]
    assert vertex_channels(16, 8, fan2) == [16, 4, 4, 8]
    assert vertex_channels(8, 9, widest) == [8, 5, 5, 4, 9]
    assert vertex_channels(8, 15, two_paths) == [8, 8, 7, 7, 15]
    assert vertex_channels(5, 1, ((0, 1), (0, 0))) == [5, 1]


def test_string_round_trip() -> None:
    assert README_CELL.encode() == DEFAULT_ARCH
    rng = np.random.default_rng(1)
    for arch in [README_CELL, FIRST_RECORD, IO_ONLY, README_CELL.pruned(), *(space.sample(rng) for _ in range(50))]:
        text = space.encode(arch)
        assert space.decode(text) == arch and space.encode(space.decode(text)) == text
        pruned = arch.pruned()
        assert decode(pruned.encode()) == pruned


def test_sampling_is_seeded_valid_and_spread() -> None:
    assert space.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(1000)]
    assert all(a.num_vertices == 7 and a.pruned().num_edges <= 9 for a in samples)
    assert {op for a in samples for op in a.ops[1:-1]} == set(OPS)
    assert len({a.module_hash() for a in samples}) > 500, "the sampler should reach many distinct cells"
    assert max(a.num_edges for a in samples) > 9, "the edge limit applies after pruning, as the benchmark's"


def test_mutation_gives_a_different_valid_cell() -> None:
    rng = np.random.default_rng(2)
    parents = [space.sample(rng) for _ in range(200)] + [IO_ONLY, README_CELL.pruned()]
    for parent in parents:
        child = space.mutate(parent, rng)
        assert isinstance(child, NB101Arch) and child.num_vertices == 7
        assert child.module_hash() != parent.module_hash()
    a = space.mutate(README_CELL, np.random.default_rng(9))
    assert a == space.mutate(README_CELL, np.random.default_rng(9))


def test_decisions_round_trip_and_invalid_vectors_raise() -> None:
    sizes = space.decision_sizes()
    assert sizes == [2] * 21 + [3] * 5
    rng = np.random.default_rng(4)
    for arch in [space.sample(rng) for _ in range(20)]:
        choices = space.decisions(arch)
        assert space.valid_decisions(choices)
        assert space.from_decisions(choices) == arch
    pruned = FIRST_RECORD.pruned()
    assert space.from_decisions(space.decisions(IO_ONLY)).pruned() == IO_ONLY
    assert space.from_decisions(space.decisions(pruned)).module_hash() == pruned.module_hash()
    empty = [0] * 26
    assert not space.valid_decisions(empty)
    with pytest.raises(ValueError, match="does not reach the output"):
        space.from_decisions(empty)
    with pytest.raises(ValueError, match="26"):
        space.from_decisions([0] * 25)
    with pytest.raises(ValueError, match=r"decision 21 is 3; expected an int in \[0, 2\]"):
        space.from_decisions([1] * 21 + [3, 0, 0, 0, 0])


def test_analytic_cost_matches_the_built_network() -> None:
    rng = np.random.default_rng(3)
    x = torch.randn(1, 3, 32, 32)
    for arch in [IO_ONLY, README_CELL, *(space.sample(rng) for _ in range(4))]:
        model = space.build(arch).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        assert space.flops(arch) == fc.get_total_flops() // 2, space.encode(arch)
        assert space.params(arch) == n_params(model), space.encode(arch)
    assert space.params(README_CELL, num_classes=100) == 2_694_282 + 90 * 512 + 90


def test_network_structure_and_timm_interface() -> None:
    model = timm.create_model("nb101")
    assert n_params(model) == 2_694_282 and model.num_features == 512
    assert model.pretrained_cfg["mean"] == nas.data.CIFAR10_MEAN and model.pretrained_cfg["std"] == nas.data.CIFAR10_STD
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    feats = model.forward_features(x)
    assert feats.shape == (2, 512, 8, 8)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 512)
    assert model.get_classifier() is model.classifier
    model.reset_classifier(0)
    assert model(x).shape == (2, 512)
    units = model.layer_units()
    assert [type(u).__name__ for u in units] == ["ConvBNReLU"] + (["Cell"] * 3 + ["MaxPool2d"]) * 2 + ["Cell"] * 3
    relus = {m for m in model.modules() if isinstance(m, nn.ReLU)}
    assert relus == {m for u in units for m in u.modules() if isinstance(m, nn.ReLU)}
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (1e-5, pytest.approx(0.003))
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    other = timm.create_model("nb101", arch=FIRST_RECORD.encode(), num_classes=100)
    assert n_params(other) == 8_555_530 + 90 * 512 + 90
    assert space.timm_spec(FIRST_RECORD) == ("nb101", {"arch": FIRST_RECORD.encode()})
    assert n_params(timm.create_model(*space.timm_spec(FIRST_RECORD)[:1], **space.timm_spec(FIRST_RECORD)[1])) == 8_555_530
    assert timm.create_model("nb101", arch=IO_ONLY.encode())(x).shape == (2, 10)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("nb101", pretrained=True)
    with pytest.raises(TypeError, match="unexpected argument"):
        NB101Network(README_CELL, widht=3)


def test_wrcor_sees_the_papers_layers() -> None:
    """WRCor numbers the stem, the cells and the pools 1..12 and assigns every ReLU to one."""
    model = NB101Network(README_CELL, stem_channels=8)
    x, y = nas.data.cifar10_batch(8)
    result = nas.proxies.score("wrcor", model, x, y)
    assert np.isfinite(result.score)
    assert result.diagnostics["units_unassigned"] == 0
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    # The stem, then per cell 4 input projections and 4 convolutions (the pool has no ReLU).
    assert result.diagnostics["units_hooked"] == relus == 1 + 9 * 8


def test_shipped_table(shared_data) -> None:
    table = nb101_table()
    with open(shared_data / "nb101" / "nb101_naslib_500.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    path = resources.files("nas.data").joinpath("nb101_naslib_500.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt", newline="") as f:
        assert list(csv.DictReader(f)) == rows
    assert len(table) == 500
    assert len(set(table.hashes)) == 292, "the 500 rows hold 292 distinct cells"
    for i in (0, 1, 250, 499):
        assert table.arch[i] == NB101Arch(json.loads(rows[i]["matrix"]), json.loads(rows[i]["ops"]))
        assert table.val_accuracy[i] == float(rows[i]["val_accuracy"])
    arch = table.arch[1]
    same = table.rows_of[arch.module_hash()]
    assert space.table_row(arch) is not None
    assert space.accuracy(arch) == pytest.approx(float(np.mean(table.val_accuracy[same])))
    assert 73.0 < table.val_accuracy.min() and table.val_accuracy.max() < 95.0
    assert space.table_row(FIRST_RECORD) is None
    with pytest.raises(ValueError, match="00005c142e6f48ac74fdcf73e3439874.*not among the 292 cells"):
        space.accuracy(FIRST_RECORD)
    with pytest.raises(ValueError, match="CIFAR-10 benchmark"):
        space.accuracy(arch, "cifar100")


_OK = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]


@pytest.mark.parametrize(
    ("matrix", "ops", "match"),
    [
        ([[0] * 8 for _ in range(8)], ["input", *[C3] * 6, "output"], r"8 x 8; .*2 <= V <= 7"),
        ([[0, 1, 0], [0, 0, 1]], ["input", C3, "output"], r"2 x 3; .*square"),
        ([[0, 1, 0], [0, 0, 2], [0, 0, 0]], ["input", C3, "output"], r"entry \[1\]\[2\] is 2; entries must be 0 or 1"),
        ([[0, 1, 0], [1, 0, 1], [0, 0, 0]], ["input", C3, "output"], r"entry \[1\]\[0\] is 1; .*upper-triangular"),
        ([[1, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", C3, "output"], r"entry \[0\]\[0\] is 1; .*upper-triangular"),
        (_OK, ["input", "conv5x5", "output"], r"unknown op 'conv5x5' at vertex 1; allowed: conv3x3-bn-relu"),
        (_OK, [C3, C3, "output"], r"first op is 'conv3x3-bn-relu'; it must be 'input'"),
        (_OK, ["input", C3, C3], r"last op is 'conv3x3-bn-relu'; it must be 'output'"),
        (_OK, ["input", "output"], r"2 ops for a 3 x 3 matrix"),
        ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", C3, "output"], "does not reach the output"),
        (
            [[0, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0],
             [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
            ["input", C3, C3, C3, C3, C3, "output"],
            "has 12 edges after pruning; NAS-Bench-101 allows at most 9",
        ),
    ],
)  # fmt: skip
def test_bad_cells_name_the_rule(matrix, ops, match) -> None:
    with pytest.raises(ValueError, match=match):
        NB101Arch(matrix, ops)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("010/001/000", "one ';' between the matrix rows and the ops"),
        ("010/001/000;input,conv3x3-bn-relu,output;x", "one ';'"),
        ("010/0a1/000;input,conv3x3-bn-relu,output", r"row 1 '0a1' .* 0/1 digits"),
        ("010//000;input,conv3x3-bn-relu,output", r"row 1 '' "),
        ("010/001/000;input,conv3x3,output", "unknown op 'conv3x3'"),
        ("", "one ';'"),
    ],
)
def test_malformed_strings_name_the_bad_part(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        space.decode(text)
    with pytest.raises(TypeError, match="must be str"):
        space.decode(None)  # type: ignore[arg-type]
