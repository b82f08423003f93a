"""Proxy results, the proxy registry and input validation shared by every proxy."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, get_origin, get_type_hints

import torch
from torch import nn


@dataclass(frozen=True)
class ProxyResult:
    """The outcome of one proxy on one network and batch.

    Attributes:
        proxy: registry name of the proxy.
        score: the score, oriented so that larger is better. ``-inf`` is the documented worst
            value (e.g. a singular kernel); it is never NaN.
        seconds: wall time of the computation.
        diagnostics: proxy-specific counters (units hooked, units skipped and why, ...).
    """

    proxy: str
    score: float
    seconds: float = 0.0
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.score, float) and math.isnan(self.score):
            raise AssertionError(f"proxy {self.proxy!r} produced NaN; proxies must never return NaN")


class ProxyFn(Protocol):
    def __call__(
        self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, **options: Any
    ) -> ProxyResult: ...


@dataclass(frozen=True)
class ProxySpec:
    """A registered proxy: its function and how it is called."""

    name: str
    fn: Callable[..., ProxyResult]
    needs_targets: bool = True
    description: str = ""

    @property
    def options(self) -> list[str]:
        sig = inspect.signature(self.fn)
        return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


_REGISTRY: dict[str, ProxySpec] = {}


def register(name: str, *, needs_targets: bool = True) -> Callable[[Callable], Callable]:
    """Register a proxy function ``fn(model, inputs, targets, *, ...) -> ProxyResult``.

    The function receives validated inputs and must not modify the caller's model.
    Registering a name twice raises ``ValueError``.
    """

    def deco(fn: Callable[..., ProxyResult]) -> Callable[..., ProxyResult]:
        if name in _REGISTRY:
            raise ValueError(f"proxy {name!r} is already registered")
        doc = inspect.getdoc(fn) or ""
        _REGISTRY[name] = ProxySpec(name, fn, needs_targets, doc.splitlines()[0] if doc else "")
        return fn

    return deco


def available() -> list[str]:
    """Names of the registered proxies."""
    return sorted(_REGISTRY)


def get(name: str) -> ProxySpec:
    """The registered proxy ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown proxy {name!r}; available: {', '.join(available())}") from None


def validate_options(name: str, options: dict[str, Any]) -> None:
    """Check ``options`` of the proxy ``name`` without running it (e.g. before a search starts).

    Raises:
        ValueError: the proxy is unknown, has no option of that name, or an option typed as a
            ``Literal`` gets a value outside its choices (naming the value and the choices).
    """
    spec = get(name)
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ValueError(f"proxy {name!r} has no option(s) {sorted(unknown)}; its options: {spec.options}")
    if not options:
        return
    try:
        hints = get_type_hints(spec.fn)
    except (NameError, TypeError):  # unresolvable annotations: leave the values to the proxy itself
        return
    for key, value in options.items():
        hint = hints.get(key)
        if get_origin(hint) is Literal and value not in get_args(hint):
            choices = ", ".join(map(repr, get_args(hint)))
            raise ValueError(f"proxy {name!r}: {key}={value!r} is not allowed; expected one of {choices}")


def validate_batch(inputs: torch.Tensor, targets: torch.Tensor | None, *, needs_targets: bool = True) -> None:
    """Check that ``inputs``/``targets`` form a usable scoring batch.

    Raises:
        TypeError: inputs or targets are not tensors.
        ValueError: fewer than 2 samples, missing labels, or label count not matching inputs.
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be batched (N, ...), got shape {tuple(inputs.shape)}")
    n = inputs.shape[0]
    if n < 2:
        raise ValueError(f"a scoring batch needs at least 2 samples to correlate, got {n}")
    if targets is None:
        if needs_targets:
            raise ValueError("this proxy needs labels: pass targets (class indices, shape (N,))")
        return
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.shape[0] != n:
        raise ValueError(f"got {targets.shape[0]} labels for {n} inputs; expected one label per input")


def score(
    name: str,
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    **options: Any,
) -> ProxyResult:
    """Score ``model`` on one batch with the proxy registered as ``name``.

    Args:
        name: a registered proxy (see :func:`available`).
        model: any ``nn.Module``; it is left exactly as it was (mode, buffers, grads, hooks).
        inputs: a batch of at least 2 samples, on the model's device.
        targets: class indices, one per input (needed by label-based proxies).
        **options: keyword options of that proxy (see its docstring).

    Returns:
        The :class:`ProxyResult` (score oriented so that larger is better).
    """
    spec = get(name)
    validate_batch(inputs, targets, needs_targets=spec.needs_targets)
    validate_options(name, options)
    start = time.perf_counter()
    result = spec.fn(model, inputs, targets, **options)
    seconds = time.perf_counter() - start
    return ProxyResult(result.proxy, result.score, seconds, result.diagnostics)
