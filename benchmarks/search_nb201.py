"""Search quality on NAS-Bench-201: the winner's true CIFAR-10 test accuracy, mean ± std over seeds.

Scores are cached by architecture in a CSV (and may be seeded from a `python -m nas.benchmark`
run's `scores.csv`, which uses the same real batch and initialization rule), so algorithms and
seeds that meet the same architecture score it once.

    python benchmarks/search_nb201.py --algorithms random evolution --proxy wrcor --seeds 0 1 2 3 4 \\
        --n 1000 --cache runs/search_bench/wrcor.csv --seed-cache runs/benchmark/nb201/scores.csv

``benchmarks/results/nb201_all_cells.csv.gz`` holds WRCor, SynFlow and JacCor of all 15,625 cells
(``python -m nas.benchmark --all``, same batch and initialization rule), so as a seed cache it
turns every search with ``--proxy wrcor`` or ``--proxy sjw`` into table lookups;
``nb201_all_cells_init1.csv.gz`` and ``_init2`` hold the same under two other initializations
(pass the matching ``--init-seed``).

``--padding circular`` scores the WRCor members with the WRCor family's circular-padding probe
(:mod:`nas.proxies.wrcor`); their cache columns are then ``<proxy>_circular``, so the two are
never mixed.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import nas
from nas.benchmark import parse_device
from nas.data import cifar10_batch, nb201_table
from nas.proxies.wrcor import PADDINGS, WRCOR_PROXIES
from nas.search import Objective, create


class CachedScorer:
    def __init__(
        self,
        objective: Objective,
        cache: Path,
        seed_caches: list[Path],
        batch_size: int,
        device: str = "cpu",
        init_seed: int = 0,
        padding: str = "model",
    ) -> None:
        self.objective, self.cache, self.device = objective, cache, torch.device(device)
        self.init_seed = init_seed
        probed = padding != "model"
        self.options = {m: {"padding": padding} if probed and m in WRCOR_PROXIES else {} for m in objective.members}
        self.columns = [f"{m}_{padding}" if self.options[m] else m for m in objective.members]
        self.space = nas.spaces.get("nb201")
        self.x, self.y = cifar10_batch(batch_size, device=self.device)
        # arch -> {column: score}; each file gives the columns it has, so members stored in
        # different files (e.g. SynFlow in one, WRCor in another) combine.
        self.table: dict[str, dict[str, float]] = {}
        for path in (*seed_caches, cache):
            if path.exists():
                with (gzip.open(path, "rt", newline="") if path.suffix == ".gz" else path.open(newline="")) as f:
                    for row in csv.DictReader(f):
                        known = self.table.setdefault(row["arch"], {})
                        known.update({c: float(row[c]) for c in self.columns if row.get(c) not in (None, "")})
        cache.parent.mkdir(parents=True, exist_ok=True)
        new = not cache.exists()
        self.file = cache.open("a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["arch", *self.columns])
        self.computed = 0

    def __call__(self, arch) -> tuple[float, ...]:
        key = self.space.encode(arch)
        known = self.table.setdefault(key, {})
        missing = [(m, c) for m, c in zip(self.objective.members, self.columns, strict=True) if c not in known]
        if missing:
            torch.manual_seed(self.init_seed * 1_000_003 + self.space.index(arch))  # nas.benchmark's rule
            model = self.space.build(arch, num_classes=10).to(self.device)
            for m, c in missing:
                known[c] = nas.proxies.score(m, model, self.x, self.y, **self.options[m]).score
            self.writer.writerow([key, *(repr(known[c]) for c in self.columns)])
            self.file.flush()
            self.computed += 1
        return tuple(known[c] for c in self.columns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algorithms", nargs="+", default=["random", "evolution"])
    parser.add_argument("--proxy", default="wrcor")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", type=Path, default=Path("runs/search_bench/scores.csv"))
    parser.add_argument("--seed-cache", type=Path, nargs="+", default=[],
                        help="score files read before --cache (CSV or .csv.gz, columns arch and the proxies)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--children-per-step", type=int, default=None,
                        help="evolution: children bred per population state (the paper's R-EA: 1; default: the algorithm's)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--init-seed", type=int, default=0,
                        help="seed of the networks' initialization (as nas.benchmark's; must match --seed-cache)")  # fmt: skip
    parser.add_argument("--padding", choices=PADDINGS, default="model",
                        help="WRCor members: score the networks as built, or with the circular-padding probe")  # fmt: skip
    args = parser.parse_args()
    try:
        device = parse_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    objective = Objective(args.proxy)
    scorer = CachedScorer(objective, args.cache, args.seed_cache, args.batch_size, device, args.init_seed, args.padding)
    space, table = nas.spaces.get("nb201"), nb201_table()
    best_possible = table.accuracy["cifar10"].max()
    print(f"NAS-Bench-201 CIFAR-10, proxy {args.proxy}, N = {args.n}, batch {args.batch_size}, seeds {args.seeds}, "
          f"init seed {args.init_seed}, padding {args.padding}")  # fmt: skip
    for name in args.algorithms:
        accs = []
        for seed in args.seeds:
            start = time.perf_counter()
            kwargs = {"children_per_step": args.children_per_step} if name == "evolution" and args.children_per_step else {}
            algo = create(name, space, objective, args.n, seed=seed, **kwargs)
            while not algo.done:
                archs = algo.ask()
                if not archs:
                    break
                algo.tell(archs, np.array([scorer(a) for a in archs]))
            winner = algo.ranking()[0][0]
            acc = space.accuracy(winner, "cifar10")
            accs.append(acc)
            print(f"  {name} seed {seed}: winner {space.encode(winner)} test acc {acc:.2f}% "
                  f"({len(algo.history)} candidates, {time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        print(f"{name}: {statistics.fmean(accs):.2f} ± {statistics.pstdev(accs):.2f} (optimum {best_possible:.2f})")
    print(f"scores computed in this run: {scorer.computed}")


if __name__ == "__main__":
    main()
