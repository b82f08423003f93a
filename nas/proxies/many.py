"""Score one network with many proxies, sharing passes and isolating failures.

:func:`score_many` computes every distinct proxy once (votes are expanded into their members).
Proxies that can come out of one computation are computed together, as declared by the table
:data:`SHARED_PASSES` (no caller special-cases a proxy by name):

- ``grad_norm``, ``snip``, ``fisher``, ``grasp``: one forward/backward
  (:func:`nas.proxies.baselines.gradient_family`; GraSP adds its Hessian pass);
- ``wrcor``, ``rcor``, ``acor``, ``gcor``: one :func:`nas.proxies.wrcor.response_kernels` pass.

Each shared result equals what :func:`nas.proxies.score` returns for that proxy with its default
options. Its ``seconds`` is the shared pass plus the member's own work, i.e. what the member
costs on its own; the members' seconds therefore add up to more than the wall time.

Failures: a proxy (or shared pass) that raises is recorded for that network as a
:class:`ProxyResult` with score ``-inf`` and ``diagnostics["error"] = "<ExceptionType>: message"``
(see :func:`failed`); the other proxies still run. Invalid calls (unknown names, a batch without
the labels a proxy needs) raise before anything is computed.
"""

from __future__ import annotations

import gc
import inspect
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nas.proxies import baselines, wrcor
from nas.proxies.base import ProxyResult, available, get, score, validate_batch
from nas.proxies.baselines import Outcome
from nas.proxies.vote import available_votes, get_vote

SharedFn = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None", tuple[str, ...]], dict[str, Outcome]]


@dataclass(frozen=True)
class SharedPass:
    """Proxies computed together: ``run(model, inputs, targets, wanted) -> {name: result or error}``."""

    members: tuple[str, ...]
    run: SharedFn


def _gradient_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, wanted: tuple[str, ...]) -> dict[str, Outcome]:
    assert y is not None, "the gradient family needs labels (validated by score_many)"
    return baselines.gradient_family(model, x, y, wanted)


def _wrcor_defaults(name: str) -> tuple[str, str]:
    params = inspect.signature(get(name).fn).parameters
    return params["responses"].default, params["weighting"].default


def _wrcor_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, wanted: tuple[str, ...]) -> dict[str, Outcome]:
    assert y is not None, "WRCor needs labels (validated by score_many)"
    start = time.perf_counter()
    chunks = wrcor.response_kernels(model, x, y)
    shared = time.perf_counter() - start
    counts = {key: sum(k.counts[key] for k in chunks) for key in chunks[0].counts}
    out: dict[str, Outcome] = {}
    for name in wanted:
        t0 = time.perf_counter()
        responses, weighting = _wrcor_defaults(name)
        value = float(sum(k.score(responses, weighting) for k in chunks))  # type: ignore[arg-type]
        diag = {"layers": chunks[0].num_layers, "split": 1, **counts, "responses": responses, "weighting": weighting,
                "padding": "model"}
        out[name] = ProxyResult(name, value, shared + time.perf_counter() - t0, diag)
    return out


#: Groups of proxies computed from one pass (with default options).
SHARED_PASSES: tuple[SharedPass, ...] = (
    SharedPass(baselines.GRADIENT_FAMILY, _gradient_pass),
    SharedPass(wrcor.WRCOR_PROXIES, _wrcor_pass),
)


def expand(names: Sequence[str]) -> list[str]:
    """Distinct proxy names in first-seen order, votes replaced by their members.

    Raises:
        ValueError: a name is neither a registered proxy nor a registered vote.
    """
    out: list[str] = []
    proxies, votes = set(available()), set(available_votes())
    for name in names:
        if name in votes:
            members: Collection[str] = get_vote(name).members
        elif name in proxies:
            members = (name,)
        else:
            raise ValueError(
                f"unknown proxy or vote {name!r}; proxies: {', '.join(available())}; "
                f"votes: {', '.join(available_votes())}"
            )
        out += [m for m in members if m not in out]
    return out


def failure(name: str, error: BaseException, seconds: float = 0.0) -> ProxyResult:
    """The record of a proxy that raised: score ``-inf``, the error in the diagnostics."""
    return ProxyResult(name, float("-inf"), seconds, {"error": f"{type(error).__name__}: {error}"})


def failed(result: ProxyResult) -> bool:
    """Whether ``result`` records a failure (see :func:`failure`)."""
    return "error" in result.diagnostics


def score_many(
    names: Sequence[str],
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> dict[str, ProxyResult]:
    """Score ``model`` with every proxy in ``names`` (votes expand to their members).

    Args:
        names: registered proxies and/or votes.
        model: the network; left unmodified.
        inputs, targets: the batch (``targets`` needed when a proxy needs labels).

    Returns:
        ``{proxy: result}`` in first-seen order, each distinct proxy computed once; a proxy that
        raised is recorded by :func:`failure` (score ``-inf``, ``diagnostics["error"]``).
    """
    wanted = expand(names)
    validate_batch(inputs, targets, needs_targets=any(get(n).needs_targets for n in wanted))
    results: dict[str, ProxyResult] = {}
    grouped: set[str] = set()
    for shared in SHARED_PASSES:
        members = tuple(n for n in wanted if n in shared.members)
        if not members:
            continue
        grouped.update(members)
        start = time.perf_counter()
        try:
            outcomes = shared.run(model, inputs, targets, members)
        except Exception as e:  # recorded per proxy, never dropped
            outcomes = {n: e for n in members}
        seconds = time.perf_counter() - start
        for n in members:
            o = outcomes[n]
            results[n] = failure(n, o, seconds) if isinstance(o, Exception) else o
        del outcomes
    for n in wanted:
        if n in grouped:
            continue
        start = time.perf_counter()
        try:
            results[n] = score(n, model, inputs, targets)
        except Exception as e:  # recorded per proxy, never dropped
            results[n] = failure(n, e, time.perf_counter() - start)
    # exceptions keep their frames (and any autograd graph in them) alive until collected
    gc.collect()
    return {n: results[n] for n in wanted}
