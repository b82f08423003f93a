"""Evaluate training-free proxies on a search space's ground truth.

Samples cells of the space's ground-truth table per seed (or takes every cell), scores each
network once with every proxy through the product's scorer on one fixed real CIFAR-10 batch,
times one plain forward+backward of the same network, and prints one Markdown table per
dataset: Kendall tau, Spearman rho, nDCG, the mean true accuracy of each proxy's top-10 and
top-100 cells (mean ± std over seeds), the random-search expectation (the winner of N random
cells, mean over draws from every scored cell), seconds per architecture and the ratio to the
forward+backward, beside the published CIFAR-10 Spearman figures. Aggregates are ranked within
each seed's sample and within each draw.

Writes, under ``--out``: ``config.json`` and ``candidates.csv`` (every score, appended as
computed; a rerun resumes), ``scatter.png``, ``summary.json`` and, with ``--export-nbsz``,
NAS-Bench-Suite-Zero's ``zc_<benchmark>.json``.

Examples::

    python -m nas.evaluate --space nb201 --n 1000 --seeds 0 1 2 --proxies wrcor sjw --out runs/evaluate/nb201
    python -m nas.evaluate --space nb201 --n 1000 --seeds 0 1 2 --stored-only \\
        --cache benchmarks/results/nb201_zoo_3x1000 --out runs/evaluate/zoo
    python -m nas.evaluate --space nb201 --all --proxies wrcor --shard 0/4 --out runs/evaluate/all_0
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from nas import proxies, spaces
from nas.data import cifar10_batch
from nas.evaluate import (
    column_ranker,
    export_nbsz,
    metrics,
    rank_correlations,
    sample_rows,
    score_cells,
    search_expectation,
)
from nas.progress import progress_bar
from nas.search.runner import INIT_POLICIES

#: Published CIFAR-10 Spearman rho on NAS-Bench-201 (NAS-Bench-Suite-Zero; the WRCor paper for
#: zico, wrcor, rcor), printed beside the measured figures.
PUBLISHED_RHO: dict[str, dict[str, float]] = {
    "nb201": {
        "naswot": 0.77, "jacob_cov": 0.75, "synflow": 0.73, "params": 0.72, "flops": 0.69,
        "l2_norm": 0.68, "grad_norm": 0.58, "snip": 0.58, "grasp": 0.51, "fisher": 0.50,
        "zen": 0.35, "zico": 0.80, "wrcor": 0.812, "rcor": 0.803,
    },
}  # fmt: skip
#: NAS-Bench-Suite-Zero file name and dataset keys per space.
NBSZ: dict[str, tuple[str, dict[str, str]]] = {
    "nb201": ("zc_nasbench201.json", {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16_120": "ImageNet16-120"}),
    "nb101": ("zc_nasbench101.json", {"cifar10": "cifar10"}),
    "darts": ("zc_nasbench301.json", {"cifar10": "cifar10"}),
}  # fmt: skip


def parse_device(value: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a ``torch.device``."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(f"--device must be cpu, cuda, cuda:N or auto, got {value!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or auto, got {value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {value!r}: CUDA is not available on this machine")
    return device


def parse_shard(value: str) -> tuple[int, int]:
    """``K/N``: this process scores every N-th cell starting at the K-th (0 <= K < N)."""
    try:
        k, n = (int(p) for p in value.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 0/4), got {value!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard K/N needs N >= 1 and 0 <= K < N, got {value!r}")
    return k, n


def parse_proxy_kwargs(text: str) -> dict[str, dict]:
    """``--proxy-kwargs '{wrcor: {padding: circular}}'`` (YAML or JSON) as a mapping of mappings."""
    value = yaml.safe_load(text) if text else {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError(f"--proxy-kwargs must map proxy names to option mappings, got {text!r}")
    return value


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, torch threads {torch.get_num_threads()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nas.evaluate", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)  # fmt: skip
    parser.add_argument("--space", default="nb201", help=f"search space with a ground-truth table ({', '.join(spaces.available())})")
    parser.add_argument("--proxies", nargs="+", default=None,
                        help="registered proxies and aggregates (default: every one)")  # fmt: skip
    parser.add_argument("--proxy-kwargs", default="", metavar="YAML",
                        help="options per proxy, e.g. '{wrcor: {padding: circular}}'")  # fmt: skip
    parser.add_argument("--n", type=int, default=1000, help="cells per seed (ignored with --all)")
    parser.add_argument("--all", action="store_true", help="every cell of the table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-offset", type=int, default=0, help="first image of the shipped sample used")
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the networks' initialization")
    parser.add_argument("--init-policy", choices=INIT_POLICIES, default=None,
                        help="how each network's seed is formed (default: benchmark_index where the space has "
                        "a benchmark index, else arch_hash)")  # fmt: skip
    parser.add_argument("--no-reference-timing", action="store_true",
                        help="do not time one plain forward+backward per network")  # fmt: skip
    parser.add_argument("--expectation-n", type=int, default=1000, help="candidates per random search")
    parser.add_argument("--expectation-draws", type=int, default=200, help="random searches drawn")
    parser.add_argument("--cache", type=Path, nargs="+", default=[],
                        help="run folders whose scores (same scoring settings) are reused")  # fmt: skip
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="score only every N-th cell from the K-th and stop (pass the shards' --out "
                        "folders as --cache to a final run to get the table)")  # fmt: skip
    parser.add_argument("--stored-only", action="store_true",
                        help="score nothing: the table over the sampled cells already in --out and --cache")  # fmt: skip
    parser.add_argument("--export-nbsz", action="store_true", help="write NAS-Bench-Suite-Zero's zc_<benchmark>.json")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/evaluate/<space>)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
        raise AssertionError("unreachable") from e


def _run(args: argparse.Namespace) -> dict:
    device = parse_device(args.device)
    shard = parse_shard(args.shard) if args.shard else None
    if args.threads:
        torch.set_num_threads(args.threads)
    space = spaces.get(args.space)
    table = space.benchmark()
    if table is None:
        raise ValueError(f"space {args.space!r} has no ground-truth table to evaluate on")
    requested = args.proxies or proxies.available()
    members = proxies.expand(requested)
    shown = [*dict.fromkeys([*requested, *members])]
    shown = [n for n in shown if proxies.get(n).kind == "single"] + [n for n in shown if proxies.get(n).kind == "aggregate"]
    proxy_kwargs = parse_proxy_kwargs(args.proxy_kwargs)
    init = args.init_policy or ("benchmark_index" if callable(getattr(space, "index", None)) else "arch_hash")
    out = args.out or Path("runs/evaluate") / args.space

    per_seed = {s: sample_rows(table, None if args.all else args.n, s) for s in args.seeds}
    union = sorted({i for rows in per_seed.values() for i in rows})
    todo = union[shard[0] :: shard[1]] if shard else union
    x, y = cifar10_batch(args.batch_size, offset=args.batch_offset, device=device)
    archs = [space.decode(table.arch[i]) for i in todo]
    with progress_bar(not args.no_progress) as bar:
        task = bar.add_task("evaluate", total=len(archs))
        scored, fresh = score_cells(
            space, archs, members, x, y, out=out, init=init, init_seed=args.init_seed, proxy_kwargs=proxy_kwargs,
            reference_timing=not args.no_reference_timing, caches=args.cache, score=not args.stored_only,
            on_progress=lambda done, total, s: bar.update(task, completed=min(done, total)),
        )  # fmt: skip
    if shard:
        print(f"shard {args.shard}: {sum(table.arch[i] in scored for i in todo)} of {len(union)} cells in {out}")
        return {"cells": len(todo), "shard": args.shard}
    if args.stored_only:
        per_seed = {s: [i for i in rows if table.arch[i] in scored] for s, rows in per_seed.items()}
        print("--stored-only: " + ", ".join(f"seed {s}: {len(r)} stored" for s, r in per_seed.items()))
        per_seed = {s: r for s, r in per_seed.items() if len(r) >= 3}
        if not per_seed:
            raise ValueError("--stored-only: no seed has 3 or more stored cells")
        union = sorted({i for rows in per_seed.values() for i in rows})
    return report(args, space.name, table, per_seed, union, scored, members, shown, device, fresh, out)


def report(args, space_name, table, per_seed, union, scored, members, shown, device, fresh, out) -> dict:
    """Print the tables; write summary.json, scatter.png (and the NB-Suite-Zero export)."""
    matrix_of = {s: np.array([scored[table.arch[i]].scores for i in rows]) for s, rows in per_seed.items()}
    rankers = {n: column_ranker(n, members) for n in shown}
    union_matrix = np.array([scored[table.arch[i]].scores for i in union])
    summary: dict = {"metrics": {}, "expectation": {}, "seconds": {}}
    print(f"\n{space_name}: {len(union)} cells ({'all' if args.all else args.n} per seed, seeds {list(per_seed)}), "
          f"batch {args.batch_size} of real CIFAR-10, init seed {args.init_seed}, {fresh} scored in this run on {_where(device)}")  # fmt: skip
    print(f"Random-search expectation: mean true accuracy of the winner of N = {min(args.expectation_n, len(union))} "
          f"cells drawn without replacement from the {len(union)} scored cells, {args.expectation_draws} draws (± s.e.).")  # fmt: skip
    published = PUBLISHED_RHO.get(space_name, {})
    for d in table.datasets:
        truth_of = {s: table.accuracy[d][np.array(rows)] for s, rows in per_seed.items()}
        union_truth = table.accuracy[d][np.array(union)]
        print(f"\n### {d}\n")
        print("| proxy | published C10 rho | tau | rho | nDCG | top-10 acc | top-100 acc | E[random search] |")
        print("|---|---|---|---|---|---|---|---|")
        for n in shown:
            per = [metrics(rankers[n](matrix_of[s]), truth_of[s]) for s in per_seed]
            cell = {f: (float(np.mean([getattr(m, f) for m in per])), float(np.std([getattr(m, f) for m in per])))
                    for f in ("tau", "rho", "ndcg", "top10", "top100")}  # fmt: skip
            mean, se = search_expectation(union_matrix, union_truth, rankers[n], n=args.expectation_n,
                                          draws=args.expectation_draws)  # fmt: skip
            summary["metrics"].setdefault(n, {})[d] = {f: {"mean": m, "std": sd} for f, (m, sd) in cell.items()}
            summary["expectation"].setdefault(n, {})[d] = {"mean": mean, "se": se}
            pub = published.get(n, "") if d == table.datasets[0] else ""
            cells = " | ".join(f"{cell[f][0]:.3f} ± {cell[f][1]:.3f}" for f in ("tau", "rho", "ndcg"))
            tops = " | ".join(f"{cell[f][0]:.2f}" for f in ("top10", "top100"))
            print(f"| {n} | {pub} | {cells} | {tops} | {mean:.2f} ± {se:.2f} |")
        best = float(np.max(union_truth))
        print(f"| (best of the {len(union)} cells) |  |  |  |  |  |  | {best:.2f} |")

    rows = [scored[table.arch[i]] for i in union]
    timed = [r for r in rows if r.member_seconds and math.isfinite(r.fwd_bwd) and r.fwd_bwd > 0]
    if timed:
        print("\nseconds per architecture (median) and median ratio to one plain forward+backward of the same network:")
        print("\n| proxy | s/arch | x fwd+bwd | failed |\n|---|---|---|---|")
        for n in shown:
            idx = [members.index(m) for m in proxies.get(n).members]
            secs = [sum(r.member_seconds[i] for i in idx) for r in timed]
            ratio = [sec / r.fwd_bwd for sec, r in zip(secs, timed, strict=True)]
            failed = sum(any(members[i] in r.errors for i in idx) for r in rows)
            summary["seconds"][n] = {"seconds": statistics.median(secs), "ratio": statistics.median(ratio), "failed": failed}
            print(f"| {n} | {statistics.median(secs):.4f} | {statistics.median(ratio):.2f} | {failed} |")
        fb = statistics.median(r.fwd_bwd for r in timed)
        summary["seconds"]["fwd_bwd"] = {"seconds": fb, "ratio": 1.0}
        print(f"| plain forward+backward | {fb:.4f} | 1.00 |  |")
    first = list(per_seed)[0]
    _scatter(rankers, matrix_of[first], table.accuracy[table.datasets[0]][np.array(per_seed[first])], shown,
             out / "scatter.png", table.datasets[0])  # fmt: skip
    if args.export_nbsz:
        name, keys = NBSZ.get(space_name, (f"zc_{space_name}.json", {d: d for d in table.datasets}))
        export_nbsz(out / name, [table.arch[i] for i in union], members, scored, table, keys)
    summary["cells"] = len(union)
    summary["args"] = {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k == "cache" else v)
                       for k, v in vars(args).items()}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out / 'summary.json'}, {out / 'scatter.png'}")
    return summary


def _scatter(rankers, matrix, truth, names, path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(names), 4)
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.4 * nrows), squeeze=False)
    for ax, n in zip(axes.flat, names, strict=False):
        s = np.asarray(rankers[n](matrix), dtype=np.float64)
        ok = np.isfinite(s)
        tau, rho = rank_correlations(s, truth)
        ax.scatter(s[ok], truth[ok], s=4, alpha=0.5)
        ax.set_title(f"{n}: rho={rho:.3f} tau={tau:.3f}", fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel(f"{dataset} accuracy (%)")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
