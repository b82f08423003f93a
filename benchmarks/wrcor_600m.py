"""Proxies on the paper's 600M ImageNet network: time and peak memory on this machine.

Scores ``timm.create_model("wrcor_600m")`` (1000 classes, untrained) on one batch of random
images and labels with each named proxy or aggregate (an aggregate's members through one
``nas.proxies.score_many`` call, sharing their passes), then times one ordinary training step
(forward, backward to the parameters) on the same batch for a ratio. Peak resident memory is the
process's ``ru_maxrss``.

Usage::

    .venv/bin/python benchmarks/wrcor_600m.py [--batch 64] [--resolution 224] [--split 1] \
        [--proxies wrcor meco_swap_az ...] [--proxy-kwargs '{meco: {batch: all}}']
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import timm
import torch
import yaml

import nas


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(
    batch: int = 64,
    resolution: int = 224,
    split: int = 1,
    seed: int = 0,
    names: tuple[str, ...] = ("wrcor",),
    proxy_kwargs: dict[str, dict] | None = None,
) -> dict:
    """Score ``wrcor_600m`` with each name and time a training step; returns the measurements."""
    torch.manual_seed(seed)
    model = timm.create_model("wrcor_600m")
    inputs = torch.randn(batch, 3, resolution, resolution)
    targets = torch.randint(0, model.num_classes, (batch,))
    rss_before = _peak_rss_gib()
    options = {"wrcor": {"split": split}, **(proxy_kwargs or {})}
    scored = {}
    for name in names:
        members = nas.proxies.expand([name])
        start = time.perf_counter()
        results = nas.proxies.score_many(members, model, inputs, targets, {m: options.get(m, {}) for m in members})
        scored[name] = {
            "seconds": time.perf_counter() - start,
            "scores": {m: r.score for m, r in results.items()},
            "rss_gib": _peak_rss_gib(),
        }

    model.train()
    start = time.perf_counter()
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    step_s = time.perf_counter() - start
    return {"scored": scored, "step_s": step_s, "rss_before_gib": rss_before, "rss_step_gib": _peak_rss_gib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxies", nargs="+", default=["wrcor"], help="proxies or aggregates to time")
    parser.add_argument("--proxy-kwargs", default="", metavar="YAML", help="per-proxy options, e.g. '{meco: {batch: all}}'")
    args = parser.parse_args()
    kwargs = yaml.safe_load(args.proxy_kwargs) if args.proxy_kwargs else {}
    r = run(args.batch, args.resolution, args.split, args.seed, tuple(args.proxies), kwargs)
    print(
        f"wrcor_600m, batch {args.batch} x 3 x {args.resolution}^2 random images, split={args.split}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"one training step (fwd + bwd to params): {r['step_s']:.1f} s; peak RSS {r['rss_before_gib']:.2f} GiB "
          f"after model + batch, {r['rss_step_gib']:.2f} GiB at the end")
    print("| proxy | members' scores | seconds | x training step | peak RSS after (GiB) |")
    print("|---|---|---|---|---|")
    for name, d in r["scored"].items():
        scores = ", ".join(f"{m} {v:.4g}" for m, v in d["scores"].items())
        print(f"| {name} | {scores} | {d['seconds']:.1f} | {d['seconds'] / r['step_s']:.2f} | {d['rss_gib']:.2f} |")


if __name__ == "__main__":
    main()
