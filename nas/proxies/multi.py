"""Score one network with many proxies, sharing passes and isolating failures.

:func:`score_many` is the one multi-proxy scorer of the package: every search candidate and every
benchmark cell is scored through it. It computes every distinct single proxy once (aggregates
are expanded into their members). Proxies that come out of one computation are computed
together, as their modules declare with :func:`nas.proxies.base.register_family` (no caller
special-cases a proxy by name). The built-in families:

- ``grad_norm``, ``snip``, ``fisher``, ``grasp``: one forward/backward
  (:func:`nas.proxies.baselines.gradient_family`; GraSP adds its Hessian pass);
- the WRCor variants (:data:`nas.proxies.wrcor.VARIANTS`): one
  :func:`nas.proxies.wrcor.response_kernels` pass.

Members asked for with different values of a family's pass options (WRCor's ``padding``, say)
get one pass per distinct value. Each shared result equals what :func:`nas.proxies.score`
returns for that proxy with the same options. Its ``seconds`` is the shared pass plus the
member's own work, i.e. what the member costs on its own; the members' seconds therefore add
up to more than the wall time.

Failures: a proxy (or shared pass) that raises is recorded for that network as a
:class:`ProxyResult` with score ``-inf`` and ``diagnostics["error"] = "<ExceptionType>: message"``
(see :func:`failed`); the other proxies still run. Invalid calls (unknown names or options, a
batch without the labels a proxy needs) raise before anything is computed.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nas.proxies.base import (
    Outcome,
    ProxyResult,
    family_of,
    get,
    get_single,
    score,
    validate_batch,
    validate_options,
)


def expand(names: Sequence[str]) -> list[str]:
    """Distinct single proxies in first-seen order, aggregates replaced by their members.

    Raises:
        ValueError: a name is neither a registered proxy nor a registered aggregate.
    """
    out: list[str] = []
    for name in names:
        out += [m for m in get(name).members if m not in out]
    return out


def failure(name: str, error: BaseException, seconds: float = 0.0) -> ProxyResult:
    """The record of a proxy that raised: score ``-inf``, the error in the diagnostics."""
    return ProxyResult(name, float("-inf"), seconds, {"error": f"{type(error).__name__}: {error}"})


def failed(result: ProxyResult) -> bool:
    """Whether ``result`` records a failure (see :func:`failure`)."""
    return "error" in result.diagnostics


def _key(value: Any) -> Any:
    """A hashable stand-in for an option value (modules and callables by identity)."""
    try:
        hash(value)
        return value
    except TypeError:
        return ("id", id(value))


def score_many(
    names: Sequence[str],
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, ProxyResult]:
    """Score ``model`` with every proxy in ``names`` (aggregates expand to their members).

    Args:
        names: registered single proxies and/or aggregates.
        model: the network; left unmodified.
        inputs, targets: the batch (``targets`` needed when a proxy needs labels).
        options: keyword options per single proxy, ``{"wrcor": {"padding": "circular"}}``.

    Returns:
        ``{proxy: result}`` in first-seen order, each distinct proxy computed once; a proxy that
        raised is recorded by :func:`failure` (score ``-inf``, ``diagnostics["error"]``).

    Raises:
        ValueError: an unknown name or option, options for a proxy not in ``names``, or a batch
            without the labels a proxy needs (before anything is computed).
    """
    wanted = expand(names)
    options = {k: dict(v) for k, v in (options or {}).items()}
    stray = sorted(set(options) - set(wanted))
    if stray:
        raise ValueError(f"options given for {stray}, which are not among the proxies scored {wanted}")
    for n in wanted:
        validate_options(n, options.get(n, {}))
    validate_batch(inputs, targets, needs_targets=any(get_single(n).needs_targets for n in wanted))

    # one pass per (family, values of its pass options)
    passes: dict[tuple, tuple[Any, dict[str, Any], dict[str, dict[str, Any]]]] = {}
    alone: list[str] = []
    for n in wanted:
        fam = family_of(n)
        opts = options.get(n, {})
        if fam is None:
            alone.append(n)
            continue
        shared = {k: v for k, v in opts.items() if k in fam.shared_options}
        own = {k: v for k, v in opts.items() if k not in fam.shared_options}
        key = (fam.name, tuple(sorted((k, _key(v)) for k, v in shared.items())))
        passes.setdefault(key, (fam, shared, {}))[2][n] = own

    results: dict[str, ProxyResult] = {}
    for fam, shared, members in passes.values():
        start = time.perf_counter()
        try:
            outcomes: dict[str, Outcome] = fam.run(model, inputs, targets, members, **shared)
        except Exception as e:  # recorded per proxy, never dropped
            outcomes = {n: e for n in members}
        seconds = time.perf_counter() - start
        for n in members:
            o = outcomes[n]
            results[n] = failure(n, o, seconds) if isinstance(o, Exception) else o
        del outcomes
    for n in alone:
        start = time.perf_counter()
        try:
            results[n] = score(n, model, inputs, targets, **options.get(n, {}))
        except Exception as e:  # recorded per proxy, never dropped
            results[n] = failure(n, e, time.perf_counter() - start)
    if any(failed(r) for r in results.values()):
        gc.collect()  # a caught exception keeps its frames (and any autograd graph in them) alive until collected
    return {n: results[n] for n in wanted}
