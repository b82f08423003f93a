"""Machinery shared by every proxy: modes, detached state, logits, label and finiteness checks.

Proxies never modify the caller's model: they run on detached parameters and cloned buffers
through :func:`torch.func.functional_call`, with train/eval flags restored and dropout off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

import torch
from timm.layers import DropPath
from torch import nn
from torch.func import functional_call

#: Modules switched off while a proxy runs: scores must not depend on random masks.
DROPOUTS: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, DropPath,
)  # fmt: skip
#: Modules whose ``weight`` the parameter-based proxies score.
PRUNABLE: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: Piecewise-linear units with their kink at 0, whose on/off pattern NASWOT reads.
RELU_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)


def model_name(model: nn.Module) -> str:
    return type(model).__name__


def prunable_weights(model: nn.Module, proxy: str) -> list[str]:
    """Parameter names of the ``weight`` of every Conv/Linear module, in module order.

    Raises:
        ValueError: the model has none (naming ``proxy`` and the model).
    """
    names = []
    for mod_name, m in model.named_modules():
        if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), nn.Parameter):
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    if not names:
        raise ValueError(
            f"{proxy}: model {model_name(model)} has no Conv/Linear layers "
            f"({', '.join(t.__name__ for t in PRUNABLE)}) to score"
        )
    return names


@contextmanager
def mode(model: nn.Module, train: bool = True) -> Iterator[None]:
    """Set train (or eval) mode with dropout off for the duration; restore every module's flag."""
    flags = {m: m.training for m in model.modules()}
    try:
        model.train(train)
        for m in model.modules():
            if isinstance(m, DROPOUTS):
                m.eval()  # scores must not depend on dropout's random masks
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


def detached_state(model: nn.Module, leaves: Collection[str] = ()) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Detached parameters (``leaves`` as fresh leaves that require grad) and cloned buffers.

    Returns ``(state, leaf_tensors)``; ``state`` is what :func:`functional_call` receives.
    """
    leaves = set(leaves)
    leaf: dict[str, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    for k, p in model.named_parameters():
        t = p.detach()
        if k in leaves:
            t = t.requires_grad_(True)
            leaf[k] = t
        state[k] = t
    for k, b in model.named_buffers():
        state[k] = b.clone()
    return state, leaf


def logits_of(model: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor, proxy: str) -> torch.Tensor:
    out = functional_call(model, state, (x,))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{proxy}: model {model_name(model)} must return logits of shape (N, classes), got {got}")
    return out


def check_targets(logits: torch.Tensor, y: torch.Tensor, proxy: str) -> None:
    if y.dtype in (torch.int64, torch.int32) and y.numel() and (int(y.min()) < 0 or int(y.max()) >= logits.shape[1]):
        raise ValueError(
            f"{proxy}: targets must be class indices in [0, {logits.shape[1] - 1}], "
            f"got range [{int(y.min())}, {int(y.max())}]"
        )


def finite(proxy: str, model: nn.Module, value: float, what: str) -> float:
    """``value`` if finite; ``FloatingPointError`` naming the proxy and the model otherwise."""
    if not math.isfinite(value):
        raise FloatingPointError(
            f"{proxy}: {what} is {value} for model {model_name(model)} (overflow or invalid arithmetic); "
            "no score is substituted"
        )
    return value


def visit_activation_codes(
    model: nn.Module,
    x: torch.Tensor,
    proxy: str,
    visit: Callable[[torch.Tensor], None],
    activation_types: tuple[type[nn.Module], ...] = RELU_TYPES,
    *,
    train: bool = True,
) -> int:
    """Call ``visit`` with the on/off code ``input > 0`` of every call of a piecewise-linear unit.

    One forward pass on detached state (BatchNorm in training mode when ``train``, dropout off),
    no gradient. Each code is an ``(N, units)`` bool tensor (flattened per sample), read by a
    forward pre-hook before an in-place unit overwrites its input. Returns the number of calls.

    Raises:
        ValueError: the model has no module of ``activation_types`` or none was called.
    """
    calls = [0]

    def pre_hook(module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 2:
            visit(args[0].detach().reshape(args[0].shape[0], -1) > 0)
            calls[0] += 1

    handles = [m.register_forward_pre_hook(pre_hook) for m in model.modules() if isinstance(m, activation_types)]
    try:
        if not handles:
            raise ValueError(
                f"{proxy}: model {model_name(model)} has no {'/'.join(t.__name__ for t in activation_types)} "
                "modules whose activation patterns could be read"
            )
        with mode(model, train=train), torch.no_grad():
            state, _ = detached_state(model)
            functional_call(model, state, (x,))
    finally:
        for h in handles:
            h.remove()
    if not calls[0]:
        raise ValueError(f"{proxy}: no activation unit of model {model_name(model)} was called in the forward pass")
    return calls[0]
