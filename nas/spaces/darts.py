"""The DARTS cell space (NAS-Bench-301): a normal and a reduction cell of 4 nodes, 7 ops.

An architecture is a :class:`~nas.arch.darts.DartsGenotype` (its module documents the three
string forms and the canonical order of a node's edges); networks are DARTS's CIFAR network
(:mod:`nas.models.darts`).

Two configurations of the same network:

- **evaluation / search** (the space's default): 32 channels, 8 cells, stem 96 channels,
  no auxiliary head, as NASLib's zero-cost benchmark built the NAS-Bench-301 networks of
  NAS-Bench-Suite-Zero (``naslib/search_spaces/nasbench301/graph.py`` on its ``zerocost``
  branch, where the benchmark data were made in 2022: ``self.channels = [32, 64, 128]``, two
  normal cells per stage with a reduction cell between stages, ``stem_multiplier = 3``; a later
  commit of NASLib reduced the channels to ``[16, 32, 64]``, after the benchmark was built). Its
  auxiliary edge stays an identity because the benchmark runner
  ``naslib/runners/zc/benchmarks/runner.py`` never calls ``prepare_evaluation``. NASLib's graph
  builds the ops of the cells with non-affine BN and appends a non-affine BN to each pooling op
  (its search-time primitives); here every op is as DARTS's evaluation network builds it, which
  at initialization computes the same function except after the pooling ops, and counts the BN
  scales and shifts among the parameters. DARTS's own search network is
  ``DartsSpace(channels=16, layers=8)`` (``cnn/train_search.py``).
- **training**: DARTS's evaluation network, 36 channels and 20 cells
  (``DartsSpace(channels=36, layers=20)``, or on the command line
  ``--search.space_kwargs '{channels: 36, layers: 20}'``); the timm entry point ``darts``
  defaults to it.

Sampling is uniform over the space's genotypes, as NASLib samples NAS-Bench-301: for each node
two distinct inputs and an op for each, uniformly. Mutation changes one edge's op or input,
drawn as NASLib's ``mutate`` draws them (a cell, an edge, op or input, a new value; redrawn until
the genotype changes, so never the identity).

Decisions (for REINFORCE), per cell: node 0's two ops, then for nodes 1-3 the input pair (one
of the node's ``C(k + 2, 2)`` unordered pairs, :func:`~nas.arch.darts.input_pairs`) and the ops
of its lower and higher input: 2 x 11 decisions, uniform logits give uniform sampling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nas.arch.darts import NUM_NODES, OPS, DartsGenotype, input_pairs, parse
from nas.data import BenchmarkTable, nb301_table
from nas.models.darts import STEM_MULTIPLIER, DartsNetwork, check_size
from nas.spaces import register
from nas.spaces.base import SearchSpace

#: NASLib's zero-cost configuration of NAS-Bench-301 networks (see the module doc).
EVAL_CHANNELS = 32
EVAL_LAYERS = 8


def _op_cost(op: str, c: int, stride: int, side_out: int) -> tuple[int, int]:
    """(params, MACs) of one op at width ``c`` producing a ``side_out`` x ``side_out`` map."""
    pixels = side_out * side_out
    if op in ("max_pool_3x3", "avg_pool_3x3") or (op == "skip_connect" and stride == 1):
        return 0, 0
    if op == "skip_connect":  # FactorizedReduce(c, c)
        return c * c + 2 * c, c * c * pixels
    k = int(op[-1])
    unit_params = c * k * k + c * c + 2 * c  # depthwise kxk, pointwise, BN
    unit_macs = (c * k * k + c * c) * pixels
    reps = 2 if op.startswith("sep_conv_") else 1
    return reps * unit_params, reps * unit_macs


@register("darts")
class DartsSpace(SearchSpace[DartsGenotype]):
    """The DARTS / NAS-Bench-301 space, networks built as DARTS's CIFAR network.

    Args:
        channels: the first cells' width ``C`` (default: NASLib's zero-cost configuration, 32;
            DARTS's evaluation network: 36).
        layers: number of cells (default 8; DARTS's evaluation network: 20).
        resolution: input side in pixels, used by :meth:`flops` (CIFAR: 32).

    Raises:
        ValueError: ``channels`` not even and >= 2, ``layers`` < 3, or a ``resolution`` that the
            two FactorizedReduce steps cannot halve (not a multiple of 4).
    """

    name = "darts"

    def __init__(
        self, channels: int = EVAL_CHANNELS, layers: int = EVAL_LAYERS, resolution: int = 32
    ) -> None:
        check_size(channels, layers)
        if resolution < 4 or resolution % 4:
            raise ValueError(
                f"resolution must be a positive multiple of 4 (two reductions), got {resolution}"
            )
        self.channels = channels
        self.layers = layers
        self.resolution = resolution

    # string form
    def decode(self, text: str) -> DartsGenotype:
        """Parse the canonical string, DARTS's ``Genotype(...)`` or NASLib's compact list."""
        return parse(text)

    def encode(self, arch: DartsGenotype) -> str:
        return arch.encode()

    # benchmark table
    def benchmark(self) -> BenchmarkTable:
        """NASLib's 725 genotypes with NAS-Bench-301's (surrogate) CIFAR-10 validation accuracy."""
        return nb301_table()

    def accuracy(self, arch: DartsGenotype, dataset: str = "cifar10") -> float:
        """NAS-Bench-301's (surrogate) CIFAR-10 validation accuracy (%) of ``arch`` from the shipped table.

        Raises:
            ValueError: ``dataset`` is not ``"cifar10"``, or ``arch`` is not among the table's genotypes.
        """
        if dataset != "cifar10":
            raise ValueError(f"NAS-Bench-301 holds CIFAR-10 only, got dataset {dataset!r}")
        table = nb301_table()
        index = table.index_of.get(arch.encode())
        if index is None:
            raise ValueError(
                f"genotype {arch.encode()!r} is not among the {len(table)} genotypes of the shipped "
                "NAS-Bench-301 table (see table_row)"
            )
        return float(table.accuracy["cifar10"][index])

    # sampling
    def sample(self, rng: np.random.Generator) -> DartsGenotype:
        cells = []
        for _ in range(2):
            nodes = []
            for k in range(NUM_NODES):
                inputs = rng.choice(k + 2, size=2, replace=False)
                ops = rng.integers(len(OPS), size=2)
                nodes.append([(int(i), OPS[int(o)]) for i, o in zip(inputs, ops, strict=True)])
            cells.append(nodes)
        return DartsGenotype(*cells)

    def mutate(self, arch: DartsGenotype, rng: np.random.Generator) -> DartsGenotype:
        cells = [[list(node) for node in arch.normal], [list(node) for node in arch.reduce]]
        while True:
            cell, edge, what = (
                int(rng.integers(2)),
                int(rng.integers(2 * NUM_NODES)),
                int(rng.integers(2)),
            )
            k, e = divmod(edge, 2)
            src, op = cells[cell][k][e]
            other_src = cells[cell][k][1 - e][0]
            if what == 1:
                new_op = OPS[int(rng.integers(len(OPS)))]
                if new_op != op:
                    cells[cell][k][e] = (src, new_op)
                    return DartsGenotype(*cells)
            else:
                new_src = int(rng.integers(k + 2))
                if new_src not in (src, other_src):
                    cells[cell][k][e] = (new_src, op)
                    return DartsGenotype(*cells)

    def decisions(self, arch: DartsGenotype) -> list[int]:
        out: list[int] = []
        for reduction in (False, True):
            for k, ((a, op_a), (b, op_b)) in enumerate(arch.cell(reduction)):
                if k > 0:
                    out.append(input_pairs(k).index((a, b)))
                out += [OPS.index(op_a), OPS.index(op_b)]
        return out

    def from_decisions(self, choices: list[int]) -> DartsGenotype:
        sizes = self.decision_sizes()
        if len(choices) != len(sizes):
            raise ValueError(f"the darts space has {len(sizes)} decisions, got {len(choices)}")
        for i, (c, n) in enumerate(zip(choices, sizes, strict=True)):
            if not 0 <= int(c) < n:
                raise ValueError(f"decision {i} = {c} out of range [0, {n - 1}]")
        it = iter(int(c) for c in choices)
        cells = []
        for _ in range(2):
            nodes = []
            for k in range(NUM_NODES):
                a, b = input_pairs(k)[next(it)] if k > 0 else (0, 1)
                nodes.append([(a, OPS[next(it)]), (b, OPS[next(it)])])
            cells.append(nodes)
        return DartsGenotype(*cells)

    def decision_sizes(self) -> list[int]:
        per_cell = [len(OPS)] * 2
        for k in range(1, NUM_NODES):
            per_cell += [len(input_pairs(k)), len(OPS), len(OPS)]
        return per_cell * 2

    # networks and cost
    def build(self, arch: DartsGenotype, num_classes: int = 10, **kwargs: Any) -> DartsNetwork:
        return DartsNetwork(arch, num_classes, channels=self.channels, layers=self.layers, **kwargs)

    def timm_spec(self, arch: DartsGenotype) -> tuple[str, dict[str, Any]]:
        return "darts", {
            "genotype": arch.encode(),
            "channels": self.channels,
            "layers": self.layers,
        }

    def cost(self, arch: DartsGenotype, num_classes: int | None = None) -> tuple[int, int]:
        num_classes = 10 if num_classes is None else num_classes
        c_stem = STEM_MULTIPLIER * self.channels
        side = self.resolution
        params = 3 * 9 * c_stem + 2 * c_stem
        macs = 3 * 9 * c_stem * side * side
        c_prev_prev, c_prev, c = c_stem, c_stem, self.channels
        side_prev_prev = side_prev = side
        reductions = (self.layers // 3, 2 * self.layers // 3)
        reduction_prev = False
        for i in range(self.layers):
            reduction = i in reductions
            c = 2 * c if reduction else c
            # preprocessing: FactorizedReduce or ReLU-conv1x1-BN to c at side_prev
            params += c_prev_prev * c + 2 * c + c_prev * c + 2 * c
            macs += (c_prev_prev * c + c_prev * c) * side_prev * side_prev
            assert reduction_prev == (side_prev_prev == 2 * side_prev)
            side_out = side_prev // 2 if reduction else side_prev
            for node in arch.cell(reduction):
                for src, op in node:
                    stride = 2 if reduction and src < 2 else 1
                    p, m = _op_cost(op, c, stride, side_out)
                    params += p
                    macs += m
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, NUM_NODES * c
            side_prev_prev, side_prev = side_prev, side_out
        params += c_prev * num_classes + num_classes
        macs += c_prev * num_classes
        return macs, params
