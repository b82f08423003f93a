"""Sampling and pricing the MobileNet-like space under a FLOPs budget.

Samples ``n`` architectures under the budget, checks that every one is valid (round-trips
through its string), within budget, and that a few of them cost exactly what the built model
counts, then prints the MACs and parameter distributions and the throughput of sampling and of
the analytic pricing.

Usage::

    .venv/bin/python benchmarks/mbv2_space.py [--n 10000] [--max-flops 600e6] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import nas
from nas.spaces.mbv2 import MBV2Space


def _built_cost(space: MBV2Space, arch) -> tuple[int, int]:
    model = space.build(arch).to("meta").eval()  # shapes only: FlopCounterMode needs no data
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, arch.resolution, arch.resolution, device="meta"))
    return counter.get_total_flops() // 2, sum(p.numel() for p in model.parameters())


def run(n: int = 10_000, max_flops: float = 600e6, seed: int = 0, exact_checks: int = 5) -> dict:
    """Sample, check and price ``n`` architectures; returns the measurements."""
    space = nas.spaces.get("mbv2").with_budget(max_flops=max_flops)
    rng = np.random.default_rng(seed)

    start = time.perf_counter()
    archs = [space.sample(rng) for _ in range(n)]
    sample_s = time.perf_counter() - start

    start = time.perf_counter()
    costs = np.array([space.cost(a) for a in archs])
    price_s = time.perf_counter() - start

    invalid = sum(space.decode(space.encode(a)) != a for a in archs)
    over = int((costs[:, 0] > max_flops).sum())
    mismatched = sum(_built_cost(space, a) != space.cost(a) for a in archs[:exact_checks])

    # share of unconstrained draws within budget: how often rejection sampling succeeds
    free = nas.spaces.get("mbv2")
    unconstrained = np.array([free.flops(free.sample(rng)) for _ in range(2000)])
    return {
        "n": n,
        "max_flops": max_flops,
        "invalid": invalid,
        "over_budget": over,
        "distinct": len(set(archs)),
        "exact_mismatches": f"{mismatched}/{min(exact_checks, n)}",
        "macs": costs[:, 0],
        "params": costs[:, 1],
        "accept_rate": float((unconstrained <= max_flops).mean()),
        "sample_us": sample_s / n * 1e6,
        "price_us": price_s / n * 1e6,
    }


def _quantiles(x: np.ndarray, scale: float) -> str:
    q = np.percentile(x, [0, 25, 50, 75, 100]) / scale
    return " / ".join(f"{v:.1f}" for v in q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--max-flops", type=float, default=600e6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = run(args.n, args.max_flops, args.seed)
    print(f"mbv2 space, {r['n']} samples under max_flops={r['max_flops']:.3g} (seed {args.seed})")
    print(f"invalid: {r['invalid']}  over budget: {r['over_budget']}  distinct: {r['distinct']}")
    print(f"analytic cost != built model (FlopCounterMode, params): {r['exact_mismatches']}")
    print(f"MACs   (M) min / q1 / median / q3 / max: {_quantiles(r['macs'], 1e6)}")
    print(f"params (M) min / q1 / median / q3 / max: {_quantiles(r['params'], 1e6)}")
    print(f"unconstrained draws within budget: {r['accept_rate']:.1%}")
    print(f"sample: {r['sample_us']:.1f} us/arch ({1e6 / r['sample_us']:.0f}/s, pricing included)")
    print(f"price:  {r['price_us']:.1f} us/arch ({1e6 / r['price_us']:.0f}/s, MACs + params)")


if __name__ == "__main__":
    main()
