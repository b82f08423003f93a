"""What the one scoring path shares: a candidate's members through score_many against each member alone.

For each of ``--n`` NAS-Bench-201 cells (sampled with ``--seed``, built once, batch 64 of the
shipped CIFAR-10 images) it times, in alternating order:

- ``shared``: :func:`nas.proxies.score_many` of the proxy or aggregate (what the product's
  ``CandidateScorer`` runs: SJW's JacCor takes its input Jacobian from WRCor's forward pass);
- ``separate``: each member by :func:`nas.proxies.score` on its own, the times summed (what a
  scorer without shared passes pays).

and prints the median per-cell ratio shared / separate (below 1.0: the sharing pays).

    python benchmarks/shared_passes.py --proxy sjw --n 20 --threads 1
    python benchmarks/shared_passes.py --proxy wrcor --n 20 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import nas
from nas.data import cifar10_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--proxy", default="sjw", help="a proxy or aggregate")
    parser.add_argument("--n", type=int, default=20, help="cells")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    members = nas.proxies.expand([args.proxy])
    space = nas.spaces.get("nb201")
    rng = np.random.default_rng(args.seed)
    x, y = cifar10_batch(64)
    shared_s, separate_s, ratios = [], [], []
    for i in range(args.n):
        arch = space.sample(rng)
        torch.manual_seed(i)
        model = space.build(arch, num_classes=10)
        nas.proxies.score_many(members, model, x, y)  # warm-up of this shape
        timings: dict[str, float] = {}
        for kind in (("shared", "separate") if i % 2 == 0 else ("separate", "shared")):
            start = time.perf_counter()
            if kind == "shared":
                out = nas.proxies.score_many(members, model, x, y)
                assert not any(nas.proxies.failed(r) for r in out.values()), out
            else:
                for m in members:
                    nas.proxies.score(m, model, x, y)
            timings[kind] = time.perf_counter() - start
        shared_s.append(timings["shared"])
        separate_s.append(timings["separate"])
        ratios.append(timings["shared"] / timings["separate"])
    print(f"{args.proxy} ({', '.join(members)}) on {args.n} NAS-Bench-201 cells, batch 64, torch threads {args.threads}")
    print(f"shared (score_many): median {statistics.median(shared_s):.4f} s per cell")
    print(f"separate (each member alone, summed): median {statistics.median(separate_s):.4f} s per cell")
    print(f"ratio shared / separate: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
