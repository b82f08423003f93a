"""WRCor as built against its circular-padding probe on the zoo's 3 x 1,000 NAS-Bench-201 cells.

Reads shipped score files, computes nothing on networks:

- ``nb201_zoo_3x1000.csv.gz``: every zoo proxy, init 0 (``python -m nas.zoo --n 1000 --seeds 0 1 2``);
- ``nb201_wrcor_circular_3x1000.csv.gz``: WRCor of the same cells, same weights and batch, with
  every zero-padded convolution scored with circular padding
  (``python -m nas.benchmark --n 1000 --seeds 0 1 2 --proxies wrcor --padding circular``).

For each sampling seed it prints the CIFAR-10 Spearman of WRCor, SJW and SPW with either WRCor,
and the true accuracy of the cell each ranks first in the sample (what random search over those
1,000 cells returns).

    python benchmarks/nb201_padding.py
"""

from __future__ import annotations

import csv
import gzip
import statistics
from pathlib import Path

import numpy as np

from nas.benchmark import rank_correlations, sample_indices
from nas.proxies.vote import get_vote

RESULTS = Path(__file__).parent / "results"


def read(name: str) -> dict[int, dict[str, str]]:
    with gzip.open(RESULTS / name, "rt", newline="") as f:
        return {int(r["index"]): r for r in csv.DictReader(f)}


def main() -> None:
    zoo = read("nb201_zoo_3x1000.csv.gz")
    circular = {i: float(r["wrcor"]) for i, r in read("nb201_wrcor_circular_3x1000.csv.gz").items()}
    seeds = (0, 1, 2)
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for seed in seeds:
        idx = sample_indices(1000, seed, 15625)
        missing = [i for i in idx if i not in circular or i not in zoo]
        if missing:
            raise SystemExit(f"seed {seed}: {len(missing)} sampled cells are missing from the score files")
        acc = np.array([float(zoo[i]["cifar10"]) for i in idx])
        for padding in ("as built", "circular"):

            def member(p: str, i: int, padding: str = padding) -> float:
                return circular[i] if p == "wrcor" and padding == "circular" else float(zoo[i][p])

            scores = {"wrcor": np.array([member("wrcor", i) for i in idx])}
            for vote in ("sjw", "spw"):
                v = get_vote(vote)
                scores[vote] = v.wins(np.array([[member(p, i) for p in v.members] for i in idx])).astype(float)
            for name, s in scores.items():
                rho = rank_correlations(s, acc)[1]
                top = acc[s == s.max()].mean()  # ties share the pick
                rows.setdefault(name, {}).setdefault(padding, []).append((rho, top))
    print("NAS-Bench-201, zoo samples of 1,000 cells (seeds 0, 1, 2), init 0, batch 64 of real CIFAR-10")
    print("| proxy | WRCor | C10 rho per seed | mean ± std | top cell's C10 acc per seed | mean |")
    print("|---|---|---|---|---|---|")
    for name, by in rows.items():
        for padding, vals in by.items():
            rhos, tops = [v[0] for v in vals], [v[1] for v in vals]
            print(f"| {name} | {padding} | {' / '.join(f'{r:.3f}' for r in rhos)} | "
                  f"{statistics.fmean(rhos):.3f} ± {statistics.pstdev(rhos):.3f} | "
                  f"{' / '.join(f'{t:.2f}' for t in tops)} | {statistics.fmean(tops):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
