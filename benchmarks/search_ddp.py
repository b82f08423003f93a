"""Two DDP processes (gloo, CPU, one thread each) against one process with one thread.

Both score the same candidates with the same seed; prints the wall time of each, their ratio,
and whether the scores and winner are identical.

    python benchmarks/search_ddp.py --n 200
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(n: int, devices: int, out: Path, batch: int) -> tuple[float, float]:
    cmd = [sys.executable, str(ROOT / "search.py"), "--trainer.accelerator", "cpu", "--search.num_candidates", str(n),
           "--search.batch_size", str(batch), "--search.output_dir", str(out)]  # fmt: skip
    if devices > 1:
        cmd += ["--trainer.devices", str(devices), "--trainer.strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NAS_NO_PROGRESS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    found = re.search(r"zero-shot search: .* in ([0-9.]+) s", proc.stdout + proc.stderr)
    return wall, float(found.group(1)) if found else float("nan")


def scores(folder: Path) -> dict[str, str]:
    with open(folder / "candidates.csv", newline="") as f:
        return {r["arch"]: r["wrcor"] for r in csv.DictReader(f)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp) / "one", Path(tmp) / "two"
        wall1, search1 = run(args.n, 1, one, args.batch_size)
        wall2, search2 = run(args.n, 2, two, args.batch_size)
        same_scores = scores(one) == scores(two)
        w1 = (one / "winner.yaml").read_text().split("\n")[1]
        w2 = (two / "winner.yaml").read_text().split("\n")[1]
    print(f"NAS-Bench-201, {args.n} candidates, WRCor, batch {args.batch_size}, CPU, 1 thread per process")
    print(f"1 process : wall {wall1:7.1f} s, search {search1:7.1f} s")
    print(f"2 processes (DDP, gloo): wall {wall2:7.1f} s, search {search2:7.1f} s")
    print(f"ratio 2 / 1: wall {wall2 / wall1:.3f}, search {search2 / search1:.3f}")
    print(f"identical scores: {same_scores}; same winner: {w1 == w2} ({w1})")


if __name__ == "__main__":
    main()
