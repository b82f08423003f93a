"""Baseline training-free proxies, each as defined by its own paper.

Every proxy is registered by name, called like WRCor (``fn(model, inputs, targets, *, ...)``) and
oriented so that a larger score is better. None modifies the caller's model: gradients are taken
with respect to detached copies of the parameters through :func:`torch.func.functional_call`
(no ``.grad`` is written), BatchNorm statistics are updated on cloned buffers, train/eval flags
are restored and hooks removed in ``finally``; SynFlow and Zen-score, which change the weights or
the structure, work on a ``copy.deepcopy`` of the model.

Conventions shared with NAS-Bench-Suite-Zero (Krishnakumar et al., 2022), whose published
figures these proxies are compared with:

- "layers" of the parameter-based proxies are the ``nn.Conv1d/2d/3d`` and ``nn.Linear`` modules
  (selected by type); their ``weight`` is the parameter scored, biases and norm layers are not;
- label-based proxies use the mean cross-entropy of the whole batch, BatchNorm in training mode
  (batch statistics) and dropout off.

A value that overflows or becomes NaN is never replaced by a constant: the proxy raises
``FloatingPointError`` naming itself and the model, or returns ``-inf`` where ``-inf`` is the
documented worst value (a degenerate network), with the reason in the diagnostics.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Collection
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from nas.proxies._functional import (
    PRUNABLE,
    RELU_TYPES,
    check_targets,
    detached_state,
    finite,
    logits_of,
    mode,
    model_name,
    prunable_weights,
    visit_activation_codes,
)
from nas.proxies.base import Outcome, ProxyResult, alone, register, register_family

#: The members computed together by :func:`gradient_family`.
GRADIENT_FAMILY: tuple[str, ...] = ("grad_norm", "snip", "fisher", "grasp")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- gradient family
def gradient_family(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    wanted: Collection[str] = GRADIENT_FAMILY,
    *,
    loss_fn: LossFn | None = None,
) -> dict[str, Outcome]:
    """grad_norm, SNIP, Fisher and GraSP from one shared forward/backward pass.

    One pass of the mean cross-entropy gives the gradient ``g`` of every Conv/Linear weight and,
    through tensor hooks, the gradient at every Conv/Linear output (Fisher). GraSP adds one more
    forward and a double backward for the Hessian-gradient product ``Hg``.

    Args:
        model: any ``nn.Module`` producing logits; left unmodified.
        inputs, targets: the batch (class indices).
        wanted: the members to compute (a subset of :data:`GRADIENT_FAMILY`).
        loss_fn: ``(logits, targets) -> scalar``; default cross-entropy.

    Returns:
        For each wanted member a :class:`ProxyResult` (``seconds`` = the shared pass plus that
        member's own work) or the ``FloatingPointError`` it raised.
    """
    unknown = set(wanted) - set(GRADIENT_FAMILY)
    if unknown:
        raise ValueError(f"not members of the gradient family: {sorted(unknown)}; members: {GRADIENT_FAMILY}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    proxy = "/".join(w for w in GRADIENT_FAMILY if w in wanted)
    names = prunable_weights(model, proxy)
    modules = [m for m in model.modules() if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), nn.Parameter)]
    # [per-weight sum, per-channel sum]
    fisher_total = torch.zeros(2, dtype=torch.float64, device=inputs.device)
    fisher_calls = [0]
    handles = []

    def fisher_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return
        act = output.detach()
        weights_per_channel = module.weight[0].numel()

        def on_grad(g: torch.Tensor) -> None:
            # Turner et al.: per sample n and channel k, g_nk = sum over positions of a * dL/da;
            # the channel's saliency is 0.5 * mean_n g_nk^2. Abdelfattah et al. give it to every
            # weight of the channel and sum over weights.
            prod = (act * g).double()
            g_nk = prod.sum(dim=tuple(range(2, prod.dim()))) if prod.dim() > 2 else prod
            channels = g_nk.pow(2).mean(0).mul(0.5).sum()
            fisher_total.add_(torch.stack((channels * weights_per_channel, channels)))
            fisher_calls[0] += 1

        output.register_hook(on_grad)

    start = time.perf_counter()
    out: dict[str, Outcome] = {}
    try:
        if "fisher" in wanted:
            handles = [m.register_forward_hook(fisher_hook) for m in modules]
        with mode(model, train=True), torch.enable_grad():
            state, leaf = detached_state(model, names)
            weights = [leaf[k] for k in names]
            logits = logits_of(model, state, inputs, proxy)
            check_targets(logits, targets, proxy)
            loss = loss_fn(logits, targets)
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            del logits, loss
            for h in handles:
                h.remove()
            handles = []
            shared = time.perf_counter() - start
            missing = sum(g is None for g in grads)
            base_diag: dict[str, Any] = {"layers": len(names), "layers_without_grad": missing}

            pairs = [(w.detach(), g) for w, g in zip(weights, grads, strict=True) if g is not None]
            members: dict[str, Callable[[], tuple[float, dict[str, Any]]]] = {
                "grad_norm": lambda: (finite("grad_norm", model, float(sum(g.double().norm() for _, g in pairs)),
                                              "the sum of gradient norms"), {}),
                "snip": lambda: (finite("snip", model, float(sum((w.double() * g.double()).abs().sum() for w, g in pairs)),
                                         "sum |w * dL/dw|"), {}),
                "fisher": lambda: (finite("fisher", model, float(fisher_total[0]), "the Fisher sum"),
                                   {"fisher_calls": fisher_calls[0], "channel_sum": float(fisher_total[1])}),
                "grasp": lambda: _grasp_from(model, inputs, targets, names, grads, loss_fn, proxy),
            }  # fmt: skip
            for name in GRADIENT_FAMILY:
                if name not in wanted:
                    continue
                t0 = time.perf_counter()
                try:
                    value, extra = members[name]()
                except FloatingPointError as e:  # returned to the caller, per member
                    out[name] = e
                    continue
                out[name] = ProxyResult(name, value, shared + time.perf_counter() - t0, {**base_diag, **extra})
    finally:
        for h in handles:
            h.remove()
    return out


def _grasp_from(model, inputs, targets, names, grads, loss_fn, proxy) -> tuple[float, dict[str, Any]]:
    """GraSP's second pass: ``Hg`` by a double backward, then ``sum(-w * Hg)``."""
    state, leaf = detached_state(model, names)
    weights = [leaf[k] for k in names]
    loss = loss_fn(logits_of(model, state, inputs, proxy), targets)
    grad_f = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    z = sum((g.detach() * f).sum() for g, f in zip(grads, grad_f, strict=True) if g is not None and f is not None)
    if not isinstance(z, torch.Tensor) or not z.requires_grad:
        # no weight has a gradient (or the loss is linear in every weight): Hg = 0
        return 0.0, {"hg_zero": True}
    hg = torch.autograd.grad(z, weights, allow_unused=True)
    value = sum(float((-w.detach().double() * h.double()).sum()) for w, h in zip(weights, hg, strict=True) if h is not None)
    return finite("grasp", model, float(value), "sum(-w * Hg)"), {}


def _family_member(name: str) -> Callable[..., ProxyResult]:
    def proxy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, loss_fn: LossFn | None = None) -> ProxyResult:
        return alone(gradient_family(model, inputs, targets, (name,), loss_fn=loss_fn), name)

    proxy.__name__ = name
    return proxy


_FAMILY_DOCS = {
    "grad_norm": """grad_norm: sum over Conv/Linear layers of the Frobenius norm of dL/dW.

    Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021). Mean cross-entropy
    of the batch, BatchNorm in training mode. Larger is better (a positive sum).
    Option: ``loss_fn``.""",
    "snip": """SNIP: sum over Conv/Linear weights of |W * dL/dW| (connection sensitivity).

    Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity" (ICLR 2019),
    summed over the network as in Abdelfattah et al. (2021). Larger is better.
    Option: ``loss_fn``.""",
    "fisher": """Fisher: channel saliency 0.5 * mean_n (sum_pos a * dL/da)^2 at every Conv/Linear output, summed over weights.

    Turner et al., "BlockSwap" (ICLR 2020) after Theis et al. (2018); ``a`` is the layer's output
    activation. As in Abdelfattah et al. (2021), a per-weight saliency whose sum over the network
    is the score: every weight of output channel k carries channel k's saliency, so a channel
    counts ``weight[k].numel()`` times (in_channels / groups x kernel area). The plain sum over
    channels is in the diagnostics as ``channel_sum``. Larger is better. Option: ``loss_fn``.""",
    "grasp": """GraSP: sum over Conv/Linear weights of -W * (H g), g = dL/dW, H the Hessian of L.

    Wang et al., "Picking Winning Tickets Before Training by Preserving Gradient Flow"
    (ICLR 2020), summed with the sign of Abdelfattah et al. (2021) so that larger is better.
    Hg comes from a double backward. Option: ``loss_fn``.""",
}

for _name in GRADIENT_FAMILY:
    _fn = _family_member(_name)
    _fn.__doc__ = _FAMILY_DOCS[_name]
    register(_name)(_fn)
register_family("gradient", GRADIENT_FAMILY, gradient_family, ("loss_fn",))


# --------------------------------------------------------------------------- SynFlow
def _bypass_batchnorm(net: nn.Module) -> int:
    """Replace every BatchNorm module of ``net`` (a copy) by ``nn.Identity``; return how many."""
    count = 0
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(parent, child_name, nn.Identity())
                count += 1
    return count


@register("synflow", needs_targets=False)
def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> ProxyResult:
    """SynFlow: log of sum over Conv/Linear weights of W * dR/dW, R = sum of the outputs.

    Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
    flow" (NeurIPS 2020), used as a NAS proxy by Abdelfattah et al. (2021). Computed on a copy of
    the model with every parameter replaced by its absolute value, an all-ones input of one
    sample, dropout off, and **BatchNorm bypassed**: each BatchNorm module of the copy is
    replaced by identity (the zero-cost-NAS convention, which builds the network without BN).

    The score is reported as the **natural log** of the synflow sum (the ranking is unchanged):
    the forward/backward pass runs in float64 whatever the model's dtype, and the per-layer sums
    are combined with ``logsumexp``, so a deep float32 network whose plain product would
    overflow float32 still gets an exact score. A sum of exactly 0 (no path from input to
    output) is ``-inf``; a float64 overflow raises ``FloatingPointError``. Larger is better.
    """
    names = prunable_weights(model, "synflow")
    net = copy.deepcopy(model)
    bypassed = _bypass_batchnorm(net)
    net.eval()  # dropout off; no BatchNorm is left
    net.double()
    params = dict(net.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.abs_()
    weights = [params[k] for k in names]
    for w in weights:
        w.requires_grad_(True)
    x = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    with torch.enable_grad():
        out = net(x)
        total_out = out.sum()
        grads = torch.autograd.grad(total_out, weights, allow_unused=True)
    diag: dict[str, Any] = {"layers": len(names), "batchnorm_bypassed": bypassed, "log_of_sum": True,
                            "layers_without_grad": sum(g is None for g in grads)}  # fmt: skip
    if not math.isfinite(float(total_out.detach())):
        raise FloatingPointError(
            f"synflow: the output sum overflowed float64 ({float(total_out.detach())}) for model {model_name(model)}; "
            "no score is substituted"
        )
    logs = []
    for w, g in zip(weights, grads, strict=True):
        if g is None:
            continue
        s = (w.detach() * g).sum()
        if not torch.isfinite(s):
            raise FloatingPointError(f"synflow: a layer sum is {float(s)} in float64 for model {model_name(model)}")
        if s > 0:
            logs.append(torch.log(s))
    diag["layers_zero"] = len(names) - len(logs) - diag["layers_without_grad"]
    if not logs:
        diag["reason"] = "the synflow sum is 0: no Conv/Linear weight lies on a path from input to output"
        return ProxyResult("synflow", float("-inf"), 0.0, diag)
    return ProxyResult("synflow", float(torch.logsumexp(torch.stack(logs), 0)), 0.0, diag)


# --------------------------------------------------------------------------- JacCor (jacob_cov)
@register("jacob_cov", needs_targets=False)
def jacob_cov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, *, k: float = 1e-5) -> ProxyResult:
    """JacCor: -sum(log(l + k) + 1/(l + k)) over eigenvalues l of the input-Jacobian correlations.

    Mellor et al., "Neural Architecture Search without Training" (arXiv v1, 2020). The Jacobian of
    each sample is d(sum of its outputs)/d(its input) (one backward of the summed logits),
    BatchNorm in training mode; the N x N Pearson correlation matrix of the flattened Jacobians
    is taken in float64 and its eigenvalues (``eigvalsh``; round-off negatives are clipped to 0
    and counted) give the score with ``k = 1e-5``. Larger is better: less correlated Jacobians.
    A sample whose Jacobian is constant has no correlation: the score is then ``-inf`` (the
    network does not separate its inputs), with the count in the diagnostics.
    """
    with mode(model, train=True), torch.enable_grad():
        state, _ = detached_state(model)
        x = inputs.detach().clone().requires_grad_(True)
        out = functional_call(model, state, (x,))
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"jacob_cov: model {model_name(model)} must return a tensor, got {type(out).__name__}")
        (jac,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return jacob_cov_from(jac, model, inputs.shape[0], k=k)


def jacob_cov_from(jac: torch.Tensor | None, model: nn.Module, n: int, *, k: float = 1e-5) -> ProxyResult:
    """JacCor of the input Jacobian ``jac`` (``d(sum of outputs)/d(input)``, N samples) of ``model``.

    The part of :func:`jacob_cov` after the backward pass, so that a pass that computes the same
    Jacobian for another proxy (WRCor's family, :mod:`nas.proxies.wrcor`) shares its forward.
    """
    diag: dict[str, Any] = {"n": n}
    if jac is None:
        diag["reason"] = "the output does not depend on the input"
        return ProxyResult("jacob_cov", float("-inf"), 0.0, diag)
    j = jac.reshape(n, -1).double()
    if not torch.isfinite(j).all():
        raise FloatingPointError(f"jacob_cov: the input Jacobian of model {model_name(model)} has non-finite entries")
    jc = j - j.mean(dim=1, keepdim=True)
    norms = jc.norm(dim=1)
    scale = j.norm(dim=1)
    constant = int(((norms == 0) | (norms <= 1e-12 * scale)).sum())
    diag["constant_rows"] = constant
    if constant:
        diag["reason"] = f"{constant} sample(s) have a constant Jacobian: no correlation is defined"
        return ProxyResult("jacob_cov", float("-inf"), 0.0, diag)
    u = jc / norms[:, None]
    lam = torch.linalg.eigvalsh(u @ u.T)
    diag["eigenvalues_clipped"] = int((lam < 0).sum())
    lam = lam.clamp_min(0.0)
    value = -float((torch.log(lam + k) + 1.0 / (lam + k)).sum())
    return ProxyResult("jacob_cov", finite("jacob_cov", model, value, "the score"), 0.0, diag)


# --------------------------------------------------------------------------- NASWOT
@register("naswot", needs_targets=False)
def naswot(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    activation_types: tuple[type[nn.Module], ...] = RELU_TYPES,
) -> ProxyResult:
    """NASWOT: log|det K_H|, K_H[i, j] = number of ReLU units where samples i and j agree.

    Mellor et al., "Neural Architecture Search without Training" (ICML 2021). Every call of a
    module of ``activation_types`` (selected by ``isinstance``) contributes the binary code
    ``x > 0`` of its input, flattened per sample; ``K_H = N_A - Hamming distance`` summed over
    units (float64, exact counts). One forward pass, BatchNorm in training mode. Larger is
    better; a singular kernel is ``-inf`` (identical codes for two samples). A model without
    such units raises ``ValueError``.
    """
    n = inputs.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=inputs.device)

    def accumulate(codes: torch.Tensor) -> None:
        d = codes.shape[1]
        # K = c c^T + (1 - c)(1 - c)^T = 2 c c^T - r_i - r_j + d, with r the row sums
        dtype = torch.float32 if d < 2**24 else torch.float64  # float32 sums of 0/1 are exact below 2**24
        c = codes.to(dtype)
        r = c.sum(dim=1).double()
        kernel.add_(2.0 * (c @ c.T).double() - r[:, None] - r[None, :] + d)

    units = visit_activation_codes(model, inputs, "naswot", accumulate, activation_types)
    sign, logdet = torch.linalg.slogdet(kernel)
    diag: dict[str, Any] = {"units": units}
    if float(sign) <= 0:
        diag["reason"] = "the Hamming kernel is singular: two samples share one binary code"
        return ProxyResult("naswot", float("-inf"), 0.0, diag)
    return ProxyResult("naswot", finite("naswot", model, float(logdet), "log|det K|"), 0.0, diag)


# --------------------------------------------------------------------------- Zen-score
BNStats = Literal["batch", "running"]


@register("zen", needs_targets=False)
def zen(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    mixup_gamma: float = 1e-2,
    seed: int = 0,
    bn_stats: BNStats = "batch",
) -> ProxyResult:
    """Zen-score: log E||f(x) - f(x + g e)||_F + sum over BatchNorms of log(mean batch std).

    Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition" (ICCV 2021).
    On a copy of the model re-initialized as the paper does (Conv/Linear weights ~ N(0, 1),
    biases 0, norm layers weight 1 and bias 0) with a ``torch.Generator`` seeded by ``seed``:
    ``x`` and ``e`` are standard Gaussian batches shaped like ``inputs`` (the data are not used),
    ``f`` is the pre-pooling feature map (``forward_features`` when the model has one, else the
    output), ``g = mixup_gamma``. BatchNorm is in training mode; ``sigma_i`` is the square root
    of the mean over channels of BatchNorm i's batch variance on ``x`` (``bn_stats="batch"``, the
    paper's definition) or of its running variance after the two passes (``"running"``, what
    the published Zen-NAS code reads). A BatchNorm whose input is constant over the batch (a
    dead branch, e.g. a convolution fed only by NAS-Bench-201 ``none`` edges) carries no signal
    to rescale and is left out of the sum, counted in ``bn_constant_input``: taking its
    ``log 0 = -inf`` literally scores every such cell as the worst network (38 of 200 sampled
    NAS-Bench-201 cells). Larger is better; ``-inf`` when the features do not depend on the
    input.

    Raises:
        ValueError: the model has no BatchNorm layer (the score is undefined without one).
    """
    if bn_stats not in ("batch", "running"):
        raise ValueError(f"zen: unknown bn_stats {bn_stats!r}; allowed: 'batch', 'running'")
    if not any(isinstance(m, _BatchNorm) for m in model.modules()):
        raise ValueError(
            f"zen (Zen-score) needs BatchNorm layers: its score adds the log batch std of every "
            f"BatchNorm, and model {model_name(model)} has none"
        )
    net = copy.deepcopy(model)
    # Drawn on the CPU and copied, so that the score does not depend on the device.
    gen = torch.Generator().manual_seed(seed)
    dtype = inputs.dtype if inputs.is_floating_point() else torch.float32
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, PRUNABLE):
                m.weight.copy_(torch.empty(m.weight.shape, dtype=m.weight.dtype).normal_(0.0, 1.0, generator=gen))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (_BatchNorm, nn.GroupNorm, nn.LayerNorm)) and getattr(m, "weight", None) is not None:
                m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.zero_()
    x = torch.randn(inputs.shape, generator=gen, dtype=dtype).to(inputs.device)
    e = torch.randn(inputs.shape, generator=gen, dtype=dtype).to(inputs.device)
    variances: list[torch.Tensor] = []
    recording = [True]

    def bn_hook(module: nn.Module, args: tuple) -> None:
        if recording[0]:
            t = args[0].detach().double()
            dims = [d for d in range(t.dim()) if d != 1]
            variances.append(t.var(dim=dims, unbiased=False).mean())

    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    handles = [m.register_forward_pre_hook(bn_hook) for m in bns] if bn_stats == "batch" else []
    features = net.forward_features if callable(getattr(net, "forward_features", None)) else net
    with mode(net, train=True), torch.no_grad():
        f1 = features(x)
        recording[0] = False
        f2 = features(x + mixup_gamma * e)
    for h in handles:
        h.remove()
    if bn_stats == "running":
        variances = [m.running_var.double().mean() for m in bns if m.running_var is not None]
    diff = (f1 - f2).double().reshape(x.shape[0], -1)
    if not torch.isfinite(diff).all():
        raise FloatingPointError(f"zen: the feature maps of model {model_name(model)} are not finite")
    delta = float(diff.norm(dim=1).mean())
    diag: dict[str, Any] = {"batchnorms": len(variances), "log_delta": math.log(delta) if delta > 0 else float("-inf"),
                            "bn_stats": bn_stats, "seed": seed}  # fmt: skip
    live = [v for v in variances if v > 0]
    diag["bn_constant_input"] = len(variances) - len(live)
    if delta == 0:
        diag["reason"] = "the features do not depend on the input"
        return ProxyResult("zen", float("-inf"), 0.0, diag)
    log_sigma = float(sum(0.5 * torch.log(v) for v in live))
    diag["log_bn_scale"] = log_sigma
    return ProxyResult("zen", finite("zen", model, math.log(delta) + log_sigma, "the score"), 0.0, diag)


# --------------------------------------------------------------------------- ZiCo
@register("zico")
def zico(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    splits: int = 2,
    loss_fn: LossFn | None = None,
) -> ProxyResult:
    """ZiCo: sum over Conv/Linear layers of log( sum_w mean|g_w| / std(g_w) ).

    Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients"
    (ICLR 2023). The batch is cut into ``splits`` mini-batches; each gets its own fresh gradient
    of the mean cross-entropy (BatchNorm in training mode, batch statistics per mini-batch).
    Mean and standard deviation (population) of each weight's gradient are over the
    mini-batches; weights with zero deviation are left out and a layer whose sum is 0 adds
    nothing (both counted), as in the paper's code. Larger is better.
    """
    n = inputs.shape[0]
    if not isinstance(splits, int) or splits < 2 or n // splits < 2:
        raise ValueError(f"zico: splits={splits!r} must be an int >= 2 leaving at least 2 samples per mini-batch (batch {n})")
    loss_fn = loss_fn or nn.functional.cross_entropy
    names = prunable_weights(model, "zico")
    per_layer: list[list[torch.Tensor]] = [[] for _ in names]
    with mode(model, train=True), torch.enable_grad():
        for cx, cy in zip(inputs.tensor_split(splits), targets.tensor_split(splits), strict=True):
            state, leaf = detached_state(model, names)
            logits = logits_of(model, state, cx, "zico")
            check_targets(logits, cy, "zico")
            grads = torch.autograd.grad(loss_fn(logits, cy), [leaf[k] for k in names], allow_unused=True)
            for store, k, g in zip(per_layer, names, grads, strict=True):
                store.append((g if g is not None else torch.zeros_like(leaf[k])).detach().reshape(-1))
    value, used, skipped, zero_std = 0.0, 0, 0, 0
    for store in per_layer:
        g = torch.stack(store).double()
        if not torch.isfinite(g).all():
            raise FloatingPointError(f"zico: non-finite gradients in model {model_name(model)}")
        std = g.std(dim=0, unbiased=False)
        nz = std > 0
        zero_std += int((~nz).sum())
        total = float((g.abs().mean(dim=0)[nz] / std[nz]).sum())
        if total > 0:
            value += math.log(total)
            used += 1
        else:
            skipped += 1
    diag = {"layers": len(names), "layers_used": used, "layers_zero": skipped, "weights_zero_std": zero_std, "splits": splits}
    return ProxyResult("zico", finite("zico", model, value, "the score"), 0.0, diag)


# --------------------------------------------------------------------------- PNorm (l2_norm)
@register("l2_norm", needs_targets=False)
def l2_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> ProxyResult:
    """PNorm (``l2_norm``): sum over Conv/Linear layers of the Frobenius norm of the weight.

    The parameter-norm baseline of NAS-Bench-Suite-Zero (Krishnakumar et al., 2022), "PNorm" in
    the WRCor paper. No forward pass. Larger is better.
    """
    names = set(prunable_weights(model, "l2_norm"))
    value = float(sum(p.detach().double().norm() for k, p in model.named_parameters() if k in names))
    return ProxyResult("l2_norm", finite("l2_norm", model, value, "the norm sum"), 0.0, {"layers": len(names)})
