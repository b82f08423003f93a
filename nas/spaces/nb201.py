"""The NAS-Bench-201 cell space (NATS-Bench topology search space).

An architecture is the op on each of the cell's six edges. Canonical string:
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` where ``op~i`` is the op on the edge from node ``i``
into the node of that group (nodes 1, 2 and 3 in turn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.data import DATASETS, BenchmarkTable, nb201_table
from nas.models.nb201 import EDGES, OPS, NB201Network
from nas.spaces import register
from nas.spaces.base import SearchSpace

_NODE_GROUP = re.compile(r"^\|(.*)\|$")


@dataclass(frozen=True)
class NB201Arch:
    """One NAS-Bench-201 cell: the op on each edge, in canonical order."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise ValueError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(self.ops)} ops")
        for op in self.ops:
            if op not in OPS:
                raise ValueError(f"unknown op {op!r}; allowed: {', '.join(OPS)}")

    def __str__(self) -> str:
        return format_cell(self.ops)


def format_cell(ops: tuple[str, ...]) -> str:
    groups, k = [], 0
    for node in (1, 2, 3):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(node)) + "|")
        k += node
    return "+".join(groups)


def parse_cell(text: str) -> tuple[str, ...]:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into six ops; ``ValueError`` on any bad token."""
    if not isinstance(text, str):
        raise TypeError(f"a cell string must be str, got {type(text).__name__}")
    groups = text.strip().split("+")
    if len(groups) != 3:
        raise ValueError(
            f"malformed cell {text!r}: expected 3 node groups joined by '+' "
            "like |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        )
    ops: list[str] = []
    for node, group in enumerate(groups, start=1):
        m = _NODE_GROUP.match(group)
        if not m:
            raise ValueError(f"malformed node group {group!r} in {text!r}: expected |op~i|...|")
        tokens = m.group(1).split("|")
        if len(tokens) != node:
            raise ValueError(
                f"node group {group!r} has {len(tokens)} edges; node {node} takes {node} inputs"
            )
        for i, token in enumerate(tokens):
            op, sep, src = token.partition("~")
            if not sep or src != str(i):
                raise ValueError(f"bad edge token {token!r} in {text!r}: expected '<op>~{i}'")
            if op not in OPS:
                raise ValueError(f"unknown op {op!r} in token {token!r}; allowed: {', '.join(OPS)}")
            ops.append(op)
    return tuple(ops)


def _conv_cost(op: str, c: int) -> tuple[int, int]:
    """(params, MACs per pixel) of one op at width ``c``."""
    if op == "nor_conv_3x3":
        return c * c * 9 + 2 * c, c * c * 9
    if op == "nor_conv_1x1":
        return c * c + 2 * c, c * c
    return 0, 0


@register("nb201")
class NB201Space(SearchSpace[NB201Arch]):
    """NAS-Bench-201: 5 ops on 6 edges, 15,625 cells, networks built exactly as the benchmark's.

    Args:
        channels: first-stage width (benchmark: 16).
        cells_per_stage: cells per stage (benchmark: 5).
        resolution: input side in pixels (benchmark: 32), used by :meth:`flops`.
    """

    name = "nb201"

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, resolution: int = 32) -> None:
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.resolution = resolution

    # string form
    def decode(self, text: str) -> NB201Arch:
        return NB201Arch(parse_cell(text))

    def encode(self, arch: NB201Arch) -> str:
        return format_cell(arch.ops)

    # benchmark table
    def __len__(self) -> int:
        return len(OPS) ** len(EDGES)

    def benchmark(self) -> BenchmarkTable:
        return nb201_table()

    def index(self, arch: NB201Arch) -> int:
        """The benchmark's index of ``arch``."""
        return nb201_table().index_of[self.encode(arch)]

    def at(self, index: int) -> NB201Arch:
        """The architecture with benchmark index ``index``."""
        table = nb201_table()
        if not 0 <= index < len(table):
            raise ValueError(f"NAS-Bench-201 index {index} out of range [0, {len(table) - 1}]")
        return self.decode(table.arch[index])

    def accuracy(self, arch: NB201Arch, dataset: str = "cifar10") -> float:
        """True final test accuracy (%) of ``arch`` on ``dataset``."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
        return float(nb201_table().accuracy[dataset][self.index(arch)])

    # sampling
    def sample(self, rng: np.random.Generator) -> NB201Arch:
        return NB201Arch(tuple(OPS[i] for i in rng.integers(0, len(OPS), size=len(EDGES))))

    def mutate(self, arch: NB201Arch, rng: np.random.Generator) -> NB201Arch:
        edge = int(rng.integers(len(EDGES)))
        choices = [op for op in OPS if op != arch.ops[edge]]
        ops = list(arch.ops)
        ops[edge] = choices[int(rng.integers(len(choices)))]
        return NB201Arch(tuple(ops))

    def decisions(self, arch: NB201Arch) -> list[int]:
        return [OPS.index(op) for op in arch.ops]

    def from_decisions(self, choices: list[int]) -> NB201Arch:
        return NB201Arch(tuple(OPS[int(c)] for c in choices))

    def decision_sizes(self) -> list[int]:
        return [len(OPS)] * len(EDGES)

    def smallest(self) -> NB201Arch:
        """The all-``none`` cell: no parameters in the cells."""
        return NB201Arch(("none",) * len(EDGES))

    # networks and cost
    def build(self, arch: NB201Arch, num_classes: int = 10, **kwargs: Any) -> NB201Network:
        return NB201Network(
            arch.ops, num_classes, channels=self.channels, cells_per_stage=self.cells_per_stage, **kwargs
        )

    def timm_spec(self, arch: NB201Arch) -> tuple[str, dict[str, Any]]:
        return "nb201", {"arch": self.encode(arch)}

    def _cost(self, arch: NB201Arch, num_classes: int) -> tuple[int, int]:
        c, side = self.channels, self.resolution
        params = 3 * c * 9 + 2 * c
        macs = 3 * c * 9 * side * side
        for stage in range(3):
            if stage > 0:
                side //= 2
                params += c * 2 * c * 9 + 4 * c + 2 * c * 2 * c * 9 + 4 * c + c * 2 * c
                macs += (c * 2 * c * 9 + 2 * c * 2 * c * 9 + c * 2 * c) * side * side
                c *= 2
            for op in arch.ops:
                p, m = _conv_cost(op, c)
                params += p * self.cells_per_stage
                macs += m * side * side * self.cells_per_stage
        params += 2 * c + c * num_classes + num_classes
        macs += c * num_classes
        return params, macs

    def params(self, arch: NB201Arch, num_classes: int = 10) -> int:
        return self._cost(arch, num_classes)[0]

    def flops(self, arch: NB201Arch, num_classes: int = 10) -> int:
        return self._cost(arch, num_classes)[1]
