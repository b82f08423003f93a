"""The NAS-Bench-201 cell space (NATS-Bench topology search space).

An architecture is the op on each of the cell's six edges (:class:`nas.arch.nb201.NB201Arch`,
whose module documents the string form); the networks are :mod:`nas.models.nb201`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nas.arch.nb201 import EDGES, OPS, NB201Arch
from nas.data import DATASETS, BenchmarkTable, nb201_table
from nas.models.nb201 import NB201Network
from nas.models.nb201 import build as build_network
from nas.spaces import register
from nas.spaces.base import SearchSpace


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
        return NB201Arch.decode(text)

    def encode(self, arch: NB201Arch) -> str:
        return arch.encode()

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
        return build_network(
            arch.ops,
            num_classes=num_classes,
            channels=self.channels,
            cells_per_stage=self.cells_per_stage,
            **kwargs,
        )

    def timm_spec(self, arch: NB201Arch) -> tuple[str, dict[str, Any]]:
        return "nb201", {"arch": self.encode(arch)}

    def cost(self, arch: NB201Arch, num_classes: int | None = None) -> tuple[int, int]:
        num_classes = 10 if num_classes is None else num_classes
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
        return macs, params
