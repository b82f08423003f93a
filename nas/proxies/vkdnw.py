"""VKDNW: the spectrum of the Fisher information of a network's weights at initialization.

Tybl & Neumann, "Training-free Neural Architecture Search through Variance of Knowledge of Deep
Network Weights" (CVPR 2025); the authors' code is ``ondratybl/VKDNW``
(``NB201/ZeroShotProxy/compute_vkdnw_score.py``, ``ImageNet_MBV2/ZeroShotProxy/compute_vkdnw_score.py``;
the rankings in ``NB201/tss_utils.py``, ``get_scores``, of the repository's history).

Computation (one pass, :func:`vkdnw_family`):

1. **Weights sampled**: one scalar weight from each of the first ``tensors`` (128) parameter
   tensors in ``named_parameters()`` order, at flat index ``int(position * (numel - 1))``
   (``position = 0``: the first element), as the authors' NAS-Bench-201 code;
2. **Jacobian** ``J_n = d logits_n / d theta`` (classes x sampled weights) of every sample, with
   the network in **eval mode** as the authors' ``get_fisher`` (BatchNorm uses its running
   statistics, at initialization mean 0 and variance 1), per sample, by one forward-mode
   derivative per sampled weight at the module that owns it and one backward pass per class;
3. **Fisher information** of the categorical output: ``F = mean_n J_n^T C_n J_n`` with the
   smoothed probabilities ``p = 0.95 softmax + 0.05 / K`` and ``C = diag(p) - p p^T``;
4. **VKDNW** is the entropy of the nine deciles (10%, ..., 90%, linear interpolation) of the
   eigenvalues of ``F``, normalized to sum 1: ``-sum t log t``. Larger is better (a flatter
   spectrum: no direction of the weights dominates what the network "knows").

Cost: one forward pass, one forward-mode derivative of its module per sampled weight, and one
backward pass per class ``K`` (the per-sample Jacobian has ``K`` rows): on NAS-Bench-201
(``K = 10``) about 7 times one plain forward+backward of the same network on the CPU; on
ImageNet (``K = 1000``) a hundred times more backward passes.

Members:

- ``vkdnw``: that entropy;
- ``vkdnw_dim``: the number of trainable parameter tensors (the authors' ``vkdnw_dim``,
  ``len(list(model.named_parameters()))``), the size term;
- ``vkdnw_single``: the paper's single-proxy ranking, lexicographic in ``(vkdnw_dim, vkdnw)``
  (the authors rank the tuple, ``rank(method="dense")``), encoded per network as
  ``vkdnw_dim + vkdnw / (2 log 9)``: the entropy term lies in ``[0, 1/2]``, so the order is
  exactly the lexicographic one. A network whose deciles are all 0 takes the term 0, the lowest
  within its ``vkdnw_dim`` (the authors' code gives it entropy 0 too).

Where the authors' code differs from the paper or from this module, and which is followed:

- ``fisher="code"`` (default, what the published numbers come from) multiplies the Jacobian by
  the Cholesky factor ``L`` of ``C`` (``C = L L^T``, the closed form the authors use) from the
  left and takes ``mean_n (L J_n)^T (L J_n) = J^T L^T L J``, which is not ``J^T C J``;
  ``fisher="paper"`` is the Fisher information itself, ``J^T C J``;
- the authors re-initialize every network before scoring: Conv2d/Linear weights Kaiming normal
  (fan-in, ReLU gain), biases 0, BatchNorm2d/GroupNorm weights 1 and biases 0. The project
  scores a network at its own initialization (``init="model"``, the default). Because BatchNorm
  runs on its running statistics here, nothing normalizes the activations and the scale of the
  weights reaches the Fisher spectrum, so the authors' rule is offered as ``init="kaiming"``
  (on a copy of the model, drawn from a ``torch.Generator`` seeded by ``seed``);
- input: the authors feed Gaussian noise on NAS-Bench-201; here the caller's batch;
- eigenvalues: the authors take singular values of ``F`` in float32 and add ``1e-10`` inside
  the normalization and the log; here ``eigvalsh`` in float64 with round-off negatives clipped
  to 0 (counted), ``0 log 0 = 0``, and ``-inf`` when every decile is 0;
- sampling: the history of the authors' NAS-Bench-201 code has three rules and does not say
  which produced the published tables: (a) commit f2c352d (17 Nov 2024, the commit of the
  analysis notebook with the "final" runs) draws one weight per tensor at random
  (``random.seed(12)``, ``randint(0, numel - 1)``; ``position="random"`` here); (b) from commit
  95fbc58 the same day, one weight at relative position ``p`` (0 by default: the first element;
  ``position=0.0``, the default here); (c) the final code (8705d2a onwards) takes ``p`` evenly
  spaced weights per tensor with ``p = 0`` by default, which selects none. All keep the first
  128 tensors. The authors' MobileNet code instead samples 128 of all tensors at random
  (``random.Random(number of tensors)``), takes the first element of each, and uses 11
  quantiles (0%, 10%, ..., 100%).

Non-finite logits or Jacobians raise ``FloatingPointError`` naming the model (the Fisher matrix
is then undefined); a model without parameters raises ``ValueError``.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Collection
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call, jvp

from nas.proxies._functional import detached_state, mode, model_name
from nas.proxies.base import ProxyResult, alone, register, register_family

#: The members computed together by :func:`vkdnw_family`.
VKDNW_MEMBERS: tuple[str, ...] = ("vkdnw", "vkdnw_dim", "vkdnw_single")
#: The authors' quantile levels (NAS-Bench-201 code): the nine inner deciles.
QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Label smoothing of the probabilities in the Fisher information (the authors' ``alpha``).
SMOOTHING = 0.05

FisherForm = Literal["code", "paper"]
Position = float | Literal["random"]
Init = Literal["model", "kaiming"]
#: Seed of the authors' random choice of one weight per tensor (``position="random"``).
RANDOM_SEED = 12
Outcome = ProxyResult | Exception


def cholesky_factor(p: torch.Tensor) -> torch.Tensor:
    """Lower-triangular ``L`` with ``L L^T = diag(p) - p p^T`` for each row of probabilities ``p``.

    Closed form (Tanabe & Sagae, 1992): with ``q_j = 1 - sum_{k <= j} p_k`` (``q_0 = 1``,
    ``q_K = 0``), ``L_jj = d_j``, ``L_ij = -p_i d_j / q_j`` for ``i > j``, ``d_j = sqrt(p_j q_j / q_{j-1})``.
    """
    n, k = p.shape
    q = (1.0 - torch.cumsum(p, dim=1)).clamp_min(0.0)
    q[:, -1] = 0.0
    q_prev = torch.cat([torch.ones_like(q[:, :1]), q[:, :-1]], dim=1)
    d = torch.sqrt(p * q / q_prev)
    ratio = torch.where(q > 0, d / q.where(q > 0, torch.ones_like(q)), torch.zeros_like(q))  # d_j / q_j
    low = -p[:, :, None] * ratio[:, None, :]
    eye = torch.eye(k, dtype=p.dtype, device=p.device).expand(n, k, k)
    strict = torch.tril(torch.ones(k, k, dtype=torch.bool, device=p.device), diagonal=-1)
    return torch.where(strict, low, torch.zeros_like(low)) + eye * d[:, None, :]


def sampled_weights(model: nn.Module, tensors: int, position: Position) -> list[tuple[str, int]]:
    """``(parameter name, flat index)`` of the weights whose Fisher information is taken.

    ``position`` in ``[0, 1]``: flat index ``int(position * (numel - 1))`` of each tensor;
    ``"random"``: ``randint(0, numel - 1)`` of a ``random.Random(12)`` drawn for every tensor in
    order (the authors' draw), then the first ``tensors`` kept.
    """
    names = [(k, p.numel()) for k, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError(f"vkdnw: model {model_name(model)} has no trainable parameters")
    if position == "random":
        draw = random.Random(RANDOM_SEED)
        return [(k, draw.randint(0, numel - 1)) for k, numel in names][:tensors]
    return [(k, int(position * (numel - 1))) for k, numel in names[:tensors]]


def _owners(model: nn.Module, picks: list[tuple[str, int]]) -> dict[nn.Module, list[tuple[int, str, int]]]:
    """Module owning each sampled parameter -> [(column, attribute, flat index)]."""
    owners: dict[nn.Module, list[tuple[int, str, int]]] = {}
    for j, (name, idx) in enumerate(picks):
        path, _, attr = name.rpartition(".")
        owners.setdefault(model.get_submodule(path), []).append((j, attr, idx))
    return owners


def _weight_jacobian(
    model: nn.Module, state: dict[str, torch.Tensor], inputs: torch.Tensor, picks: list[tuple[str, int]], classes: int
) -> torch.Tensor:
    """``d logits_n / d theta_j`` for every sample n, class and sampled weight j: ``(N, K, P)``.

    Each owning module's output gets ``(v_nj - theta_j) * t_nj``, ``t_nj`` the forward-mode
    derivative of that module's output for sample n in the direction of weight j; ``v`` is a
    per-sample copy of the sampled weights set to their values, so the term is 0 and the
    network computes what it did, while ``d logits_n / d v_nj`` is the per-sample derivative (in
    eval mode the samples do not interact). ``K`` backward passes give every column.
    """
    n = inputs.shape[0]
    owners = _owners(model, picks)
    v0 = torch.stack([state[name].reshape(-1)[idx] for name, idx in picks])
    v = v0.detach().expand(n, -1).clone().requires_grad_(True)
    inner = [False]

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if inner[0]:
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"vkdnw: module {type(module).__name__} owns a sampled weight but returns {type(output).__name__}")
        detached = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        extra = torch.zeros_like(output)
        inner[0] = True
        try:
            for j, attr, idx in owners[module]:
                w = getattr(module, attr).detach()
                tangent = torch.zeros_like(w).view(-1).index_fill_(0, torch.tensor([idx], device=w.device), 1.0).view_as(w)

                def run(weight: torch.Tensor, attr: str = attr) -> torch.Tensor:
                    return functional_call(module, {attr: weight}, detached, kwargs, strict=False)

                _, t = jvp(run, (w,), (tangent,))
                shape = (n,) + (1,) * (output.dim() - 1)
                extra = extra + (v[:, j] - v0[j]).view(shape) * t.detach()
        finally:
            inner[0] = False
        return output + extra

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in owners]
    try:
        with mode(model, train=False), torch.enable_grad():
            z = functional_call(model, state, (inputs.detach(),))
            cols = [torch.autograd.grad(z[:, k].sum(), v, retain_graph=k < classes - 1, allow_unused=True)[0]
                    for k in range(classes)]  # fmt: skip
    finally:
        for h in handles:
            h.remove()
    return torch.stack([c if c is not None else torch.zeros_like(v) for c in cols], dim=1).detach()


def fisher_matrix(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    tensors: int = 128,
    position: Position = 0.0,
    fisher: FisherForm = "code",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The Fisher information (float64, ``P x P``) of the sampled weights; see the module docstring."""
    picks = sampled_weights(model, tensors, position)
    with mode(model, train=False), torch.no_grad():
        state, _ = detached_state(model)
        logits = functional_call(model, state, (inputs,))
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"vkdnw: model {model_name(model)} must return logits of shape (N, classes), got {got}")
    if not bool(torch.isfinite(logits).all()):
        raise FloatingPointError(f"vkdnw: the logits of model {model_name(model)} are not finite; no score is substituted")
    jac = _weight_jacobian(model, state, inputs, picks, logits.shape[1])
    jac = jac.double()  # (N, K, P)
    if not bool(torch.isfinite(jac).all()):
        raise FloatingPointError(f"vkdnw: the weight Jacobian of model {model_name(model)} is not finite")
    k = logits.shape[1]
    p = torch.softmax(logits.double(), dim=1) * (1.0 - SMOOTHING) + SMOOTHING / k
    if fisher == "code":
        a = cholesky_factor(p) @ jac
        f = torch.einsum("nkp,nkq->pq", a, a) / jac.shape[0]
    elif fisher == "paper":
        cov = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        f = torch.einsum("nkp,nkl,nlq->pq", jac, cov, jac) / jac.shape[0]
    else:
        raise ValueError(f"vkdnw: unknown fisher {fisher!r}; allowed: 'code', 'paper'")
    return f, {"weights": len(picks), "fisher": fisher, "position": position}


def decile_entropy(f: torch.Tensor) -> tuple[float, dict[str, Any]]:
    """Entropy of the normalized eigenvalue deciles of ``f`` (``-inf`` when they are all 0)."""
    lam = torch.linalg.eigvalsh(f)
    extra: dict[str, Any] = {"eigenvalues_clipped": int((lam < 0).sum())}
    lam = lam.clamp_min(0.0)
    q = torch.quantile(lam, torch.tensor(QUANTILES, dtype=lam.dtype, device=lam.device))
    extra["deciles"] = q.tolist()
    if float(q.sum()) <= 0.0:
        extra["reason"] = "every decile of the Fisher spectrum is 0: the output does not depend on the sampled weights"
        return float("-inf"), extra
    t = q / q.sum()
    return float(-torch.special.xlogy(t, t).sum()), extra


def kaiming_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` re-initialized by the authors' rule (see the module docstring)."""
    net = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = torch.empty(m.weight.shape, dtype=m.weight.dtype)
                nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=gen)
                m.weight.copy_(w)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    return net


def vkdnw_family(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    wanted: Collection[str] = VKDNW_MEMBERS,
    *,
    tensors: int = 128,
    position: Position = 0.0,
    fisher: FisherForm = "code",
    init: Init = "model",
    seed: int = 0,
) -> dict[str, Outcome]:
    """``vkdnw``, ``vkdnw_dim`` and ``vkdnw_single`` from one Fisher computation.

    Args:
        model: any ``nn.Module`` producing logits; left unmodified.
        inputs: the batch; ``targets`` is not used (the Fisher information takes the
            expectation over the network's own predictive distribution).
        wanted: the members to compute (a subset of :data:`VKDNW_MEMBERS`).
        tensors: how many parameter tensors (in ``named_parameters()`` order) give one weight.
        position: relative flat position of that weight in its tensor, in ``[0, 1]``, or
            ``"random"`` (the authors' seeded draw, see :func:`sampled_weights`).
        fisher: ``"code"`` (the authors' ``J^T L^T L J``) or ``"paper"`` (``J^T C J``).
        init: ``"model"`` (the network as given) or ``"kaiming"`` (the authors' re-initialization
            of a copy; the caller's model is not touched).
        seed: seed of that re-initialization.

    Returns:
        For each wanted member a :class:`ProxyResult` or the exception it raised.
    """
    unknown = set(wanted) - set(VKDNW_MEMBERS)
    if unknown:
        raise ValueError(f"not members of the VKDNW family: {sorted(unknown)}; members: {VKDNW_MEMBERS}")
    if not isinstance(tensors, int) or tensors < 1:
        raise ValueError(f"vkdnw: tensors must be a positive int, got {tensors!r}")
    if position != "random" and not (isinstance(position, (int, float)) and 0.0 <= position <= 1.0):
        raise ValueError(f"vkdnw: position must be in [0, 1] or 'random', got {position!r}")
    if fisher not in ("code", "paper"):
        raise ValueError(f"vkdnw: unknown fisher {fisher!r}; allowed: 'code', 'paper'")
    if init not in ("model", "kaiming"):
        raise ValueError(f"vkdnw: unknown init {init!r}; allowed: 'model', 'kaiming'")
    start = time.perf_counter()
    dim = sum(1 for p in model.parameters() if p.requires_grad)
    out: dict[str, Outcome] = {}
    if "vkdnw_dim" in wanted:
        out["vkdnw_dim"] = ProxyResult("vkdnw_dim", float(dim), time.perf_counter() - start, {"tensors": dim})
    if not {"vkdnw", "vkdnw_single"} & set(wanted):
        return out
    try:
        net = model if init == "model" else kaiming_copy(model, seed)
        f, diag = fisher_matrix(net, inputs, tensors=tensors, position=position, fisher=fisher)
        value, extra = decile_entropy(f)
    except FloatingPointError as e:
        return {**out, **{n: e for n in ("vkdnw", "vkdnw_single") if n in wanted}}
    seconds = time.perf_counter() - start
    diag = {**diag, **extra, "vkdnw_dim": dim, "init": init}
    if "vkdnw" in wanted:
        out["vkdnw"] = ProxyResult("vkdnw", value, seconds, diag)
    if "vkdnw_single" in wanted:
        term = value / (2.0 * math.log(len(QUANTILES))) if math.isfinite(value) else 0.0
        out["vkdnw_single"] = ProxyResult("vkdnw_single", dim + term, seconds, {**diag, "vkdnw": value})
    return {n: out[n] for n in VKDNW_MEMBERS if n in out}


def _member(name: str) -> Callable[..., ProxyResult]:
    def proxy(
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        tensors: int = 128,
        position: Position = 0.0,
        fisher: FisherForm = "code",
        init: Init = "model",
        seed: int = 0,
    ) -> ProxyResult:
        return alone(vkdnw_family(
            model, inputs, targets, (name,), tensors=tensors, position=position, fisher=fisher, init=init, seed=seed
        ), name)

    proxy.__name__ = name
    return proxy


_DOCS = {
    "vkdnw": """VKDNW: entropy of the normalized deciles of the Fisher-information spectrum of sampled weights.

    Tybl & Neumann, "Training-free NAS through Variance of Knowledge of Deep Network Weights"
    (CVPR 2025). Larger is better. The weights sampled, eval-mode BatchNorm, the ``fisher``
    forms and where the authors' code differs from the paper: :mod:`nas.proxies.vkdnw`.
    Options: ``tensors``, ``position``, ``fisher``, ``init``, ``seed``.""",
    "vkdnw_dim": """VKDNW's size term: the number of trainable parameter tensors of the network.

    Tybl & Neumann (CVPR 2025), the authors' ``vkdnw_dim``. Larger is better. No forward pass.
    Options as ``vkdnw`` (unused here).""",
    "vkdnw_single": """VKDNW_single: the lexicographic order of (vkdnw_dim, vkdnw), as vkdnw_dim + vkdnw / (2 log 9).

    Tybl & Neumann (CVPR 2025): networks are ranked by size first, then by VKDNW. Larger is
    better. See :mod:`nas.proxies.vkdnw`. Options as ``vkdnw``.""",
}

for _name in VKDNW_MEMBERS:
    _fn = _member(_name)
    _fn.__doc__ = _DOCS[_name]
    register(_name, needs_targets=False)(_fn)
register_family("vkdnw", VKDNW_MEMBERS, vkdnw_family, ("tensors", "position", "fisher", "init", "seed"))
