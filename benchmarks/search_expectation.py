"""What a search on NAS-Bench-201 returns in expectation, over many seeds, from stored scores.

Five seeds give a mean whose standard error is about 0.2-0.4 points here, as large as the gaps
that matter. This runs the package's own search algorithms for many seeds on the stored
all-cell scores (WRCor, SynFlow and JacCor of all 15,625 cells, one file per initialization;
``#params`` from the space's analytic count), so nothing is scored and each search is a table
lookup. For every proxy it prints the mean winner's CIFAR-10 test accuracy with its standard
error, the mean of seeds 0-4, and how often the mean of five seeds drawn from this distribution
reaches ``--target`` (a bootstrap), beside the best of N random cells (the oracle).

    python benchmarks/search_expectation.py --seeds 200
    python benchmarks/search_expectation.py --scores benchmarks/results/nb201_all_cells_init1.csv.gz --seeds 200
"""

from __future__ import annotations

import argparse
import csv
import gzip
import statistics
from pathlib import Path

import numpy as np

import nas
from nas.data import nb201_table
from nas.search import Objective, create

RESULTS = Path(__file__).resolve().parent / "results"


def load_scores(path: Path, space: nas.spaces.SearchSpace) -> dict[str, dict[str, float]]:
    """arch -> {column: score} from a stored all-cells file, plus ``params`` from the analytic count."""
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        scores = {k: float(v) for k, v in row.items() if k not in ("index", "arch") and v not in (None, "")}
        scores["params"] = float(space.params(space.decode(row["arch"])))
        table[row["arch"]] = scores
    if len(table) != len(nb201_table()):
        raise ValueError(f"{path} holds {len(table)} cells; expected all {len(nb201_table())}")
    return table


def winner_accuracy(
    algorithm: str, space: nas.spaces.SearchSpace, objective: Objective, table: dict[str, dict[str, float]], n: int, seed: int
) -> float:
    algo = create(algorithm, space, objective, n, seed=seed)
    while not algo.done:
        archs = algo.ask()
        if not archs:
            break
        algo.tell(archs, np.array([[table[space.encode(a)][m] for m in objective.members] for a in archs]))
    return space.accuracy(algo.ranking()[0][0], "cifar10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, default=RESULTS / "nb201_all_cells.csv.gz")
    parser.add_argument("--algorithm", default="random", choices=nas.search.available())
    parser.add_argument("--proxies", nargs="+", default=["wrcor", "sjw", "synflow", "params", "jacob_cov"])
    parser.add_argument("--seeds", type=int, default=200, help="search seeds 0..S-1")
    parser.add_argument("--n", type=int, default=1000, help="candidates per search")
    parser.add_argument("--target", type=float, default=93.5, help="accuracy a five-seed mean is compared with")
    args = parser.parse_args()
    if args.seeds < 5:
        parser.error(f"--seeds must be >= 5 (the five-seed bootstrap needs them), got {args.seeds}")
    space = nas.spaces.get("nb201")
    table = load_scores(args.scores, space)
    acc = nb201_table().accuracy["cifar10"]
    rng = np.random.default_rng(0)
    oracle = statistics.fmean(float(acc[rng.choice(len(acc), args.n, replace=False)].max()) for _ in range(args.seeds))
    print(f"NAS-Bench-201 CIFAR-10, {args.algorithm} search, N = {args.n}, seeds 0-{args.seeds - 1}, scores {args.scores.name}")
    print(f"best of {args.n} random cells (oracle), mean over {args.seeds} draws: {oracle:.2f}")
    print(f"| proxy | mean | std | s.e. | seeds 0-4 | P(five-seed mean >= {args.target}) |")
    print("|---|---|---|---|---|---|")
    boot = np.random.default_rng(1)
    columns = next(iter(table.values()))
    for proxy in args.proxies:
        objective = Objective(proxy)
        missing = [m for m in objective.members if m not in columns]
        if missing:
            parser.error(f"{args.scores} has no column for {missing}; it has {sorted(columns)}")
        a = np.array([winner_accuracy(args.algorithm, space, objective, table, args.n, s) for s in range(args.seeds)])
        five = boot.choice(a, size=(100_000, 5)).mean(axis=1)
        print(f"| {proxy} | {a.mean():.2f} | {a.std(ddof=1):.2f} | {a.std(ddof=1) / np.sqrt(len(a)):.2f} | "
              f"{a[:5].mean():.2f} | {np.mean(five >= args.target):.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
