"""Cost baselines: #params and FLOPs of the network as proxies (larger = better)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.proxies.base import ProxyResult, register


@register("params", needs_targets=False)
def params(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> ProxyResult:
    """Number of trainable parameters (NAS-Bench-Suite-Zero's ``params``). Larger is better."""
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ProxyResult("params", float(count), 0.0, {"params": count})


@register("flops", needs_targets=False)
def flops(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> ProxyResult:
    """Multiply-accumulates of one sample's forward pass, counted by ``torch.utils.flop_counter``.

    Larger is better (as in NAS-Bench-Suite-Zero). Runs one forward pass of one sample in eval
    mode; the caller's model keeps its mode and buffers.
    """
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs[:1])
    finally:
        for m, flag in flags.items():
            m.training = flag
    macs = counter.get_total_flops() // 2
    return ProxyResult("flops", float(macs), 0.0, {"macs": macs})
