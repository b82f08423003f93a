"""WRCor on the paper's 600M ImageNet network: time and peak memory on this machine.

Scores ``timm.create_model("wrcor_600m")`` (1000 classes, untrained) on one batch of random
images and labels, then times one ordinary training step (forward, backward to the parameters)
on the same batch for a ratio. Peak resident memory is the process's ``ru_maxrss``.

Usage::

    .venv/bin/python benchmarks/wrcor_600m.py [--batch 64] [--resolution 224] [--split 1]
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import timm
import torch

import nas


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(batch: int = 64, resolution: int = 224, split: int = 1, seed: int = 0) -> dict:
    """Score ``wrcor_600m`` once and time a training step; returns the measurements."""
    torch.manual_seed(seed)
    model = timm.create_model("wrcor_600m")
    inputs = torch.randn(batch, 3, resolution, resolution)
    targets = torch.randint(0, model.num_classes, (batch,))
    rss_before = _peak_rss_gib()

    result = nas.proxies.score("wrcor", model, inputs, targets, split=split)
    rss_wrcor = _peak_rss_gib()

    model.train()
    start = time.perf_counter()
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    step_s = time.perf_counter() - start
    return {
        "score": result.score,
        "wrcor_s": result.seconds,
        "diagnostics": result.diagnostics,
        "step_s": step_s,
        "rss_before_gib": rss_before,
        "rss_wrcor_gib": rss_wrcor,
        "rss_step_gib": _peak_rss_gib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = run(args.batch, args.resolution, args.split, args.seed)
    print(
        f"wrcor_600m, batch {args.batch} x 3 x {args.resolution}^2 random images, split={args.split}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"WRCor score: {r['score']:.4f}")
    print(f"diagnostics: {r['diagnostics']}")
    print(f"WRCor time: {r['wrcor_s']:.1f} s; one training step (fwd + bwd to params): {r['step_s']:.1f} s; ratio {r['wrcor_s'] / r['step_s']:.2f}")
    print(
        f"peak RSS: {r['rss_before_gib']:.2f} GiB after model + batch, {r['rss_wrcor_gib']:.2f} GiB "
        f"after WRCor, {r['rss_step_gib']:.2f} GiB after the training step"
    )


if __name__ == "__main__":
    main()
