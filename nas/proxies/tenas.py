"""TE-NAS's two indicators: the NTK condition number and the number of linear regions.

Chen et al., "Neural Architecture Search on ImageNet in Four GPU Hours: A Theoretically
Inspired Perspective" (ICLR 2021). TE-NAS ranks candidates by both and sums the two ranks;
that aggregation belongs to a population (see the aggregation mechanism), here each
indicator is a proxy of its own. They share no pass: the NTK needs per-sample parameter
gradients on the batch, the region count a gradient-free forward pass on small crops.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from nas.proxies._functional import RELU_TYPES, detached_state, logits_of, mode, model_name
from nas.proxies.base import ProxyResult, register
from nas.proxies.swap import activation_codes, count_distinct_rows, pack_rows

NtkParams = Literal["weights", "all"]


def _ntk_parameters(model: nn.Module, params: NtkParams) -> list[str]:
    names = [k for k, p in model.named_parameters() if p.requires_grad and (params == "all" or k.rsplit(".", 1)[-1] == "weight")]
    if not names:
        raise ValueError(f"ntk_cond: model {model_name(model)} has no trainable {'weight ' if params == 'weights' else ''}parameters")
    return names


def ntk_matrix(model: nn.Module, x: torch.Tensor, params: NtkParams = "weights") -> tuple[torch.Tensor, int]:
    """The empirical NTK ``G G^T`` (float64, ``N x N``), ``G[i]`` = d(sum of sample i's logits)/d(params).

    One forward pass of the batch in training mode; the ``N`` rows of ``G`` come from one
    batched backward (``is_grads_batched``: ``N`` vector-Jacobian products vectorized over the
    one graph), so each row includes sample ``i``'s influence through the BatchNorm batch
    statistics, exactly as ``N`` separate backward passes of the authors' code. Returns the
    kernel and the number of parameter tensors without a gradient.
    """
    names = _ntk_parameters(model, params)
    n = x.shape[0]
    with mode(model, train=True), torch.enable_grad():
        state, leaf = detached_state(model, names)
        weights = [leaf[k] for k in names]
        out = logits_of(model, state, x, "ntk_cond").sum(dim=1)
        eye = torch.eye(n, dtype=out.dtype, device=out.device)
        grads = torch.autograd.grad(out, weights, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    rows = [g.reshape(n, -1).double() for g in grads if g is not None]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)
    for g in rows:  # per tensor: never holds all N x P gradients in float64 at once
        kernel += g @ g.T
    return kernel, sum(g is None for g in grads)


@register("ntk_cond", needs_targets=False)
def ntk_cond(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    samples: int | None = 16,
    params: NtkParams = "weights",
) -> ProxyResult:
    """TE-NAS's NTK indicator: minus the condition number lambda_max / lambda_min of the empirical NTK.

    Chen et al. (ICLR 2021), Sec. 3.1: a smaller condition number of the neural tangent
    kernel ``Theta = J J^T`` at initialization means better trainability. ``J[i]`` is the
    gradient of the sum of sample ``i``'s logits with respect to every ``weight`` parameter
    (``params="weights"``: the tensors registered as ``weight``, i.e. conv, linear and norm
    weights, not biases, as the authors' code selects them; ``"all"`` adds every other
    trainable tensor). BatchNorm in training mode, dropout off. The kernel is taken in float64
    and its eigenvalues by ``eigvalsh``. **Score = -lambda_max / lambda_min, so larger is
    better.** A kernel whose smallest eigenvalue is <= 0 (singular: two samples with
    dependent gradients, or more samples than parameters) has no finite condition number and
    scores ``-inf``, with the reason in the diagnostics.

    Batch and cost: the first ``samples`` inputs (default 16; ``None`` = the whole batch).
    The authors use 72 on NAS-Bench-201 and 14 (CIFAR-10) / 24 (ImageNet) on DARTS
    (``prune_launch.py``). The ``N`` gradients are ``N`` vector-Jacobian products through
    the graph of one ``N``-sample forward pass (BatchNorm couples the samples, so no cheaper
    per-sample trick gives the same kernel): the cost grows as ``N^2``. Measured on
    NAS-Bench-201 on one CPU thread: about 1.5-3 plain forward+backward passes of the
    64-sample batch at ``N = 16``, 25-75 at ``N = 64``; memory ``N x params`` floats.

    Where the authors' code (``lib/procedures/ntk.py``) differs, and what is followed:

    - it replaces a NaN condition number by 100000; here no value is substituted (``-inf``
      for a singular kernel, ``FloatingPointError`` for non-finite gradients).
    - it re-initializes the network and averages 3 repetitions; here the network is scored as
      given, once.
    - it selects parameters whose *name contains* "weight"; here by the registered name of the
      tensor on its module (``...weight``), the same tensors in these networks.
    """
    if samples is not None and (not isinstance(samples, int) or samples < 2):
        raise ValueError(f"ntk_cond: samples={samples!r} must be an int >= 2 or None (the whole batch)")
    if params not in ("weights", "all"):
        raise ValueError(f"ntk_cond: params={params!r} is not allowed; expected 'weights' or 'all'")
    x = inputs if samples is None else inputs[:samples]
    kernel, missing = ntk_matrix(model, x, params)
    if not torch.isfinite(kernel).all():
        raise FloatingPointError(f"ntk_cond: the NTK of model {model_name(model)} has non-finite entries; no score is substituted")
    lam = torch.linalg.eigvalsh(kernel)
    lo, hi = float(lam[0]), float(lam[-1])
    diag: dict[str, Any] = {"samples": x.shape[0], "lambda_min": lo, "lambda_max": hi, "params": params,
                            "tensors_without_grad": missing}  # fmt: skip
    if not lo > 0:
        diag["reason"] = "the NTK is singular (smallest eigenvalue <= 0): its condition number is infinite"
        return ProxyResult("ntk_cond", float("-inf"), 0.0, diag)
    cond = hi / lo
    if not math.isfinite(cond):
        raise FloatingPointError(f"ntk_cond: the condition number of model {model_name(model)} overflowed ({hi} / {lo})")
    diag["condition_number"] = cond
    return ProxyResult("ntk_cond", -cond, 0.0, diag)


def random_crops(inputs: torch.Tensor, count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` distinct crops ``size x size`` (all channels) of ``inputs``: random images and positions.

    The (image, position) pairs are drawn without replacement, so no crop is counted twice
    (with a 64-image batch, 3000 draws with replacement repeat about 70 crops). Drawn with a
    CPU ``torch.Generator`` seeded by ``seed``: the crops do not depend on the device or on
    global state.

    Raises:
        ValueError: ``inputs`` are not images, the crop is larger than them, or they hold
            fewer than ``count`` crop positions.
    """
    if inputs.dim() != 4:
        raise ValueError(f"random_crops needs images (N, C, H, W), got shape {tuple(inputs.shape)}")
    n, c, h, w = inputs.shape
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds the input's {h} x {w}")
    rows_, cols_ = h - size + 1, w - size + 1
    if count > n * rows_ * cols_:
        raise ValueError(f"{count} distinct {size} x {size} crops requested; {n} images of {h} x {w} hold {n * rows_ * cols_}")
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(n * rows_ * cols_, generator=gen)[:count]
    img, pos = flat // (rows_ * cols_), flat % (rows_ * cols_)
    top, left = pos // cols_, pos % cols_
    offs = torch.arange(size)
    rows = (top[:, None] + offs)[:, :, None].expand(count, size, size)
    cols = (left[:, None] + offs)[:, None, :].expand(count, size, size)
    device = inputs.device
    picked = inputs[img.to(device)]  # (count, C, H, W)
    idx = (rows * w + cols).reshape(count, 1, -1).to(device).expand(-1, c, -1)
    return picked.reshape(count, c, h * w).gather(2, idx).reshape(count, c, size, size)


@register("linear_regions", needs_targets=False)
def linear_regions(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    crop: int | None = 4,
    samples: int = 3000,
    chunk: int = 1000,
    seed: int = 0,
    activation_types: tuple[type[nn.Module], ...] = RELU_TYPES,
) -> ProxyResult:
    """TE-NAS's expressivity indicator: the number of distinct activation patterns (linear regions) of a sample set.

    Chen et al. (ICLR 2021), Sec. 3.2: a ReLU network is linear on each region of its input
    space where every unit keeps its on/off state; the number of distinct on/off patterns over
    a set of inputs counts the regions those inputs fall in. Larger is better. The pattern of
    a sample is the code ``input > 0`` of every unit of every ``activation_types`` call (by
    ``isinstance``); two samples are in one region exactly when their codes agree everywhere.

    Inputs, following the authors' sampling (``Linear_Region_Collector(input_size=(1000, 1,
    3, 3), sample_batch=3)``: 3 batches of 1000 random 3 x 3 crops): ``samples`` crops of
    ``crop x crop`` pixels (default 4, see below) at distinct random images and positions of
    ``inputs`` (seeded by ``seed``; drawn without replacement, as a small batch would
    otherwise repeat crops; all of them when the batch holds fewer), forwarded in chunks of ``chunk`` (BatchNorm in training
    mode with each chunk's statistics, dropout off, no gradient). Measured on the first 40
    cells of the zoo protocol: counts from 1 (no live unit) to 3,000 (every crop in a region
    of its own, the most common value), 11 distinct values, CIFAR-10 Spearman 0.75, about
    0.5 of a plain forward+backward of the 64-image batch. On the NAS-Bench-201 network
    use an even ``crop >= 4``: at 3 its stride-2 reduction adds a 1 x 1 average-pool shortcut
    to a 2 x 2 convolution output (it runs only by broadcasting).

    ``crop=None`` counts the patterns of the batch itself, the form in which AZ-NAS and VKDNW
    reimplement TE-NAS (their published TE-NAS rows): with full images every sample falls in a
    region of its own on these networks, so the count is the batch size for every cell whose
    units separate any two samples (measured on 40 NAS-Bench-201 cells: 64 for all but the
    cells without a live unit, which count 1; Spearman 0.26), and the NTK alone ranks. Fallback, recorded: a model that cannot take crops (a forward pass
    on them raises, e.g. a fixed-size linear head) is counted on the batch itself, with the
    error in ``diagnostics["crop_fallback"]`` and ``diagnostics["crop"] = None``; such counts
    (at most ``N``) are not comparable with crop counts, which only matters when one
    population mixes both kinds of model.

    Where the authors' code (``lib/procedures/linear_region_counter.py``) differs, and what is
    followed:

    - it scores a separate *thin* network (width 1, one input channel chosen at random), where
      crops collide in regions; here the caller's network, with all its input channels, is
      scored (a proxy cannot rebuild an arbitrary model thinner). A full-width network has so
      many regions that crops collide less: the count saturates at ``samples`` for many cells.
    - it counts distinct patterns with a half-precision pairwise product (sum over samples
      of 1 / multiplicity); here distinct packed codes are counted exactly (the same number).
    - it hooks only ``nn.ReLU`` with a 4-D input; here every ``activation_types`` unit with an
      at-least-2-D input (the same units in these networks).

    Raises:
        ValueError: bad options, a crop larger than the images, or no activation unit in the
            model.
    """
    for name, value in (("samples", samples), ("chunk", chunk)):
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"linear_regions: {name}={value!r} must be an int >= 2")
    if crop is not None and (not isinstance(crop, int) or crop < 1):
        raise ValueError(f"linear_regions: crop={crop!r} must be a positive int or None (the batch itself)")
    diag: dict[str, Any] = {"seed": seed, "chunk": chunk}
    if crop is not None and inputs.dim() != 4:
        diag["crop_fallback"] = f"inputs of shape {tuple(inputs.shape)} are not images (N, C, H, W) to crop"
        crop = None
    if crop is None:
        total, units, calls = _region_codes(model, inputs, chunk, activation_types)
    else:
        try:
            n, _, h, w = inputs.shape
            count = min(samples, n * max(0, h - crop + 1) * max(0, w - crop + 1))  # a small batch holds fewer crops
            total, units, calls = _region_codes(model, random_crops(inputs, count, crop, seed), chunk, activation_types)
        except RuntimeError as e:  # the model rejects the crops' size: documented fallback, recorded
            diag["crop_fallback"] = f"{type(e).__name__}: {e}"
            crop = None
            total, units, calls = _region_codes(model, inputs, chunk, activation_types)
    diag.update({"samples": int(total.shape[0]), "crop": crop, "units": units, "unit_calls": calls})
    return ProxyResult("linear_regions", float(count_distinct_rows(total)), 0.0, diag)


def _region_codes(model: nn.Module, x: torch.Tensor, chunk: int, activation_types: tuple[type[nn.Module], ...]) -> tuple[torch.Tensor, int, int]:
    """Packed activation codes of every sample of ``x`` (chunked forward passes), units, unit calls."""
    packed, units, calls = [], 0, 0
    # near-equal chunks of at least 2 samples: BatchNorm cannot normalize a lone sample
    parts = max(1, min(math.ceil(x.shape[0] / chunk), x.shape[0] // 2))
    for part in x.tensor_split(parts):
        codes, d = activation_codes(model, part, "linear_regions", activation_types)
        units, calls = d["units"], d["unit_calls"]
        packed.append(pack_rows(torch.cat(codes, dim=1)))
    return torch.cat(packed, dim=0), units, calls
