"""The number of trainable layers as a proxy (the depth baseline of VKDNW)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from nas.proxies._functional import PRUNABLE, model_name
from nas.proxies.base import ProxyResult, register

Count = Literal["layers", "tensors"]


@register("trainable_layers", needs_targets=False)
def trainable_layers(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    count: Count = "layers",
) -> ProxyResult:
    """Number of trainable layers: Conv/Linear modules whose ``weight`` is a trainable parameter.

    The "No. of trainable layers" (aleph) of Tybl & Neumann, "Training-free Neural
    Architecture Search through Variance of Knowledge of Deep Network Weights" (CVPR 2025),
    Table 1 (Spearman 0.767 on NAS-Bench-201 CIFAR-10), and the integer part of their
    VKDNW_single. What counts with ``count="layers"`` (default): every ``nn.Conv1d/2d/3d`` and
    ``nn.Linear`` module (selected by ``isinstance``, depthwise and 1x1 convolutions included,
    each module once however often it is called) whose ``weight`` requires grad; norm layers,
    biases and parameter-free ops (pooling, skip, ``none``) do not. No forward pass. Larger is
    better.

    Where the authors' code differs, and what is followed: VKDNW's code
    (``compute_vkdnw_score.py``, ``vkdnw_dim``) counts the model's parameter *tensors*
    (``len(list(model.named_parameters()))``: weights, biases and norm affine tensors alike),
    available as ``count="tensors"`` (trainable tensors). On NAS-Bench-201 every cell
    convolution carries one BatchNorm and no bias, so the tensor count is 3 x the cell
    convolutions plus a constant: both counts rank the space identically; the paper's
    "layers" is the default.

    Raises:
        ValueError: unknown ``count``, or a model with nothing to count.
    """
    if count not in ("layers", "tensors"):
        raise ValueError(f"trainable_layers: count={count!r} is not allowed; expected 'layers' or 'tensors'")
    if count == "layers":
        value = sum(
            1 for m in model.modules()
            if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.requires_grad
        )  # fmt: skip
    else:
        value = sum(1 for p in model.parameters() if p.requires_grad)
    if value == 0:
        what = "Conv/Linear layers with a trainable weight" if count == "layers" else "trainable parameter tensors"
        raise ValueError(f"trainable_layers: model {model_name(model)} has no {what}")
    return ProxyResult("trainable_layers", float(value), 0.0, {"count": count, count: value})
