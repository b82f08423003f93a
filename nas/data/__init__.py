"""Data shipped with the package, so evaluation and the default search run offline.

- ``nb201_test_acc.csv.gz``: NAS-Bench-201 ground truth for all 15,625 cells (benchmark index,
  cell string, final test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120, in %).
- ``nb301_naslib_725.csv.gz``: 725 DARTS-space genotypes of NASLib's NAS-Bench-301 zero-cost data
  (automl/NASLib, Apache-2.0), in NASLib's compact form (``compact``: JSON ``[normal, reduce]``,
  each 8 pairs ``[input, op_index]``) with NAS-Bench-301's surrogate-predicted CIFAR-10
  validation accuracy (``val_accuracy``, %).
- ``nb101_naslib_500.csv.gz``: 500 NAS-Bench-101 cells of NASLib's zero-cost benchmark
  (``zc_nasbench101.json``, Apache-2.0): adjacency matrix and ops as NASLib stores them (not
  pruned) and CIFAR-10 validation accuracy (%, 108 epochs); keyed by the benchmark's hash.
- ``cifar10_test_256.npz``: the first 256 images of the official CIFAR-10 test set, pixel-exact
  (``images`` uint8 [N, 32, 32, 3], ``labels`` int64 [N], ``classes``).
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import torch

from nas.arch.darts import DartsGenotype
from nas.arch.nb101 import NB101Arch

DATASETS = ("cifar10", "cifar100", "imagenet16_120")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True, eq=False)
class BenchmarkTable:
    """A benchmark's ground truth: row ``i`` is architecture ``arch[i]`` (the space's canonical
    string) with its true accuracy (%) on each dataset of ``accuracy``. For NAS-Bench-201, row
    ``i`` is the benchmark's own architecture index ``i``."""

    arch: tuple[str, ...]
    accuracy: dict[str, np.ndarray]
    #: What :attr:`index_of` is keyed by: each row's ``space.key`` (default: ``arch`` itself).
    keys: tuple[str, ...] | None = None
    #: What the accuracies are, for reports (e.g. "final test accuracy").
    measure: str = "accuracy"

    def __len__(self) -> int:
        return len(self.arch)

    @property
    def index_of(self) -> dict[str, int]:
        """Row of each key (the space's ``key`` of the row's architecture)."""
        return _index_of(self)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(self.accuracy)


@cache
def _index_of(table: BenchmarkTable) -> dict[str, int]:
    return {a: i for i, a in enumerate(table.keys or table.arch)}


@cache
def nb201_table() -> BenchmarkTable:
    """The shipped NAS-Bench-201 ground-truth table (loaded once)."""
    path = resources.files(__name__).joinpath("nb201_test_acc.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: int(r["index"]))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise AssertionError("nb201 table indices are not 0..N-1")
    acc = {d: np.array([float(r[d]) for r in rows]) for d in DATASETS}
    return BenchmarkTable(tuple(r["arch"] for r in rows), acc, measure="final test accuracy (200 epochs)")


@cache
def nb301_table() -> BenchmarkTable:
    """The shipped NAS-Bench-301 table of NASLib's 725 genotypes (loaded once)."""
    path = resources.files(__name__).joinpath("nb301_naslib_725.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    arch = tuple(DartsGenotype.from_compact(r["compact"]).encode() for r in rows)
    if len(set(arch)) != len(arch):
        raise AssertionError("the nb301 table holds a genotype twice")
    acc = {"cifar10": np.array([float(r["val_accuracy"]) for r in rows])}
    return BenchmarkTable(arch, acc, measure="NAS-Bench-301 surrogate validation accuracy")


@dataclass(frozen=True, eq=False)
class NB101Table:
    """NAS-Bench-101 ground truth: row ``i`` is the table's ``i``-th cell as stored.

    Several rows may hold the same cell (the same benchmark hash after pruning), each with the
    validation accuracy of one of the benchmark's training runs: :meth:`accuracy` averages them.
    """

    arch: tuple[NB101Arch, ...]
    val_accuracy: np.ndarray
    hashes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.arch)

    @property
    def rows_of(self) -> dict[str, list[int]]:
        """Benchmark hash -> the rows holding that cell."""
        return _rows_of(self)

    def accuracy(self, module_hash: str) -> float:
        """Mean validation accuracy (%) of the rows of the cell with hash ``module_hash``."""
        rows = self.rows_of.get(module_hash)
        if rows is None:
            raise ValueError(
                f"NAS-Bench-101 cell {module_hash!r} is not among the {len(set(self.hashes))} cells "
                "of the shipped table (nb101_naslib_500); query the official dataset by this hash"
            )
        return float(self.val_accuracy[rows].mean())


@cache
def _rows_of(table: NB101Table) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, h in enumerate(table.hashes):
        out.setdefault(h, []).append(i)
    return out


@cache
def nb101_table() -> NB101Table:
    """The shipped NAS-Bench-101 table of 500 cells (loaded once)."""
    path = resources.files(__name__).joinpath("nb101_naslib_500.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    archs = tuple(NB101Arch(json.loads(r["matrix"]), json.loads(r["ops"])) for r in rows)
    acc = np.array([float(r["val_accuracy"]) for r in rows])
    return NB101Table(archs, acc, tuple(a.module_hash() for a in archs))


def cifar10_sample() -> tuple[np.ndarray, np.ndarray]:
    """The shipped real CIFAR-10 images (uint8 NHWC) and labels."""
    path = resources.files(__name__).joinpath("cifar10_test_256.npz")
    with path.open("rb") as f, np.load(f, allow_pickle=False) as d:
        return d["images"].copy(), d["labels"].astype(np.int64)


def cifar10_batch(
    batch_size: int = 64, *, offset: int = 0, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalized real CIFAR-10 batch from the shipped sample.

    Args:
        batch_size: number of images (at most 256 minus ``offset``).
        offset: first image taken, so different seeds can use different batches.
        device: where the tensors go.
    """
    images, labels = cifar10_sample()
    if batch_size < 1 or offset < 0 or offset + batch_size > len(images):
        raise ValueError(
            f"batch_size={batch_size}, offset={offset}: the shipped sample holds {len(images)} "
            "images; use 1 <= batch_size and offset + batch_size <= that"
        )
    x = torch.from_numpy(images[offset : offset + batch_size]).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    y = torch.from_numpy(labels[offset : offset + batch_size])
    return x.contiguous().to(device), y.to(device)
