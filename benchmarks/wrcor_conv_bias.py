"""Why WRCor's best NAS-Bench-201 cells are 1x1-convolution cells, and what the published hooking changes.

Scores the 64 NAS-Bench-201 cells whose six edges are all convolutions (every mix of 1x1 and 3x3)
with several initializations each, and prints, per number of 3x3 convolutions, the mean true
CIFAR-10 test accuracy and the mean score of (then the Spearman correlations of every ablation of
the paper's machinery, from the same pass)

- ``wrcor``: this project's WRCor (the paper's definition: every activation module's input and
  the loss gradient at that same tensor);
- ``hooked``: the same K and log-determinant, but with the responses the published code collects:
  every module whose class name contains ``ReLU`` is hooked, which in NAS-Bench-201 adds each
  ``ReLUConvBN`` wrapper beside its ReLU, and gradients come from the deprecated
  ``Module.register_backward_hook``, which on a wrapper reports the gradient at the input of its
  last autograd node (the BatchNorm's input, i.e. the convolution's output), not at the wrapper's
  input. Layer weights 2^l are the same as WRCor's;
- ``circular``: WRCor of the same network with every zero-padded convolution switched to
  circular padding (``padding="circular"``), which removes the border that zero padding draws
  identically into every sample's feature maps: a probe of where the preference comes from.

This is an experiment, not a proxy of the package: the ``hooked`` variant reproduces the quirks
``../shared/PAPER.md`` lists so that their effect can be measured.

    python benchmarks/wrcor_conv_bias.py --inits 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import warnings

import torch

import nas
from nas.data import cifar10_batch
from nas.proxies.wrcor import VARIANTS, _abs_corr

REL_TOL = 100 * torch.finfo(torch.float32).eps  # WRCor's own test for a constant response


def wrcor_family(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **options: str) -> dict[str, float]:
    """Every WRCor variant from one shared pass (``options`` apply to all of them)."""
    results = nas.proxies.score_many(list(VARIANTS), model, x, y, dict.fromkeys(VARIANTS, options))
    return {n: r.score for n, r in results.items()}


def _corr(t: torch.Tensor) -> torch.Tensor | None:
    """WRCor's |Pearson| matrix of a response, or None where it is undefined (skipped, as published)."""
    return _abs_corr(t.detach().flatten(1), REL_TOL)[0]


def hooked_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    layers = model.layer_units()
    layer_of: dict[torch.nn.Module, int] = {}
    for depth, unit in enumerate(layers, start=1):
        for m in unit.modules():
            layer_of[m] = depth
    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)
    handles = []

    def on_forward(module, inputs, output):
        c = _corr(inputs[0])
        if c is not None:
            k.add_(c * 2.0 ** layer_of[module])

    def on_backward(module, grad_input, grad_output):
        if grad_input[0] is not None:
            c = _corr(grad_input[0])
            if c is not None:
                k.add_(c * 2.0 ** layer_of[module])

    for m in model.modules():
        if "ReLU" in type(m).__name__ and m in layer_of:
            handles.append(m.register_forward_hook(on_forward))
            handles.append(m.register_backward_hook(on_backward))
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.nn.functional.cross_entropy(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(k).logabsdet)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inits", type=int, default=2, help="initializations per cell")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    space = nas.spaces.get("nb201")
    x, y = cifar10_batch(64)
    rows = []
    for ops in itertools.product(("nor_conv_1x1", "nor_conv_3x3"), repeat=6):
        a = f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"
        arch = space.decode(a)
        for seed in range(args.inits):
            torch.manual_seed(10_000 + seed)
            model = space.build(arch, num_classes=10)
            family = wrcor_family(model, x, y)
            h = hooked_score(model, x, y)
            circular = wrcor_family(model, x, y, padding="circular")
            rows.append((ops.count("nor_conv_3x3"), space.accuracy(arch, "cifar10"), family["wrcor"], h, family,
                         circular["wrcor"], circular))  # fmt: skip
    print(f"64 all-convolution NAS-Bench-201 cells x {args.inits} initializations, batch 64 of real CIFAR-10")
    print("| #3x3 | cells | mean C10 test acc | mean wrcor | mean hooked | mean circular |")
    print("|---|---|---|---|---|---|")
    for k3 in range(7):
        sel = [r for r in rows if r[0] == k3]
        print(f"| {k3} | {len(sel) // args.inits} | {statistics.fmean(r[1] for r in sel):.2f} | "
              f"{statistics.fmean(r[2] for r in sel):.2f} | {statistics.fmean(r[3] for r in sel):.2f} | "
              f"{statistics.fmean(r[5] for r in sel):.2f} |")  # fmt: skip
    from scipy import stats

    acc, n3 = [r[1] for r in rows], [r[0] for r in rows]
    for i, name in ((2, "wrcor"), (3, "hooked"), (5, "circular")):
        values = [r[i] for r in rows]
        print(f"{name}: Spearman with C10 accuracy over these cells {stats.spearmanr(values, acc).statistic:+.3f}, "
              f"with #3x3 {stats.spearmanr(values, n3).statistic:+.3f}")
    print("\nThe paper's ablations on the same cells (one shared forward/backward each, nas.proxies.score_many),")
    print("as built and with circular padding; then ACor and GCor per #3x3:")
    print("| variant | Spearman with C10 acc | Spearman with #3x3 | circular: with C10 acc | circular: with #3x3 |")
    print("|---|---|---|---|---|")
    for key in rows[0][4]:
        cells = []
        for j in (4, 6):
            values = [r[j][key] for r in rows]
            cells += [f"{stats.spearmanr(values, acc).statistic:+.3f}", f"{stats.spearmanr(values, n3).statistic:+.3f}"]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("\n| #3x3 | mean acor | mean acor, circular | mean gcor | mean gcor, circular |")
    print("|---|---|---|---|---|")
    for k3 in range(7):
        sel = [r for r in rows if r[0] == k3]
        print(f"| {k3} | " + " | ".join(f"{statistics.fmean(r[j][key] for r in sel):.2f}"
                                       for key in ("acor", "gcor") for j in (4, 6)) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
