"""MeCo, SWAP, TE-NAS and #layers on NAS-Bench-201 cells of the zoo protocol, with cost ratios.

The cells are the first ``--n`` of seed 0's sample in the zoo protocol
(``nas.benchmark.sample_indices(1000, 0, 15625)``), each network initialized with
``torch.manual_seed(init * 1_000_003 + index)`` before it is built (as :mod:`nas.benchmark`),
scored on ``nas.data.cifar10_batch(64)``. Prints Spearman rho against the CIFAR-10 test
accuracy and each proxy's seconds as a ratio to one plain forward+backward of the same
network in the same run (median over cells). The slow proxies run on the first ``--n-slow``
cells only.

Example::

    python benchmarks/nb201_meco_swap_tenas.py --n 200 --n-slow 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import nas
from nas.benchmark import _time_fwd_bwd, rank_correlations, sample_indices
from nas.data import cifar10_batch, nb201_table

#: label -> (proxy, options, slow)
VARIANTS: dict[str, tuple[str, dict, bool]] = {
    "meco": ("meco", {}, False),
    "meco_opt": ("meco_opt", {}, False),
    "swap": ("swap", {}, False),
    "trainable_layers": ("trainable_layers", {}, False),
    "params": ("params", {}, False),
    "meco(batch=all)": ("meco", {"batch": "all"}, True),
    "meco(leaves)": ("meco", {"modules": "leaves"}, True),
    "swap(samples=64)": ("swap", {"samples": None}, True),
    "ntk_cond": ("ntk_cond", {}, True),
    "linear_regions": ("linear_regions", {}, True),
    "linear_regions(crop=None)": ("linear_regions", {"crop": None}, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="cells (first of seed 0's sample)")
    parser.add_argument("--n-slow", type=int, default=100, help="cells for the slow proxies")
    parser.add_argument("--init", type=int, default=0, help="initialization seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = nb201_table()
    space = nas.spaces.get("nb201")
    cells = sample_indices(1000, 0, len(table))[: args.n]
    x, y = cifar10_batch(64)
    rows: list[dict] = []
    start = time.perf_counter()
    for k, index in enumerate(cells):
        torch.manual_seed(args.init * 1_000_003 + index)
        model = space.build(space.decode(table.arch[index]), num_classes=10)
        if k == 0:
            _time_fwd_bwd(model, x, y)  # warm-up, not recorded
        row: dict = {"acc": float(table.accuracy["cifar10"][index]), "fb": _time_fwd_bwd(model, x, y)}
        for label, (name, opts, slow) in VARIANTS.items():
            if slow and k >= args.n_slow:
                continue
            r = nas.proxies.score(name, model, x, y, **opts)
            row[label], row[f"sec_{label}"] = r.score, r.seconds
            if label == "swap":
                row["swap(unregularized)"], row["sec_swap(unregularized)"] = float(r.diagnostics["distinct_patterns"]), r.seconds
        rows.append(row)
    print(f"{len(cells)} cells ({args.n_slow} for the slow proxies), {time.perf_counter() - start:.0f} s, "
          f"median forward+backward {statistics.median(r['fb'] for r in rows):.3f} s")  # fmt: skip
    print("| proxy | cells | Spearman rho (CIFAR-10) | Kendall tau | median time / fwd+bwd |")
    print("| --- | --- | --- | --- | --- |")
    labels = [*VARIANTS, "swap(unregularized)"]
    for label in labels:
        have = [r for r in rows if label in r]
        tau, rho = rank_correlations([r[label] for r in have], [r["acc"] for r in have])
        ratio = statistics.median(r[f"sec_{label}"] / r["fb"] for r in have)
        print(f"| {label} | {len(have)} | {rho:.3f} | {tau:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
