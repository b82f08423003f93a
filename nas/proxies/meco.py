"""MeCo: the minimum eigenvalue of the channel correlation of every feature map.

Jiang et al., "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum
Eigenvalue of Correlation" (NeurIPS 2023). :func:`meco_family` computes both ``meco`` and
``meco_opt`` from one forward pass (they read the same feature maps).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call

from nas.proxies._functional import detached_state, finite, mode, model_name
from nas.proxies.base import ProxyResult, register, register_family

#: The members computed together by :func:`meco_family`.
MECO_FAMILY: tuple[str, ...] = ("meco", "meco_opt")

Modules = Literal["all", "leaves"]
Batch = Literal["one", "all"]


def min_correlation_eigenvalue(features: torch.Tensor) -> float | None:
    """Smallest eigenvalue of the Pearson correlation matrix of the rows of ``features`` (float64).

    Returns ``None`` when a row is constant (its correlation is undefined; see :func:`meco`).
    """
    f = features.double()
    centered = f - f.mean(dim=1, keepdim=True)
    norms = centered.norm(dim=1)
    scale = f.norm(dim=1)
    if features.shape[1] < 2 or bool(((norms == 0) | (norms <= 1e-12 * scale)).any()):
        return None
    u = centered / norms[:, None]
    return float(torch.linalg.eigvalsh(u @ u.T)[0])


def _feature_maps(model: nn.Module, x: torch.Tensor, sample: int, modules: Modules, proxy: str) -> tuple[list[torch.Tensor], int]:
    """One forward pass; the output of every hooked module for sample ``sample``, as ``(C, rest)``."""
    maps: list[torch.Tensor] = []
    skipped = [0]

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() < 2:
            skipped[0] += 1  # no per-sample channel axis (tuples, scalars, (N,) vectors)
            return
        fea = output.detach()[sample]
        maps.append(fea.reshape(fea.shape[0], -1).clone())  # cloned: later in-place ops must not change it

    hooked = [m for m in model.modules() if modules == "all" or not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in hooked]
    try:
        with mode(model, train=True), torch.no_grad():
            state, _ = detached_state(model)
            try:
                functional_call(model, state, (x,))
            except ValueError as e:
                if x.shape[0] == 1 and "Expected more than 1 value per channel" in str(e):
                    raise ValueError(
                        f"{proxy}: model {model_name(model)} has a BatchNorm over a single value per channel, which "
                        "a one-sample batch cannot normalize in training mode; use batch='all'"
                    ) from e
                raise
    finally:
        for h in handles:
            h.remove()
    return maps, skipped[0]


def meco_family(
    model: nn.Module,
    inputs: torch.Tensor,
    wanted: Collection[str] = MECO_FAMILY,
    *,
    sample: int = 0,
    batch: Batch = "one",
    modules: Modules = "all",
    channels: int = 8,
    seed: int = 0,
) -> dict[str, ProxyResult]:
    """``meco`` and ``meco_opt`` from one forward pass (see :func:`meco` for the definitions).

    Raises:
        ValueError: unknown members or options.
        FloatingPointError: a feature map or the sum is not finite.
    """
    unknown = set(wanted) - set(MECO_FAMILY)
    if unknown:
        raise ValueError(f"not members of the MeCo family: {sorted(unknown)}; members: {MECO_FAMILY}")
    if batch not in ("one", "all"):
        raise ValueError(f"meco: batch={batch!r} is not allowed; expected 'one' or 'all'")
    if modules not in ("all", "leaves"):
        raise ValueError(f"meco: modules={modules!r} is not allowed; expected 'all' or 'leaves'")
    if not isinstance(channels, int) or channels < 2:
        raise ValueError(f"meco: channels={channels!r} must be an int >= 2")
    n = inputs.shape[0]
    if not isinstance(sample, int) or not 0 <= sample < n:
        raise ValueError(f"meco: sample={sample!r} must index the batch of {n} inputs")
    proxy = "/".join(w for w in MECO_FAMILY if w in wanted)
    start = time.perf_counter()
    x, index = (inputs[sample : sample + 1], 0) if batch == "one" else (inputs, sample)
    maps, skipped = _feature_maps(model, x, index, modules, proxy)
    shared = time.perf_counter() - start
    for f in maps:
        if not torch.isfinite(f).all():
            raise FloatingPointError(f"{proxy}: a feature map of model {model_name(model)} is not finite; no score is substituted")
    base: dict[str, Any] = {"maps": len(maps), "outputs_skipped": skipped, "batch": batch, "modules": modules,
                            "sample": sample}  # fmt: skip
    out: dict[str, ProxyResult] = {}
    if "meco" in wanted:
        t0 = time.perf_counter()
        values = [min_correlation_eigenvalue(f) for f in maps]
        degenerate = sum(v is None for v in values)
        total = float(sum(v for v in values if v is not None))
        diag = {**base, "maps_degenerate": degenerate}
        out["meco"] = ProxyResult("meco", finite("meco", model, total, "the eigenvalue sum"),
                                  shared + time.perf_counter() - t0, diag)  # fmt: skip
    if "meco_opt" in wanted:
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)  # CPU draws: the same channels on every device
        total, degenerate, full = 0.0, 0, 0
        for f in maps:
            c = f.shape[0]
            if c > channels:
                idx = torch.randperm(c, generator=gen)[:channels].to(f.device)
                v, weight = min_correlation_eigenvalue(f[idx]), c / channels
            else:
                v, weight = min_correlation_eigenvalue(f), 1.0
                full += 1
            if v is None:
                degenerate += 1
            else:
                total += weight * v
        diag = {**base, "maps_degenerate": degenerate, "maps_all_channels": full, "channels": channels, "seed": seed}
        out["meco_opt"] = ProxyResult("meco_opt", finite("meco_opt", model, total, "the eigenvalue sum"),
                                      shared + time.perf_counter() - t0, diag)  # fmt: skip
    return out


@register("meco", needs_targets=False)
def meco(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    sample: int = 0,
    batch: Batch = "one",
    modules: Modules = "all",
) -> ProxyResult:
    """MeCo: sum over modules of the minimum eigenvalue of the channel correlation of one sample's output.

    Jiang et al., "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum
    Eigenvalue of Correlation" (NeurIPS 2023), Eq. 7. One forward pass, BatchNorm in training
    mode, dropout off, no labels. For every hooked module the output of the sample
    ``inputs[sample]``, a ``C x H x W`` feature map, is read as ``C`` channel vectors of length
    ``H*W``; their ``C x C`` Pearson correlation matrix (float64) has the minimum eigenvalue
    ``lambda_min`` in [0, 1], and MeCo is the sum over modules. Larger is better: less
    correlated channels.

    Options: ``batch="one"`` (default, the paper's one-data pass: only ``inputs[sample]`` is
    forwarded, BatchNorm normalizes it over its positions) or ``"all"`` (the whole batch is
    forwarded, BatchNorm uses batch statistics, and ``inputs[sample]``'s maps are read: the
    authors' script at ``--batch_size N``; needed for networks with a BatchNorm over one value
    per channel, such as the squeeze-excitation gates of the MobileNet-like space).
    ``modules="all"`` (default) hooks every module, containers and the model itself included,
    as the authors' code does (a ``Sequential``'s output then counts again beside its last
    child's); ``"leaves"`` hooks modules without children only. Measured on the first 40
    cells of the zoo protocol (CIFAR-10 Spearman): 0.883 (defaults), 0.892 (``batch="all"``),
    0.894 (``modules="leaves"``), within the noise of 40 cells; 0.929 with the defaults on
    200 cells, at about 0.1 of a plain forward+backward of the 64-image batch.

    Where the authors' code (``correlation/NAS_Bench_201.py``) differs from the paper, and what
    is followed:

    - the paper sums over "layers"; the code hooks every module (followed by default).
    - a constant channel (e.g. all zeros after a ``none`` edge or a dead ReLU) has no
      correlation: the code sets the NaN entries to 0, which makes that map's ``lambda_min``
      exactly 0 (a zero row of a positive semi-definite matrix); here such a map, and a map
      with a single position (a pooled vector or the logits), contributes 0, counted in
      ``diagnostics["maps_degenerate"]`` (followed: same value, no NaN step).
    - the code drops non-finite layer values from the sum silently; here a non-finite feature
      map raises ``FloatingPointError``.
    - the code uses ``torch.linalg.eig`` (general, complex) and takes the real part; the
      symmetric solver ``eigvalsh`` in float64 gives the same eigenvalues.
    - the zero-cost-NAS variant in the authors' repository replaces the input by one Gaussian
      64 x 64 image; the caller's real input is used here, as in their correlation script.
    """
    return meco_family(model, inputs, ("meco",), sample=sample, batch=batch, modules=modules)["meco"]


@register("meco_opt", needs_targets=False)
def meco_opt(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    sample: int = 0,
    batch: Batch = "one",
    modules: Modules = "all",
    channels: int = 8,
    seed: int = 0,
) -> ProxyResult:
    """MeCo_opt: MeCo on ``channels`` sampled channels per map, scaled by ``C / channels``.

    Jiang et al. (NeurIPS 2023), the optimized variant: for a map with ``C`` channels,
    ``channels`` (8 in the paper and code) of them are drawn without replacement, and the
    minimum eigenvalue of their correlation is multiplied by ``C / channels``; the sum over
    modules is the score. The small matrix is cheaper, and its eigenvalue stays informative
    where ``C`` exceeds the number of positions (then the full ``lambda_min`` is 0). Same
    forward pass, options and conventions as :func:`meco`. Larger is better.

    Where the authors' code differs, and what is followed:

    - it draws the channels with Python's global ``random``; here a ``torch.Generator`` seeded
      by ``seed`` draws them (reproducible, no global state).
    - it fails on a map with fewer than 8 channels (``random.sample`` of more than the
      population); here such a map uses all its channels with weight 1 (i.e. plain MeCo),
      counted in ``diagnostics["maps_all_channels"]``.
    """
    return meco_family(model, inputs, ("meco_opt",), sample=sample, batch=batch, modules=modules,
                       channels=channels, seed=seed)["meco_opt"]  # fmt: skip


def _family_pass(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None,
                 wanted: dict[str, dict[str, Any]], **shared: Any) -> dict[str, ProxyResult]:
    """``meco`` and ``meco_opt`` from one forward (``channels`` and ``seed`` are MeCo_opt's own)."""
    return meco_family(model, inputs, tuple(wanted), **shared, **wanted.get("meco_opt", {}))


register_family("meco", MECO_FAMILY, _family_pass, ("sample", "batch", "modules"))
