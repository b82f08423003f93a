"""Two DDP processes (gloo, CPU, one thread each) against one process with one thread.

Both score the same candidates with the same seed; prints the wall time of each, their ratio,
and whether the scores and winner are identical.

    python benchmarks/search_ddp.py --n 200

On a machine with cores to spare, ``--concurrent --cpus-one 13 --cpus-two 14,15`` runs the two
programs at the same time, each pinned to its own cores (three cores in all), which halves the
wall time of the benchmark and keeps the comparison fair.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(n: int, devices: int, out: Path, batch: int, cpus: set[int] | None = None) -> tuple[float, float]:
    cmd = [sys.executable, str(ROOT / "search.py"), "--trainer.accelerator", "cpu", "--search.num_candidates", str(n),
           "--search.batch_size", str(batch), "--search.output_dir", str(out)]  # fmt: skip
    if devices > 1:
        cmd += ["--trainer.devices", str(devices), "--trainer.strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NAS_NO_PROGRESS": "1"}
    start = time.perf_counter()
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, preexec_fn=pin)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    wall = time.perf_counter() - start
    found = re.search(r"zero-shot search: .* in ([0-9.]+) s", proc.stdout + proc.stderr)
    return wall, float(found.group(1)) if found else float("nan")


def scores(folder: Path) -> dict[str, str]:
    with open(folder / "candidates.csv", newline="") as f:
        return {r["arch"]: r["wrcor"] for r in csv.DictReader(f)}


def _cpus(value: str) -> set[int]:
    try:
        cpus = {int(c) for c in value.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated core numbers, got {value!r}") from None
    return cpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrent", action="store_true", help="run the one- and two-process programs at once")
    parser.add_argument("--cpus-one", type=_cpus, default=None, help="cores for the one-process run, e.g. 13")
    parser.add_argument("--cpus-two", type=_cpus, default=None, help="cores for the two-process run, e.g. 14,15")
    args = parser.parse_args()
    if args.concurrent and not (args.cpus_one and args.cpus_two and not args.cpus_one & args.cpus_two):
        parser.error("--concurrent needs disjoint --cpus-one and --cpus-two")
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp) / "one", Path(tmp) / "two"
        if args.concurrent:
            with ThreadPoolExecutor(2) as pool:
                f1 = pool.submit(run, args.n, 1, one, args.batch_size, args.cpus_one)
                f2 = pool.submit(run, args.n, 2, two, args.batch_size, args.cpus_two)
                (wall1, search1), (wall2, search2) = f1.result(), f2.result()
        else:
            wall1, search1 = run(args.n, 1, one, args.batch_size, args.cpus_one)
            wall2, search2 = run(args.n, 2, two, args.batch_size, args.cpus_two)
        same_scores = scores(one) == scores(two)
        w1 = (one / "winner.yaml").read_text().split("\n")[1]
        w2 = (two / "winner.yaml").read_text().split("\n")[1]
    how = f"at once, pinned to cores {sorted(args.cpus_one)} and {sorted(args.cpus_two)}" if args.concurrent else "one after the other"
    print(f"NAS-Bench-201, {args.n} candidates, WRCor, batch {args.batch_size}, CPU, 1 thread per process, "
          f"{os.cpu_count()} cores, runs {how}")  # fmt: skip
    print(f"1 process : wall {wall1:7.1f} s, search {search1:7.1f} s")
    print(f"2 processes (DDP, gloo): wall {wall2:7.1f} s, search {search2:7.1f} s")
    print(f"ratio 2 / 1: wall {wall2 / wall1:.3f}, search {search2 / search1:.3f}")
    print(f"identical scores: {same_scores}; same winner: {w1 == w2} ({w1})")


if __name__ == "__main__":
    main()
