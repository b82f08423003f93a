"""Choosing an aggregate without overstating it: select on one half of the cells, report on the other.

Reads stored scores only (run folders, as ``python -m nas.evaluate --cache``): the cells of the
sample (``--n`` cells of ``--seed``, NAS-Bench-201) whose every pool member is stored. They are
split by benchmark index into a selection half (even positions) and a held-out half (odd). Every
combination of 2 to ``--max-members`` pool members under ``--rule`` is ranked by its Spearman rho
with ``--dataset`` accuracy on the selection half; the best one, and the best one whose members
are all in ``--baseline-pool`` (the proxies the framework had before), are reported on the held-out
half beside the registered aggregates and the single proxies, with how many combinations were
tried. Aggregates are ranked within each half (a population-relative score).

    python benchmarks/aggregate_selection.py --cache benchmarks/results/nb201_zoo_3x1000 \\
        benchmarks/results/nb201_meco_swap_seed0 benchmarks/results/nb201_az_nas_seed0
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np

import nas
from nas.data import cifar10_batch
from nas.evaluate import metrics, sample_rows, score_cells
from nas.proxies.aggregate import Aggregate

POOL = ("wrcor", "synflow", "jacob_cov", "naswot", "zico", "params", "flops", "l2_norm", "snip", "gcor",
        "meco", "meco_opt", "swap", "trainable_layers", "az_expressivity", "az_progressivity", "az_trainability")  # fmt: skip
BASELINE = ("wrcor", "synflow", "jacob_cov", "naswot", "zico", "params", "flops", "l2_norm", "snip", "gcor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--cache", type=Path, nargs="+", required=True, help="run folders with the stored scores")
    parser.add_argument("--pool", nargs="+", default=list(POOL))
    parser.add_argument("--baseline-pool", nargs="+", default=list(BASELINE))
    parser.add_argument("--compare", nargs="+", default=["az_nas", "sjw", "wrcor", "meco"],
                        help="registered proxies and aggregates reported beside the chosen ones")  # fmt: skip
    parser.add_argument("--rule", default="log_rank", choices=("log_rank", "mean_rank", "vote"))
    parser.add_argument("--max-members", type=int, default=4)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="cifar10")
    args = parser.parse_args()

    space = nas.spaces.get("nb201")
    table = space.benchmark()
    compare = [c for c in args.compare if c in nas.proxies.REGISTRY]
    members = nas.proxies.expand([*args.pool, *compare])
    rows = sample_rows(table, args.n, args.seed)
    x, y = cifar10_batch(64)
    with tempfile.TemporaryDirectory() as tmp:
        scored, _ = score_cells(space, [space.decode(table.arch[i]) for i in rows], members, x, y,
                                out=Path(tmp), caches=args.cache, score=False)  # fmt: skip
    have = [i for i in rows if table.arch[i] in scored]
    if len(have) < 20:
        parser.error(f"only {len(have)} cells of the sample have every member stored ({', '.join(members)})")
    matrix = np.array([scored[table.arch[i]].scores for i in have])
    truth = table.accuracy[args.dataset][np.array(have)]
    select, held = np.arange(0, len(have), 2), np.arange(1, len(have), 2)

    def values(names: tuple[str, ...], idx: np.ndarray) -> np.ndarray:
        cols = [members.index(m) for m in names]
        if len(names) == 1:
            return matrix[idx][:, cols[0]]
        return Aggregate("candidate", names, args.rule).scores(matrix[idx][:, cols])

    combos = [c for k in range(2, args.max_members + 1) for c in itertools.combinations(args.pool, k)]
    rho = {c: metrics(values(c, select), truth[select]).rho for c in combos}
    best = max(combos, key=lambda c: rho[c])
    base = [c for c in combos if set(c) <= set(args.baseline_pool)]
    best_base = max(base, key=lambda c: rho[c])
    print(f"NAS-Bench-201 {args.dataset}: {len(have)} of seed {args.seed}'s {args.n} cells have every member stored; "
          f"selection half {len(select)}, held-out half {len(held)}; {len(combos)} combinations of 2-{args.max_members} "
          f"of {len(args.pool)} proxies tried under {args.rule} ({len(base)} of them within the baseline pool)")  # fmt: skip
    print("\n| ranking | chosen on the selection half | held-out rho | tau | nDCG@1000 | top-10 acc |")
    print("|---|---|---|---|---|---|")
    report = [(f"best {args.rule} aggregate", best), (f"best {args.rule} of the baseline pool", best_base)]
    report += [(c, tuple(nas.proxies.get(c).members)) for c in compare]
    for label, names in report:
        if label in compare and len(names) > 1:
            spec = nas.proxies.get(label)
            cols = [members.index(m) for m in names]
            v = spec.scores(matrix[held][:, cols])
        else:
            v = values(names, held)
        m = metrics(v, truth[held])
        chosen = f"rho {rho[names]:.3f}: {' + '.join(names)}" if names in rho else ""
        print(f"| {label} | {chosen} | {m.rho:.3f} | {m.tau:.3f} | {m.ndcg:.3f} | {m.top10:.2f} |")


if __name__ == "__main__":
    main()
