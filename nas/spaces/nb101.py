"""The NAS-Bench-101 cell space.

An architecture is a :class:`~nas.arch.nb101.NB101Arch`: a 7 x 7 upper-triangular adjacency
matrix and 7 ops as given (smaller pruned specs are accepted too); networks are built from its
pruned form, and :meth:`NB101Space.module_hash` identifies it in the official dataset. String
form: ``<row 0>/.../<row 6>;input,<op>,...,output`` (see :mod:`nas.arch.nb101`).

Sampling and mutation follow the benchmark's example code: a random spec draws each of the 21
upper-triangular entries with probability 1/2 and each interior op uniformly, and is drawn
again until valid (the input reaches the output, at most 9 edges after pruning); a mutation
flips each entry with probability 1/7 and re-draws each op with probability 1/5 (to a different
op), again until valid, and here also until the pruned cell differs from the parent's (a
different benchmark hash), so a search never spends a score on the parent's own network.
This sampler favours small cells, as the benchmark's does: of 1,000 draws about 500 are distinct
cells and about one in ten prunes to the input-output projection alone (NASLib's 500-cell table,
drawn the same way, holds 292 distinct cells). :meth:`NB101Space.key` (the hash) tells which
specs build the same network.

Categorical decisions (for REINFORCE): the 21 upper-triangular entries in row order (2 options
each) then the 5 interior ops (3 options, in :data:`~nas.arch.nb101.OPS` order). About one in
four uniformly drawn decision vectors is not a valid spec (input cut off from the output, or more
than 9 edges after pruning): :meth:`NB101Space.from_decisions` raises ``ValueError`` for them
(:meth:`NB101Space.valid_decisions` tells without raising), and a policy-gradient search must
draw again, as it does for a candidate outside its budget.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from nas.arch.nb101 import INPUT, NUM_VERTICES, OPS, OUTPUT, NB101Arch, decode, encode, problem
from nas.data import BenchmarkTable, nb101_table
from nas.models.nb101 import NB101Network, vertex_channels
from nas.spaces import register
from nas.spaces.base import SearchSpace

#: Upper-triangular positions (row, column) of a 7 x 7 matrix in row order.
EDGE_SPOTS: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i in range(NUM_VERTICES - 1) for j in range(i + 1, NUM_VERTICES)
)
_OP_COST = {"conv3x3-bn-relu": 9, "conv1x1-bn-relu": 1, "maxpool3x3": 0}


def _spec(bits: np.ndarray | list[int], op_idx: np.ndarray | list[int]) -> tuple[list[list[int]], list[str]]:
    matrix = [[0] * NUM_VERTICES for _ in range(NUM_VERTICES)]
    for (i, j), b in zip(EDGE_SPOTS, bits, strict=True):
        matrix[i][j] = int(b)
    return matrix, [INPUT, *(OPS[int(k)] for k in op_idx), OUTPUT]


@register("nb101")
class NB101Space(SearchSpace[NB101Arch]):
    """NAS-Bench-101: cells of up to 7 vertices and 9 edges over 3 ops; the benchmark's network.

    Args:
        stem_channels: stem width (benchmark: 128).
        num_stacks: stacks of cells (benchmark: 3).
        cells_per_stack: cells per stack (benchmark: 3).
        resolution: input side in pixels (benchmark: 32), used by :meth:`flops`.
    """

    name = "nb101"

    def __init__(self, stem_channels: int = 128, num_stacks: int = 3, cells_per_stack: int = 3, resolution: int = 32) -> None:
        self.stem_channels = stem_channels
        self.num_stacks = num_stacks
        self.cells_per_stack = cells_per_stack
        self.resolution = resolution

    # string form
    def decode(self, text: str) -> NB101Arch:
        return decode(text)

    def encode(self, arch: NB101Arch) -> str:
        return encode(arch)

    # benchmark identity and table
    def __len__(self) -> int:
        """Distinct cells up to pruning and isomorphism: 423,624, as the benchmark's README counts
        them (the official dataset holds one record per such cell)."""
        return 423_624

    def module_hash(self, arch: NB101Arch) -> str:
        """The benchmark's hash of ``arch`` (the key of the official dataset)."""
        return arch.module_hash()

    def key(self, arch: NB101Arch) -> str:
        """The benchmark hash: specs that prune to isomorphic cells build the same network."""
        return arch.module_hash()

    def benchmark(self) -> BenchmarkTable:
        """The shipped table's distinct cells (292 of its 500 rows, keyed by the benchmark hash),
        each with the mean validation accuracy of its rows."""
        return _benchmark()

    def accuracy(self, arch: NB101Arch, dataset: str = "cifar10") -> float:
        """CIFAR-10 validation accuracy (%) of ``arch`` from the shipped table (mean of its rows);
        ``ValueError`` when the table does not hold the cell."""
        if dataset != "cifar10":
            raise ValueError(f"NAS-Bench-101 is a CIFAR-10 benchmark; got dataset {dataset!r}, expected 'cifar10'")
        return nb101_table().accuracy(arch.module_hash())

    # sampling
    def sample(self, rng: np.random.Generator) -> NB101Arch:
        while True:
            matrix, ops = _spec(rng.integers(0, 2, size=len(EDGE_SPOTS)), rng.integers(0, len(OPS), size=NUM_VERTICES - 2))
            if problem(matrix, ops) is None:
                return NB101Arch(matrix, ops)

    def _padded(self, arch: NB101Arch) -> NB101Arch:
        """``arch`` as a 7-vertex spec: a smaller (pruned) spec gets isolated ``conv3x3-bn-relu``
        vertices before its output, which pruning removes again."""
        n = arch.num_vertices
        if n == NUM_VERTICES:
            return arch
        pad = NUM_VERTICES - n
        matrix = [[0] * NUM_VERTICES for _ in range(NUM_VERTICES)]
        where = [*range(n - 1), NUM_VERTICES - 1]  # old vertex -> new position
        for i in range(n):
            for j in range(n):
                matrix[where[i]][where[j]] = arch.matrix[i][j]
        ops = [*arch.ops[:-1], *([OPS[0]] * pad), OUTPUT]
        return NB101Arch(matrix, ops)

    def mutate(self, arch: NB101Arch, rng: np.random.Generator) -> NB101Arch:
        """A valid 7-vertex spec of a different cell (see the module docstring); a spec of fewer
        vertices is padded with isolated ``conv3x3-bn-relu`` vertices first."""
        parent = self._padded(arch)
        parent_hash = arch.module_hash()
        edge_p = 1.0 / NUM_VERTICES
        op_p = 1.0 / (NUM_VERTICES - 2)
        while True:
            matrix = [list(row) for row in parent.matrix]
            for i, j in EDGE_SPOTS:
                if rng.random() < edge_p:
                    matrix[i][j] = 1 - matrix[i][j]
            ops = list(parent.ops)
            for k in range(1, NUM_VERTICES - 1):
                if rng.random() < op_p:
                    others = [o for o in OPS if o != ops[k]]
                    ops[k] = others[int(rng.integers(len(others)))]
            if problem(matrix, ops) is None:
                child = NB101Arch(matrix, ops)
                if child.module_hash() != parent_hash:
                    return child

    def decisions(self, arch: NB101Arch) -> list[int]:
        """The 21 entries and 5 ops of ``arch``; a spec of fewer vertices is first padded as
        :meth:`mutate` pads it (same network, 7 vertices)."""
        spec = self._padded(arch)
        return [spec.matrix[i][j] for i, j in EDGE_SPOTS] + [OPS.index(op) for op in spec.ops[1:-1]]

    def _split(self, choices: list[int]) -> tuple[list[list[int]], list[str]]:
        sizes = self.decision_sizes()
        if len(choices) != len(sizes):
            raise ValueError(f"{len(choices)} decisions given; NAS-Bench-101 takes {len(sizes)} (21 edges, 5 ops)")
        for k, (c, n) in enumerate(zip(choices, sizes, strict=True)):
            if not 0 <= int(c) < n:
                raise ValueError(f"decision {k} is {c!r}; expected an int in [0, {n - 1}]")
        return _spec(choices[: len(EDGE_SPOTS)], choices[len(EDGE_SPOTS) :])

    def valid_decisions(self, choices: list[int]) -> bool:
        """Whether :meth:`from_decisions` accepts ``choices`` (of the right length and range)."""
        return problem(*self._split(choices)) is None

    def from_decisions(self, choices: list[int]) -> NB101Arch:
        """The 7-vertex spec of ``choices``; ``ValueError`` naming the rule when it is not valid."""
        return NB101Arch(*self._split(choices))

    def decision_sizes(self) -> list[int]:
        return [2] * len(EDGE_SPOTS) + [len(OPS)] * (NUM_VERTICES - 2)

    # networks and cost
    def build(self, arch: NB101Arch, num_classes: int = 10, **kwargs: Any) -> NB101Network:
        return NB101Network(
            arch, num_classes, stem_channels=self.stem_channels, num_stacks=self.num_stacks,
            cells_per_stack=self.cells_per_stack, **kwargs,
        )  # fmt: skip

    def timm_spec(self, arch: NB101Arch) -> tuple[str, dict[str, Any]]:
        return "nb101", {"arch": self.encode(arch)}

    def cost(self, arch: NB101Arch, num_classes: int | None = None) -> tuple[int, int]:
        num_classes = 10 if num_classes is None else num_classes
        cell = arch.pruned()
        m, ops, n = cell.matrix, cell.ops, cell.num_vertices
        c, side = self.stem_channels, self.resolution
        params = 3 * c * 9 + 2 * c
        macs = 3 * c * 9 * side * side
        for stack in range(self.num_stacks):
            c_out = c
            if stack > 0:
                side = -(-side // 2)
                c_out = 2 * c
            for _ in range(self.cells_per_stack):
                vc = vertex_channels(c, c_out, m)
                weights = 0
                for t in range(1, n):
                    if m[0][t]:  # 1x1 projection of the cell input
                        weights += c * vc[t]
                        params += 2 * vc[t]
                    if t < n - 1 and _OP_COST[ops[t]]:
                        weights += _OP_COST[ops[t]] * vc[t] * vc[t]
                        params += 2 * vc[t]
                params += weights
                macs += weights * side * side
                c = c_out
        params += c * num_classes + num_classes
        macs += c * num_classes
        return macs, params


__all__ = ["EDGE_SPOTS", "NB101Space"]


@cache
def _benchmark() -> BenchmarkTable:
    table = nb101_table()
    rows = table.rows_of
    first = [r[0] for r in rows.values()]
    archs = tuple(table.arch[i].encode() for i in first)
    acc = np.array([float(table.val_accuracy[r].mean()) for r in rows.values()])
    return BenchmarkTable(archs, {"cifar10": acc}, keys=tuple(rows), measure="validation accuracy (108 epochs)")
