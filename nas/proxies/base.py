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

from nas.registry import Registry


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


@dataclass(frozen=True)
class ProxySpec:
    """A registered single proxy: its function and how it is called.

    A single proxy scores one network on its own; an aggregate
    (:class:`nas.proxies.aggregate.Aggregate`, the other kind in the same registry) ranks a
    population from its members' scores.
    """

    name: str
    fn: Callable[..., ProxyResult]
    needs_targets: bool = True
    description: str = ""

    kind = "single"

    @property
    def members(self) -> tuple[str, ...]:
        """What is computed on each network for this proxy: itself."""
        return (self.name,)

    @property
    def options(self) -> list[str]:
        sig = inspect.signature(self.fn)
        return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


class Named(Protocol):
    """What every registry entry says of itself: single proxies and aggregates alike."""

    name: str
    kind: str

    @property
    def members(self) -> tuple[str, ...]: ...


#: Every proxy a user can name: single proxies (:class:`ProxySpec`) and aggregates
#: (:class:`nas.proxies.aggregate.Aggregate`).
REGISTRY: Registry[Named] = Registry("proxy")
Kind = Literal["single", "aggregate"]


def register(name: str, *, needs_targets: bool = True) -> Callable[[Callable], Callable]:
    """Register a single proxy function ``fn(model, inputs, targets, *, ...) -> ProxyResult``.

    The function receives validated inputs and must not modify the caller's model.
    Registering a name twice raises ``ValueError``.
    """

    def deco(fn: Callable[..., ProxyResult]) -> Callable[..., ProxyResult]:
        doc = inspect.getdoc(fn) or ""
        REGISTRY.add(name, ProxySpec(name, fn, needs_targets, doc.splitlines()[0] if doc else ""))
        return fn

    return deco


def available(kind: Kind | None = None) -> list[str]:
    """Names of the registered proxies: every one, or only the ``"single"`` or ``"aggregate"`` kind."""
    if kind not in (None, "single", "aggregate"):
        raise ValueError(f"kind must be None, 'single' or 'aggregate', got {kind!r}")
    return [n for n in REGISTRY.available() if kind is None or REGISTRY.get(n).kind == kind]


def get(name: str) -> Named:
    """The registered proxy or aggregate ``name``; ``ValueError`` listing the known ones otherwise."""
    return REGISTRY.get(name)


def get_single(name: str) -> ProxySpec:
    """The registered single proxy ``name``; an aggregate is refused with how to use it."""
    spec = REGISTRY.get(name)
    if not isinstance(spec, ProxySpec):
        raise ValueError(
            f"{name!r} is an aggregate of {', '.join(spec.members)} ({spec.rule}): it ranks a population, "
            f"not one network. Score each network's members with nas.proxies.score_many([{name!r}], model, "
            f"inputs, targets) and rank the score matrix with nas.proxies.get({name!r}).order(matrix), or "
            f"search with it (--search.proxy {name})"
        )
    return spec


Outcome = ProxyResult | Exception
#: ``run(model, inputs, targets, wanted, **shared) -> {member: result or error}``: ``wanted`` maps
#: each member to compute to its own options; ``shared`` holds the options of the pass itself.
FamilyFn = Callable[..., dict[str, Outcome]]


def alone(outcomes: dict[str, Outcome], name: str) -> ProxyResult:
    """The result of ``name`` from a family's ``outcomes``, raising the error it recorded (a
    member called on its own reports its failure as any proxy does)."""
    outcome = outcomes[name]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@dataclass(frozen=True)
class Family:
    """Single proxies computed together from one pass (see :func:`nas.proxies.score_many`).

    Attributes:
        name: registry name of the family.
        members: the proxies it computes.
        run: the shared computation (see :data:`FamilyFn`).
        shared_options: options that define the pass itself; members asked for with different
            values of these run in separate passes. Every other option of a member is its own
            and goes to ``run`` in ``wanted``.
    """

    name: str
    members: tuple[str, ...]
    run: FamilyFn
    shared_options: tuple[str, ...] = ()


#: Families of single proxies that share a pass.
FAMILIES: Registry[Family] = Registry("proxy family")


def register_family(name: str, members: tuple[str, ...], run: FamilyFn, shared_options: tuple[str, ...] = ()) -> Family:
    """Declare that ``members`` (registered single proxies) come out of one computation ``run``.

    Raises:
        ValueError: a member is not a registered single proxy, or already belongs to a family.
    """
    taken = {m: f.name for f in map(FAMILIES.get, FAMILIES.available()) for m in f.members}
    for m in members:
        get_single(m)
        if m in taken:
            raise ValueError(f"proxy {m!r} already belongs to the family {taken[m]!r}")
    family = Family(name, tuple(members), run, tuple(shared_options))
    FAMILIES.add(name, family)
    return family


def family_of(name: str) -> Family | None:
    """The family that computes the single proxy ``name``, if any."""
    for fam in map(FAMILIES.get, FAMILIES.available()):
        if name in fam.members:
            return fam
    return None


def validate_options(name: str, options: dict[str, Any]) -> None:
    """Check ``options`` of the proxy ``name`` without running it (e.g. before a search starts).

    Raises:
        ValueError: the proxy is unknown, has no option of that name, or an option typed as a
            ``Literal`` gets a value outside its choices (naming the value and the choices).
    """
    spec = get_single(name)
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
        name: a registered single proxy (see :func:`available`); an aggregate raises
            ``ValueError`` explaining that it ranks a population and how to use it.
        model: any ``nn.Module``; it is left exactly as it was (mode, buffers, grads, hooks).
        inputs: a batch of at least 2 samples, on the model's device.
        targets: class indices, one per input (needed by label-based proxies).
        **options: keyword options of that proxy (see its docstring).

    Returns:
        The :class:`ProxyResult` (score oriented so that larger is better).
    """
    spec = get_single(name)
    validate_batch(inputs, targets, needs_targets=spec.needs_targets)
    validate_options(name, options)
    start = time.perf_counter()
    result = spec.fn(model, inputs, targets, **options)
    seconds = time.perf_counter() - start
    return ProxyResult(result.proxy, result.score, seconds, result.diagnostics)
