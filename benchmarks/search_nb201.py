"""Search quality on NAS-Bench-201: the winner's true CIFAR-10 test accuracy, mean ± std over seeds.

Every search runs through the product's path (``CandidateScorer`` + ``RunFolder`` +
``run_search``), with the benchmark-index initialization rule (``--init-seed``) so that the
stored score folders in ``benchmarks/results/`` (same batch, same rule) serve as caches: a search
whose candidates are all stored computes nothing. Each (algorithm, seed) run keeps its own
folder under ``--out``, so a rerun resumes.

    python benchmarks/search_nb201.py --algorithms random evolution reinforce --proxy wrcor --seeds 0 1 2 3 4
    python benchmarks/search_nb201.py --proxy sjw --seeds 3 --init-seed 3 \\
        --cache benchmarks/results/nb201_search_init3_sjw
    python benchmarks/search_nb201.py --proxy wrcor --proxy-kwargs '{wrcor: {padding: circular}}' \\
        --cache benchmarks/results/nb201_search_init0_wrcor_circular

By default the caches are ``benchmarks/results/nb201_all_cells_init<K>`` (WRCor, SynFlow and JacCor
of all 15,625 cells under initialization K = 0, 1, 2) and every ``nb201_search_init<K>_*`` folder.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

import nas
from nas.data import cifar10_batch, nb201_table
from nas.evaluate.__main__ import parse_device
from nas.search import Objective, create
from nas.search.runner import CandidateScorer, RunFolder, run_search, serial_map

RESULTS = Path(__file__).resolve().parent / "results"


def default_caches(init_seed: int) -> list[Path]:
    """The stored score folders made under initialization ``init_seed``."""
    return sorted(p for p in RESULTS.glob(f"nb201_*init{init_seed}*") if (p / "config.json").exists())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--algorithms", nargs="+", default=["random", "evolution"], choices=nas.search.available())
    parser.add_argument("--proxy", default="wrcor", help="a proxy or aggregate")
    parser.add_argument("--proxy-kwargs", default="", metavar="YAML", help="options per member")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the networks' initialization")
    parser.add_argument("--cache", type=Path, nargs="+", default=None,
                        help="score folders to reuse (default: the stored ones of --init-seed)")  # fmt: skip
    parser.add_argument("--children-per-step", type=int, default=None,
                        help="evolution: children bred per population state (the paper's R-EA: 1)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/search_bench"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    args = parser.parse_args()
    try:
        device = parse_device(args.device)
        objective = Objective(args.proxy)
        options = yaml.safe_load(args.proxy_kwargs) if args.proxy_kwargs else {}
    except ValueError as e:
        parser.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    space, table = nas.spaces.get("nb201"), nb201_table()
    x, y = cifar10_batch(args.batch_size, device=device)
    scorer = CandidateScorer(space, objective, x, y, num_classes=10, seed=args.init_seed, proxy_kwargs=options,
                             init="benchmark_index")  # fmt: skip
    caches = default_caches(args.init_seed) if args.cache is None else args.cache
    print(f"NAS-Bench-201 CIFAR-10, proxy {args.proxy} {options or ''}, N = {args.n}, batch {args.batch_size}, "
          f"seeds {args.seeds}, init seed {args.init_seed}, caches: {', '.join(p.name for p in caches) or 'none'}")  # fmt: skip
    computed = 0
    for name in args.algorithms:
        accs = []
        for seed in args.seeds:
            start = time.perf_counter()
            kwargs = {"children_per_step": args.children_per_step} if name == "evolution" and args.children_per_step else {}
            algo = create(name, space, objective, args.n, seed=seed, **kwargs)
            config = {"scoring": scorer.config(), "search": {"proxy": args.proxy, "algorithm": name, "seed": seed, **kwargs}}
            folder = RunFolder(args.out / f"{args.proxy}_init{args.init_seed}" / f"{name}_seed{seed}", config,
                               objective.members, caches=caches)  # fmt: skip
            result = run_search(algo, folder, serial_map(scorer), top_k=1)
            computed += result.newly_scored
            winner = result.ranking[0][0]
            acc = space.accuracy(space.decode(winner), "cifar10")
            accs.append(acc)
            print(f"  {name} seed {seed}: winner {winner} test acc {acc:.2f}% ({len(result.scored)} candidates, "
                  f"{result.newly_scored} scored now, {time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        print(f"{name}: {statistics.fmean(accs):.2f} ± {statistics.pstdev(accs):.2f} "
              f"(optimum {table.accuracy['cifar10'].max():.2f})")  # fmt: skip
    print(f"scores computed in this run: {computed}")


if __name__ == "__main__":
    main()
