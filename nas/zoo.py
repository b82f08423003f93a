"""The proxy zoo: every proxy and vote on the same NAS-Bench-201 sample, one correlation table.

Samples architectures per seed, scores each network once with every proxy through
:func:`nas.proxies.score_many` (shared passes, failures recorded per proxy) on one fixed real
CIFAR-10 batch, times one plain training-style forward+backward of the same network in the same
run, and prints a Markdown table: Kendall tau and Spearman rho against the true test accuracy on
CIFAR-10, CIFAR-100 and ImageNet16-120 (mean ± std over seeds), seconds per architecture and the
ratio to the forward+backward, beside the published CIFAR-10 Spearman figures.

A vote's score for correlation is its Copeland count (majority wins) over the architectures
sampled with that seed, computed from its members' stored scores.

Writes, under ``--out``: ``scores.csv`` (every member score, appended as computed, so a rerun
resumes), ``scatter.png`` (one panel per proxy and vote, first seed), ``summary.json`` and
``zc_nasbench201.json`` in NAS-Bench-Suite-Zero layout
(``dataset -> architecture string -> {proxy: {"score", "time"}, "val_accuracy"}``; the scores
are the CIFAR-10-batch scores for every dataset, ``val_accuracy`` holds the benchmark's final
test accuracy, the only accuracy the shipped table has, and a failed proxy has ``"score": null``
with its ``"error"``).

Example::

    python -m nas.zoo --n 200 --seeds 0 --threads 1 --out runs/zoo/nb201
    python -m nas.zoo --n 50 --proxies synflow jacob_cov wrcor l2_norm sjw spw
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nas import proxies, spaces
from nas.benchmark import (
    ResultsCSV,
    _time_fwd_bwd,
    _where,
    add_run_arguments,
    keep_stored,
    rank_correlations,
    resolve_run_arguments,
    sample_indices,
    scatter_plot,
    stored_indices,
)
from nas.data import DATASETS, cifar10_batch, nb201_table
from nas.progress import progress_bar
from nas.proxies.many import expand, failed, score_many
from nas.proxies.vote import available_votes, get_vote

#: Published NAS-Bench-201 CIFAR-10 Spearman rho (NAS-Bench-Suite-Zero; WRCor paper for zico,
#: wrcor, rcor), printed beside the measured figures.
PUBLISHED_CIFAR10_RHO: dict[str, float] = {
    "naswot": 0.77, "jacob_cov": 0.75, "synflow": 0.73, "params": 0.72, "flops": 0.69,
    "l2_norm": 0.68, "grad_norm": 0.58, "snip": 0.58, "grasp": 0.51, "fisher": 0.50,
    "zen": 0.35, "zico": 0.80, "wrcor": 0.812, "rcor": 0.803,
}  # fmt: skip
#: Dataset keys of NAS-Bench-Suite-Zero's ``zc_nasbench201.json``.
NBSZ_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16_120": "ImageNet16-120"}


def _header(names: Sequence[str]) -> list[str]:
    return ["index", "arch", *DATASETS, *names, *[f"sec_{n}" for n in names], "sec_zoo", "sec_fwd_bwd", "failures"]


def score_architectures(
    indices: Sequence[int],
    names: Sequence[str],
    *,
    batch_size: int = 64,
    batch_offset: int = 0,
    init_seed: int = 0,
    csv_path: Path | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """Score the benchmark architectures ``indices`` with the proxies ``names`` (no votes).

    Each network is initialized on the CPU from the seed ``(init_seed, index)`` as in
    :mod:`nas.benchmark`, then moved to ``device``.
    Rows already in ``csv_path`` are reused; new rows are appended as they are computed.
    Each row holds the scores, ``sec_<proxy>`` (see :mod:`nas.proxies.many` for shared passes),
    ``sec_zoo`` (wall time of all proxies), ``sec_fwd_bwd`` (one plain forward+backward of the
    same network, right after) and ``failures`` (a JSON object ``{proxy: error}``; a failed
    proxy's score is ``-inf``).
    """
    space = spaces.get("nb201")
    table = nb201_table()
    device = torch.device(device)
    x, y = cifar10_batch(batch_size, offset=batch_offset, device=device)
    header = _header(names)
    store = ResultsCSV(csv_path, header)
    done = {i: _parse(r, header) for i, r in store.stored.items()}
    rows: list[dict] = []
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("zoo", total=len(indices), completed=sum(i in done for i in indices))
            for index in indices:
                if index in done:
                    rows.append(done[index])
                    continue
                torch.manual_seed(init_seed * 1_000_003 + index)
                model = space.build(space.decode(table.arch[index]), num_classes=10).to(device)
                row: dict = {"index": index, "arch": table.arch[index]}
                row.update({d: float(table.accuracy[d][index]) for d in DATASETS})
                start = time.perf_counter()
                results = score_many(names, model, x, y)
                row["sec_zoo"] = time.perf_counter() - start
                row["sec_fwd_bwd"] = _time_fwd_bwd(model, x, y)
                for n, r in results.items():
                    row[n], row[f"sec_{n}"] = r.score, r.seconds
                row["failures"] = json.dumps({n: r.diagnostics["error"] for n, r in results.items() if failed(r)})
                rows.append(row)
                store.append(row)
                bar.advance(task)
    finally:
        store.close()
    return rows


def _parse(raw: dict, header: Sequence[str]) -> dict:
    row: dict = {"index": int(raw["index"]), "arch": raw["arch"], "failures": raw["failures"] or "{}"}
    for key in header:
        if key not in row:
            row[key] = float(raw[key])
    return row


def vote_wins(rows: Sequence[dict], vote: str) -> np.ndarray:
    """The Copeland count of ``vote`` over ``rows`` (its members' stored scores)."""
    v = get_vote(vote)
    return v.wins(np.array([[r[m] for m in v.members] for r in rows], dtype=np.float64))


def _failed_in(rows: Sequence[dict], name: str) -> int:
    return sum(name in json.loads(r["failures"]) for r in rows)


def export_nbsz(rows: Sequence[dict], names: Sequence[str], path: Path) -> None:
    """Write ``rows`` as NAS-Bench-Suite-Zero's ``zc_nasbench201.json`` layout."""
    errors = [json.loads(r["failures"]) for r in rows]
    data: dict[str, dict] = {}
    for d, key in NBSZ_DATASETS.items():
        data[key] = {}
        for r, err in zip(rows, errors, strict=True):
            entry: dict = {}
            for n in names:
                entry[n] = {"score": None, "time": r[f"sec_{n}"], "error": err[n]} if n in err else {
                    "score": r[n], "time": r[f"sec_{n}"]}  # fmt: skip
            entry["val_accuracy"] = r[d]
            data[key][r["arch"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m nas.zoo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="architectures per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    parser.add_argument("--proxies", nargs="+", default=None,
                        help="registered proxies and votes (default: every proxy and every vote)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-offset", type=int, default=0)
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the networks' initialization")
    add_run_arguments(parser, Path("runs/zoo/nb201"))
    args = parser.parse_args(argv)
    device, shard = resolve_run_arguments(parser, args)

    requested = args.proxies or [*proxies.available(), *available_votes()]
    try:
        names = expand(requested)
    except ValueError as e:
        parser.error(str(e))
    votes = [v for v in dict.fromkeys(requested) if v in available_votes()]
    shown = [n for n in dict.fromkeys(requested) if n not in votes]
    shown += [n for n in names if n not in shown]  # vote members are scored and shown too
    total = len(nb201_table())
    per_seed = {s: sample_indices(args.n, s, total) for s in args.seeds}
    per_seed = keep_stored(parser, args, per_seed)
    union = sorted({i for idx in per_seed.values() for i in idx})
    csv_path = args.out / "scores.csv"
    fresh = len(set(union) - (stored_indices(csv_path) if csv_path.exists() else set()))
    rows = score_architectures(
        union[shard[0] :: shard[1]] if shard else union, names, batch_size=args.batch_size,
        batch_offset=args.batch_offset, init_seed=args.init_seed, csv_path=csv_path,
        progress=not args.no_progress, device=device,
    )  # fmt: skip
    if shard:
        print(f"shard {args.shard}: {len(rows)} of {len(union)} architectures in {args.out / 'scores.csv'}")
        return {"architectures": len(rows), "shard": args.shard}
    by_index = {r["index"]: r for r in rows}
    columns = [*shown, *votes]

    correlations: dict[str, dict] = {}
    for s in args.seeds:
        sel = [by_index[i] for i in per_seed[s]]
        scores = {n: [r[n] for r in sel] for n in shown}
        scores.update({v: vote_wins(sel, v).tolist() for v in votes})
        for col in columns:
            for d in DATASETS:
                tau, rho = rank_correlations(scores[col], [r[d] for r in sel])
                cell = correlations.setdefault(col, {}).setdefault(d, {"tau": [], "rho": []})
                cell["tau"].append(tau)
                cell["rho"].append(rho)

    def seconds(r: dict, col: str) -> float:
        members = get_vote(col).members if col in votes else (col,)
        return sum(r[f"sec_{m}"] for m in members)

    timing = {col: {"seconds": statistics.median(seconds(r, col) for r in rows),
                    "ratio": statistics.median(seconds(r, col) / r["sec_fwd_bwd"] for r in rows)} for col in columns}  # fmt: skip
    timing["zoo"] = {"seconds": statistics.median(r["sec_zoo"] for r in rows),
                     "ratio": statistics.median(r["sec_zoo"] / r["sec_fwd_bwd"] for r in rows)}  # fmt: skip
    timing["fwd_bwd"] = {"seconds": statistics.median(r["sec_fwd_bwd"] for r in rows), "ratio": 1.0}

    print(f"\nNAS-Bench-201 proxy zoo: {len(union)} architectures ({args.n} per seed, seeds {args.seeds}), "
          f"batch {args.batch_size} of real CIFAR-10, init seed {args.init_seed}, {fresh} scored in this run on {_where(device)}")  # fmt: skip
    print("Votes are scored by their Copeland wins over each seed's sample. Times: median per architecture;"
          " ratio: median of per-architecture (proxy seconds / plain forward+backward seconds).\n")  # fmt: skip
    head = ["proxy", "published C10 rho"] + [f"{d} {m}" for d in DATASETS for m in ("tau", "rho")]
    print("| " + " | ".join([*head, "s/arch", "x fwd+bwd", "failed"]) + " |")
    print("|" + "---|" * (len(head) + 3))
    summary_corr: dict[str, dict] = {}
    for col in columns:
        cells = []
        for d in DATASETS:
            c = correlations[col][d]
            stats = {"tau_mean": statistics.fmean(c["tau"]), "tau_std": statistics.pstdev(c["tau"]),
                     "rho_mean": statistics.fmean(c["rho"]), "rho_std": statistics.pstdev(c["rho"])}  # fmt: skip
            summary_corr.setdefault(col, {})[d] = stats
            cells += [f"{stats['tau_mean']:.3f} ± {stats['tau_std']:.3f}", f"{stats['rho_mean']:.3f} ± {stats['rho_std']:.3f}"]
        pub = PUBLISHED_CIFAR10_RHO.get(col)
        nfail = sum(_failed_in(rows, m) for m in (get_vote(col).members if col in votes else (col,)))
        print(f"| {col} | {'' if pub is None else f'{pub:g}'} | " + " | ".join(cells)
              + f" | {timing[col]['seconds']:.3f} | {timing[col]['ratio']:.2f} | {nfail} |")  # fmt: skip
    blank = " | ".join([""] * (2 * len(DATASETS)))
    print(f"| full zoo (score_many) |  | {blank} | {timing['zoo']['seconds']:.3f} | {timing['zoo']['ratio']:.2f} |  |")
    print(f"| plain forward+backward |  | {blank} | {timing['fwd_bwd']['seconds']:.3f} | 1.00 |  |")

    first = [dict(by_index[i]) for i in per_seed[args.seeds[0]]]
    for v in votes:
        for r, w in zip(first, vote_wins(first, v), strict=True):
            r[v] = float(w)
    scatter_plot(first, columns, args.out / "scatter.png")
    export_nbsz([by_index[i] for i in union], names, args.out / "zc_nasbench201.json")
    summary = {
        "correlations": summary_corr, "seconds": timing, "architectures": len(union),
        "failures": {n: _failed_in(rows, n) for n in names},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {args.out / 'scores.csv'}, {args.out / 'scatter.png'}, {args.out / 'summary.json'}, "
          f"{args.out / 'zc_nasbench201.json'}")  # fmt: skip
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
