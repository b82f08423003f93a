"""SWAP: the number of distinct sample-wise activation patterns, regularized by model size.

Peng et al., "SWAP-NAS: Sample-Wise Activation Patterns for Ultra-fast NAS" (ICLR 2024).
The binary activation patterns of piecewise-linear units are also what TE-NAS counts
(:mod:`nas.proxies.tenas`); the two proxies share :func:`activation_codes` and
:func:`count_distinct_rows` from this module, one counting distinct *neurons* (SWAP), the
other distinct *samples* (linear regions).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nas.proxies._functional import RELU_TYPES, visit_activation_codes
from nas.proxies.base import ProxyResult, register

#: Bits packed into one int64 word (63 keeps every packed value non-negative).
_WORD_BITS = 63


def pack_rows(codes: torch.Tensor) -> torch.Tensor:
    """Pack a boolean matrix ``(rows, bits)`` into ``(rows, words)`` int64, 63 bits per word.

    Two rows are equal exactly when their packed words are equal, so distinct rows can be
    counted on a matrix 63 times narrower than the codes.
    """
    if codes.dim() != 2 or codes.dtype != torch.bool:
        raise TypeError(f"pack_rows expects a 2-D bool tensor, got {codes.dtype} of shape {tuple(codes.shape)}")
    rows, bits = codes.shape
    words = max(1, -(-bits // _WORD_BITS))
    padded = torch.zeros((rows, words * _WORD_BITS), dtype=torch.bool, device=codes.device)
    padded[:, :bits] = codes
    grouped = padded.view(rows, words, _WORD_BITS)
    packed = torch.zeros((rows, words), dtype=torch.int64, device=codes.device)
    for k in range(_WORD_BITS):  # 63 vector operations, whatever the number of rows
        packed |= grouped[:, :, k].long() << k
    return packed


def count_distinct_rows(packed: torch.Tensor) -> int:
    """Number of distinct rows of a packed code matrix (see :func:`pack_rows`)."""
    if packed.shape[0] == 0:
        return 0
    if packed.shape[1] == 1:
        return int(torch.unique(packed[:, 0]).numel())
    return int(torch.unique(packed, dim=0).shape[0])


def activation_codes(
    model: nn.Module,
    x: torch.Tensor,
    proxy: str,
    activation_types: tuple[type[nn.Module], ...] = RELU_TYPES,
    *,
    train: bool = True,
) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """The on/off code ``input > 0`` of every call of a piecewise-linear unit, one forward pass.

    Returns one ``(N, units)`` bool tensor per call (flattened per sample, in call order) and
    counters for the diagnostics. The model runs on detached state (BatchNorm in training mode
    when ``train``, dropout off), with no gradient.

    Raises:
        ValueError: the model has no module of ``activation_types`` or none was called.
    """
    codes: list[torch.Tensor] = []
    visit_activation_codes(model, x, proxy, codes.append, activation_types, train=train)
    return codes, {"unit_calls": len(codes), "units": int(sum(c.shape[1] for c in codes))}


def model_size_factor(params: float, mu: float, sigma: float) -> float:
    """SWAP's regularization ``exp(-(params - mu)^2 / sigma)`` (params, mu, sigma in millions)."""
    return math.exp(-((params - mu) ** 2) / sigma)


@register("swap", needs_targets=False)
def swap(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    samples: int | None = 16,
    regularize: bool = True,
    mu: float = 1.5,
    sigma: float = 1.5,
    activation_types: tuple[type[nn.Module], ...] = RELU_TYPES,
) -> ProxyResult:
    """Regularized SWAP-Score: distinct sample-wise activation patterns x exp(-(P - mu)^2 / sigma).

    Peng et al., "SWAP-NAS: Sample-Wise Activation Patterns for Ultra-fast NAS" (ICLR 2024),
    Eq. 4-6. One forward pass of the first ``samples`` inputs (BatchNorm in training mode,
    dropout off); every call of a module of ``activation_types`` (by ``isinstance``) gives each
    of its units (one per channel and position) a *sample-wise pattern*, the vector of its
    on/off states ``input > 0`` over the samples. The SWAP-Score is the number of distinct
    patterns over all units of the network; with ``regularize`` it is multiplied by
    ``exp(-(P - mu)^2 / sigma)``, ``P`` the number of trainable parameters **in millions**.
    Larger is better (a count, times a factor in (0, 1]); ``regularize=False`` gives the plain
    SWAP-Score of the paper's unregularized rows.

    Defaults: ``samples=16``, the batch of the authors' correlation script
    (``--input_samples 16``); ``None`` uses the whole batch (the count is at most
    ``min(units, 2^samples)``, so 16 samples cap it at 65,536 distinct patterns, which the
    largest NAS-Bench-201 networks nearly reach). ``mu = sigma = 1.5`` (millions) centre the
    factor on the largest NAS-Bench-201 networks (1.53 M parameters at 10 classes), so that on
    that space the factor grows with size, from 0.26 at 0.07 M to 1. The paper sets ``mu`` and
    ``sigma`` per search space; its NAS-Bench-201 values could not be read from the sources
    available to this project, so these defaults are those of a public zero-cost-proxy code
    base that reuses SWAP on NAS-Bench-201 (a ``SWAP`` class defaulting to ``mu=1.5,
    sigma=1.5`` with parameters in millions), not confirmed against the paper. Pass
    ``mu``/``sigma`` for another space (e.g. around a target model size); far from ``mu`` the
    factor underflows to 0 (e.g. 1e-9 at 7 M), which ranks such networks last, not NaN.

    Where the authors' code (``src/metrics/swap.py``) differs, and what is followed:

    - it counts parameters in thousands (``count_parameters() / 1e3``), so its ``mu``/``sigma``
      are in thousands; millions are used here (the same function after rescaling both).
    - it hooks only ``nn.ReLU`` modules whose input is 4-D and reads ``sign(output)``; here
      every ``activation_types`` unit with an at-least-2-D input is read, from the sign of the
      input (identical for ReLU, and the meaningful pattern for leaky variants). On the
      NAS-Bench-201 and MobileNet-like networks both select the same units.
    - its correlation script re-initializes the network with N(0, 1) weights and averages 32
      repetitions; here the network is scored as given (the caller's initialization), once.

    Raises:
        ValueError: ``samples`` < 2, or no activation unit in the model.
    """
    if samples is not None and (not isinstance(samples, int) or samples < 2):
        raise ValueError(f"swap: samples={samples!r} must be an int >= 2 or None (the whole batch)")
    if sigma <= 0 or not math.isfinite(mu) or not math.isfinite(sigma):
        raise ValueError(f"swap: sigma={sigma!r} must be > 0 and mu={mu!r} finite")
    x = inputs if samples is None else inputs[:samples]
    codes, diag = activation_codes(model, x, "swap", activation_types)
    # a unit's pattern over the samples is one row of the transposed codes
    packed = torch.cat([pack_rows(c.T.contiguous()) for c in codes], dim=0)
    distinct = count_distinct_rows(packed)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    factor = model_size_factor(params, mu, sigma) if regularize else 1.0
    diag.update({"samples": x.shape[0], "distinct_patterns": distinct, "params_millions": params,
                 "regularize": regularize, "factor": factor, "mu": mu, "sigma": sigma})  # fmt: skip
    return ProxyResult("swap", distinct * factor, 0.0, diag)
