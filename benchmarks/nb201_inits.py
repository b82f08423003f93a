"""How much of the NAS-Bench-201 results is the networks' initialization (and the batch)?

Reads the shipped score files, computes nothing on networks:

1. ``nb201_all_cells*.csv.gz``: WRCor, SynFlow and JacCor of all 15,625 cells under three
   initializations (``python -m nas.benchmark --all --proxies wrcor synflow jacob_cov
   --init-seed K``): each proxy's and SJW's rank correlation over all cells, the cell each one
   ranks first (what an optimizer of the proxy converges to) with its true accuracy, the rank
   of the benchmark's best cell, and how well two initializations agree.
2. ``nb201_zoo_3x1000.csv.gz`` (init 0) and ``nb201_zoo_seed0_*.csv.gz`` (init 1, init 2, and
   init 0 with the next 64 images): every zoo proxy's CIFAR-10 Spearman on the same 1,000 cells
   (sampling seed 0) under each, and its spread over the three initializations. Fisher is there
   as ``fisher_channel_sum``, the per-channel sum those runs computed (the score now sums over
   weights; the channel sum is its diagnostic).

    python benchmarks/nb201_inits.py
"""

from __future__ import annotations

import csv
import gzip
import statistics
from pathlib import Path

import numpy as np
from scipy import stats

from nas.benchmark import rank_correlations, sample_indices
from nas.proxies.vote import get_vote

RESULTS = Path(__file__).parent / "results"
ALL_CELLS = {0: "nb201_all_cells.csv.gz", 1: "nb201_all_cells_init1.csv.gz", 2: "nb201_all_cells_init2.csv.gz"}
ZOO = {
    "init 0": "nb201_zoo_3x1000.csv.gz",
    "init 1": "nb201_zoo_seed0_init1_off0.csv.gz",
    "init 2": "nb201_zoo_seed0_init2_off0.csv.gz",
    "init 0, images 64-127": "nb201_zoo_seed0_init0_off64.csv.gz",
}
SKIP = {"index", "arch", "cifar10", "cifar100", "imagenet16_120", "failures"}


def _read(name: str) -> dict[int, dict[str, str]]:
    with gzip.open(RESULTS / name, "rt", newline="") as f:
        return {int(r["index"]): r for r in csv.DictReader(f)}


def _column(rows: dict[int, dict[str, str]], indices: list[int], name: str) -> np.ndarray:
    return np.array([float(rows[i][name]) for i in indices])


def _short(arch: str) -> str:
    ops = {"none": "0", "skip_connect": "s", "nor_conv_1x1": "1", "nor_conv_3x3": "3", "avg_pool_3x3": "p"}
    return "".join(ops[edge.split("~")[0]] for node in arch.strip("|").split("|+|") for edge in node.split("|"))


def all_cells() -> None:
    runs = {k: _read(v) for k, v in ALL_CELLS.items()}
    indices = sorted(runs[0])
    acc = _column(runs[0], indices, "cifar10")
    best = int(np.argmax(acc))
    sjw = get_vote("sjw")
    print("All 15,625 cells, CIFAR-10 (cells as 6 edge ops: 0 none, s skip, 1 conv1x1, 3 conv3x3, p pool;")
    print(f"the benchmark's best cell {_short(runs[0][indices[best]]['arch'])} has {acc[best]:.2f}%)\n")
    print("| init | proxy | Kendall tau | Spearman rho | its top cell | top cell's acc | best cell's rank |")
    print("|---|---|---|---|---|---|---|")
    scores: dict[tuple[int, str], np.ndarray] = {}
    for k, rows in runs.items():
        matrix = np.stack([_column(rows, indices, m) for m in sjw.members], axis=1)
        for name in (*sjw.members, "sjw"):
            s = sjw.wins(matrix).astype(np.float64) if name == "sjw" else _column(rows, indices, name)
            scores[k, name] = s
            tau, rho = rank_correlations(s, acc)
            top = int(np.argmax(s))
            rank = int((s > s[best]).sum()) + 1
            print(f"| {k} | {name} | {tau:.3f} | {rho:.3f} | {_short(runs[0][indices[top]]['arch'])} | {acc[top]:.2f} | {rank} |")
    print("\nAgreement between initializations over all cells (Spearman; top-100 overlap):\n")
    print("| proxy | 0 vs 1 | 0 vs 2 | 1 vs 2 |")
    print("|---|---|---|---|")
    for name in (*sjw.members, "sjw"):
        cells = []
        for a, b in ((0, 1), (0, 2), (1, 2)):
            x, y = scores[a, name], scores[b, name]
            finite = np.isfinite(x) & np.isfinite(y)
            rho = stats.spearmanr(x[finite], y[finite]).statistic
            overlap = len(set(np.argsort(-x)[:100]) & set(np.argsort(-y)[:100]))
            cells.append(f"{rho:.3f}; {overlap}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def zoo() -> None:
    runs = {label: _read(name) for label, name in ZOO.items()}
    indices = sample_indices(1000, 0, 15625)
    header = next(iter(runs["init 1"].values()))
    names = [c for c in header if c not in SKIP and not c.startswith("sec_")]
    print(f"\nZoo, the same {len(indices)} cells (sampling seed 0), CIFAR-10 Spearman rho:\n")
    print("| proxy | " + " | ".join(runs) + " | mean ± std over inits 0-2 |")
    print("|---|" + "---|" * (len(runs) + 1))
    acc = _column(runs["init 1"], indices, "cifar10")
    for name in [*names, "sjw", "spw"]:
        rhos = []
        for rows in runs.values():
            if name in ("sjw", "spw"):
                vote = get_vote(name)
                s = vote.wins(np.stack([_column(rows, indices, m) for m in vote.members], axis=1)).astype(np.float64)
            else:
                s = _column(rows, indices, name)
            rhos.append(rank_correlations(s, acc)[1])
        inits = rhos[:3]
        print(f"| {name} | " + " | ".join(f"{r:.3f}" for r in rhos)
              + f" | {statistics.fmean(inits):.3f} ± {statistics.pstdev(inits):.3f} |")  # fmt: skip


if __name__ == "__main__":
    all_cells()
    zoo()
