"""Evaluate proxies against NAS-Bench-201 ground truth.

Samples architectures with a seed (or takes all 15,625), scores each with one or more proxies
on one fixed real CIFAR-10 batch, and reports Kendall tau and Spearman rho against the true
test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120, with time per architecture. Writes a
CSV of every score (appended as computed, so a rerun resumes) and a scatter plot per proxy.

Example::

    python -m nas.benchmark --n 1000 --seeds 0 1 2 --proxies wrcor-family params \\
        --reference-timing 100 --out runs/benchmark/nb201

``wrcor-family`` computes WRCor, RCor, ACor, GCor and all five weighting schemes from one
forward/backward pass per architecture.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from nas import proxies, spaces
from nas.data import DATASETS, cifar10_batch, nb201_table
from nas.progress import progress_bar
from nas.proxies.wrcor import PADDINGS, WEIGHTINGS, WRCOR_PROXIES, wrcor_family

FAMILY = "wrcor-family"
FAMILY_COLUMNS = ["wrcor", "rcor", "acor", "gcor"] + [f"wrcor_{w}" for w in WEIGHTINGS if w != "exp_bottom_up"]


@dataclass(frozen=True)
class Correlation:
    proxy: str
    dataset: str
    kendall_tau: float
    spearman_rho: float
    n: int


def rank_correlations(scores: Sequence[float], truth: Sequence[float]) -> tuple[float, float]:
    """Kendall tau and Spearman rho of ``scores`` against ``truth`` (-inf scores rank lowest)."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; proxies must report failures, not NaN")
    finite_floor = np.min(s[np.isfinite(s)]) - 1.0 if np.isfinite(s).any() else 0.0
    s = np.where(np.isneginf(s), finite_floor, s)
    return float(stats.kendalltau(s, t).statistic), float(stats.spearmanr(s, t).statistic)


def parse_device(value: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a ``torch.device``."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError as e:
        raise ValueError(f"--device must be cpu, cuda, cuda:N or auto, got {value!r}") from e
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or auto, got {value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {value!r}: CUDA is not available on this machine")
    return device


def parse_shard(value: str) -> tuple[int, int]:
    """``K/N``: this process scores every N-th architecture starting at the K-th (0 <= K < N)."""
    try:
        k, n = (int(p) for p in value.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 0/4), got {value!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard K/N needs N >= 1 and 0 <= K < N, got {value!r}")
    return k, n


def stored_indices(path: Path) -> set[int]:
    """The ``index`` column of a results CSV (for tables over what an interrupted run stored)."""
    if not path.exists():
        raise ValueError(f"--stored-only: {path} does not exist")
    with path.open(newline="") as f:
        return {int(r["index"]) for r in csv.DictReader(f)}


def add_run_arguments(parser: argparse.ArgumentParser, out: Path) -> None:
    """The options :mod:`nas.benchmark` and :mod:`nas.zoo` share: threads, device, shard, output."""
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="score only every N-th architecture from the K-th, write them and stop "
                        "(concatenate the shards' scores.csv into one --out to get the table)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--stored-only", action="store_true",
                        help="score nothing: the table over the sampled architectures already in --out's scores.csv")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")


def resolve_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[torch.device, tuple[int, int] | None]:
    """Check ``--device`` and ``--shard`` (a usage error names the bad value); apply ``--threads``."""
    try:
        device = parse_device(args.device)
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as e:
        parser.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    return device, shard


def keep_stored(parser: argparse.ArgumentParser, args: argparse.Namespace, per_seed: dict[int, list[int]]) -> dict[int, list[int]]:
    """With ``--stored-only``, each seed's sample cut to what ``--out`` holds (seeds with < 3 dropped)."""
    if not args.stored_only:
        return per_seed
    try:
        have = stored_indices(args.out / "scores.csv")
    except ValueError as e:
        parser.error(str(e))
    per_seed = {s: [i for i in idx if i in have] for s, idx in per_seed.items()}
    print("--stored-only: " + ", ".join(f"seed {s}: {len(idx)} stored" for s, idx in per_seed.items()))
    per_seed = {s: idx for s, idx in per_seed.items() if len(idx) >= 3}
    if not per_seed:
        parser.error("--stored-only: no seed has 3 or more stored architectures")
    args.seeds = list(per_seed)
    return per_seed


def sample_indices(n: int | None, seed: int, total: int) -> list[int]:
    """``n`` distinct benchmark indices drawn with ``seed`` (all of them when ``n`` is None)."""
    if n is None:
        return list(range(total))
    if not 1 <= n <= total:
        raise ValueError(f"--n must be in [1, {total}], got {n}")
    return sorted(np.random.default_rng(seed).choice(total, size=n, replace=False).tolist())


def _columns(proxy_names: Sequence[str]) -> list[str]:
    cols: list[str] = []
    for name in proxy_names:
        cols += FAMILY_COLUMNS if name == FAMILY else [name]
    return cols


class ResultsCSV:
    """A CSV of per-architecture rows keyed by ``index``, appended and flushed row by row.

    Rows already in the file are loaded (``stored``) so a rerun resumes; a file written with
    other columns is refused rather than mixed. ``path=None`` keeps nothing on disk.
    """

    def __init__(self, path: Path | None, header: Sequence[str]) -> None:
        self.header = list(header)
        self.stored: dict[int, dict[str, str]] = {}
        self._file = None
        if path is None:
            return
        if path.exists():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != self.header:
                    raise ValueError(
                        f"{path} holds a run with columns {reader.fieldnames}; this run writes "
                        f"{self.header}. Use another --out or delete the file."
                    )
                self.stored = {int(r["index"]): r for r in reader}
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.header)
        if new:
            self._writer.writeheader()
            self._file.flush()

    def append(self, row: dict) -> None:
        if self._file is not None:
            self._writer.writerow(row)
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_fwd_bwd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds of one plain training-style forward+backward (parameter grads included)."""
    model.train()
    model.zero_grad(set_to_none=True)
    _sync(x.device)
    start = time.perf_counter()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    _sync(x.device)
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def _not_wrcor_family(proxy_names: Sequence[str]) -> list[str]:
    """The names that take no WRCor-family option (``padding``)."""
    return [n for n in proxy_names if n not in (FAMILY, *WRCOR_PROXIES)]


def evaluate(
    indices: Sequence[int],
    proxy_names: Sequence[str],
    *,
    batch_size: int = 64,
    batch_offset: int = 0,
    init_seed: int = 0,
    reference_timing: int = 0,
    csv_path: Path | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
    padding: str = "model",
) -> list[dict[str, float | int | str]]:
    """Score the benchmark architectures ``indices``; rows already in ``csv_path`` are reused.

    Each network is initialized on the CPU from the seed ``(init_seed, index)``, then moved to
    ``device``, so an architecture gets the same weights whatever sample or device it meets.
    ``padding`` is the WRCor family's option (:mod:`nas.proxies.wrcor`); with ``"circular"`` only
    WRCor-family proxies may be asked for.
    """
    device = torch.device(device)
    for name in proxy_names:
        if name != FAMILY:
            proxies.get(name)
    opts = {} if padding == "model" else {"padding": padding}
    proxies.validate_options("wrcor", opts)
    if opts and (other := _not_wrcor_family(proxy_names)):
        raise ValueError(f"padding={padding!r} is an option of the WRCor family only, not of {', '.join(other)}")
    space = spaces.get("nb201")
    table = nb201_table()
    x, y = cifar10_batch(batch_size, offset=batch_offset, device=device)
    columns = _columns(proxy_names)
    header = ["index", "arch", *DATASETS, *columns, *[f"sec_{p}" for p in proxy_names], "sec_fwd_bwd"]

    results = ResultsCSV(csv_path, header)
    done = results.stored
    rows: list[dict] = []
    todo = [i for i in indices if i not in done]
    timed = 0
    try:
        bar = progress_bar(progress)
        with bar:
            task = bar.add_task("scoring", total=len(indices), completed=len(indices) - len(todo))
            for index in indices:
                if index in done:
                    rows.append(_parse_row(done[index], columns, proxy_names))
                    continue
                arch = space.decode(table.arch[index])
                torch.manual_seed(init_seed * 1_000_003 + index)
                model = space.build(arch, num_classes=10).to(device)
                row: dict = {"index": index, "arch": table.arch[index]}
                for d in DATASETS:
                    row[d] = float(table.accuracy[d][index])
                for name in proxy_names:
                    start = time.perf_counter()
                    if name == FAMILY:
                        fam = wrcor_family(model, x, y, **opts)
                        row.update({c: fam[c] for c in FAMILY_COLUMNS})
                    else:
                        row[name] = proxies.score(name, model, x, y, **opts).score
                    row[f"sec_{name}"] = time.perf_counter() - start
                row["sec_fwd_bwd"] = float("nan")
                if timed < reference_timing:
                    row["sec_fwd_bwd"] = _time_fwd_bwd(model, x, y)
                    timed += 1
                rows.append(row)
                results.append(row)
                bar.advance(task)
    finally:
        results.close()
    return rows


def _parse_row(raw: dict, columns: Sequence[str], proxy_names: Sequence[str]) -> dict:
    row: dict = {"index": int(raw["index"]), "arch": raw["arch"]}
    for key in [*DATASETS, *columns, *[f"sec_{p}" for p in proxy_names], "sec_fwd_bwd"]:
        row[key] = float(raw[key])
    return row


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, torch threads {torch.get_num_threads()}"


def correlations(rows: Sequence[dict], columns: Sequence[str]) -> list[Correlation]:
    out = []
    for col in columns:
        for d in DATASETS:
            tau, rho = rank_correlations([r[col] for r in rows], [r[d] for r in rows])
            out.append(Correlation(col, d, tau, rho, len(rows)))
    return out


def scatter_plot(rows: Sequence[dict], columns: Sequence[str], path: Path, dataset: str = "cifar10") -> None:
    """One panel per proxy: score against true ``dataset`` accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(columns)
    cols = min(n, 4)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.4 * nrows), squeeze=False)
    acc = np.array([r[dataset] for r in rows])
    for ax, col in zip(axes.flat, columns, strict=False):
        s = np.array([r[col] for r in rows], dtype=np.float64)
        ok = np.isfinite(s)
        tau, rho = rank_correlations(s, acc)
        ax.scatter(s[ok], acc[ok], s=4, alpha=0.5)
        ax.set_title(f"{col}: rho={rho:.3f} tau={tau:.3f}", fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel(f"{dataset} test acc (%)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m nas.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="architectures per seed (ignored with --all)")
    parser.add_argument("--all", action="store_true", help="score all 15,625 architectures")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds")
    parser.add_argument("--proxies", nargs="+", default=["wrcor"], help=f"registered proxies or {FAMILY!r}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-offset", type=int, default=0, help="first image of the shipped sample used")
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the networks' initialization")
    parser.add_argument("--padding", choices=PADDINGS, default="model",
                        help="WRCor family only: score the networks as built, or with circular padding "
                        "(a probe; use its own --out)")  # fmt: skip
    parser.add_argument("--reference-timing", type=int, default=0, metavar="K",
                        help="also time one plain forward+backward on the first K architectures")  # fmt: skip
    add_run_arguments(parser, Path("runs/benchmark/nb201"))
    args = parser.parse_args(argv)
    device, shard = resolve_run_arguments(parser, args)

    known = set(proxies.available()) | {FAMILY}
    bad = [p for p in args.proxies if p not in known]
    if bad:
        parser.error(f"unknown proxy {bad[0]!r}; available: {', '.join(sorted(known))}")
    if args.padding != "model" and (other := _not_wrcor_family(args.proxies)):
        parser.error(f"--padding {args.padding} applies to the WRCor family only, not to {', '.join(other)}")
    total = len(nb201_table())
    per_seed = {s: sample_indices(None if args.all else args.n, s, total) for s in args.seeds}
    per_seed = keep_stored(parser, args, per_seed)
    union = sorted({i for idx in per_seed.values() for i in idx})
    csv_path = args.out / "scores.csv"
    fresh = len(set(union) - (stored_indices(csv_path) if csv_path.exists() else set()))
    rows = evaluate(
        union[shard[0] :: shard[1]] if shard else union, args.proxies, batch_size=args.batch_size,
        batch_offset=args.batch_offset, init_seed=args.init_seed, reference_timing=args.reference_timing,
        csv_path=csv_path, progress=not args.no_progress, device=device, padding=args.padding,
    )  # fmt: skip
    if shard:
        print(f"shard {args.shard}: {len(rows)} of {len(union)} architectures in {args.out / 'scores.csv'}")
        return {"architectures": len(rows), "shard": args.shard}
    by_index = {r["index"]: r for r in rows}
    columns = _columns(args.proxies)

    results: dict[str, dict] = {}
    print(f"\nNAS-Bench-201, {len(union)} architectures ({args.n if not args.all else total} per seed, "
          f"seeds {args.seeds}), batch {args.batch_size} of real CIFAR-10, {fresh} scored in this run on {_where(device)}")  # fmt: skip
    print("\n| proxy | " + " | ".join(f"{d} tau | {d} rho" for d in DATASETS) + " |")
    print("|---|" + "---|---|" * len(DATASETS))
    for col in columns:
        cells = []
        for d in DATASETS:
            taus, rhos = [], []
            for s in args.seeds:
                sel = [by_index[i] for i in per_seed[s]]
                tau, rho = rank_correlations([r[col] for r in sel], [r[d] for r in sel])
                taus.append(tau)
                rhos.append(rho)
            results.setdefault(col, {})[d] = {
                "tau_mean": statistics.fmean(taus), "tau_std": statistics.pstdev(taus),
                "rho_mean": statistics.fmean(rhos), "rho_std": statistics.pstdev(rhos),
            }  # fmt: skip
            r = results[col][d]
            cells.append(f"{r['tau_mean']:.3f} ± {r['tau_std']:.3f} | {r['rho_mean']:.3f} ± {r['rho_std']:.3f}")
        print(f"| {col} | " + " | ".join(cells) + " |")

    print("\nseconds per architecture (median over all scored):")
    timing: dict[str, float] = {}
    for name in args.proxies:
        timing[name] = statistics.median(r[f"sec_{name}"] for r in rows)
        print(f"  {name}: {timing[name]:.4f}")
    ref = [r for r in rows if not math.isnan(r["sec_fwd_bwd"])]
    if ref:
        fb = statistics.median(r["sec_fwd_bwd"] for r in ref)
        timing["fwd_bwd"] = fb
        print(f"  plain forward+backward (first {len(ref)} architectures): {fb:.4f}")
        for name in args.proxies:
            ratios = [r[f"sec_{name}"] / r["sec_fwd_bwd"] for r in ref]
            timing[f"{name}/fwd_bwd"] = statistics.median(ratios)
            print(f"  {name} / forward+backward, median per-architecture ratio: {statistics.median(ratios):.3f}")
    scatter_plot([by_index[i] for i in per_seed[args.seeds[0]]], columns, args.out / "scatter.png")
    summary = {"correlations": results, "seconds": timing, "architectures": len(union), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {args.out / 'scores.csv'}, {args.out / 'scatter.png'}, {args.out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
