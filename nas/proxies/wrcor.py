"""WRCor, the weighted response correlation proxy, and its ablations ACor, GCor and RCor.

Definition (Jing et al., "Zero-Shot Neural Architecture Search with Weighted Response
Correlation"): for a batch of N samples and an untrained network, one forward and one backward
pass (cross-entropy on the batch's labels, BatchNorm in training mode). At every call of an
activation module (a *unit*) two responses are taken, each flattened per sample:

- the activation: the unit's input (the pre-activation), captured by a forward *pre*-hook, so an
  in-place activation cannot overwrite it first;
- the gradient of the loss with respect to that same tensor, as it flows back through the unit.

``C`` is the N x N Pearson correlation matrix between samples of a response. With depth-ordered
layers l = 1..L and every unit of layer l weighted by ``2**l``::

    K = sum_l sum_{i in l} 2**l * (|C_act(l, i)| + |C_grad(l, i)|)
    WRCor = log |det K|

Larger is better. ACor keeps only activations, GCor only gradients, RCor drops the weights;
``weighting`` selects any of the paper's five schemes.

``padding="circular"`` is this package's probe, not the paper's: every zero-padded convolution is
scored with circular padding instead (restored afterwards). Zero padding draws the same border
into every sample's feature maps, which raises the correlation between samples most where
convolutions are large; on NAS-Bench-201 it is what makes WRCor prefer 1x1 to 3x3 convolutions
(see BENCHMARKS.md). The default ``"model"`` scores the network as built.

Layers. A model declares its depth-ordered layers with a method ``layer_units() -> list[nn.Module]``
(every activation module inside ``layers[l - 1]`` belongs to layer ``l``), or the caller passes
``layers=``. **Fallback** for models that declare nothing: every activation call is its own
layer, numbered in the order the calls happen during the forward pass.

Edge cases, all counted in the diagnostics:

- a response with a sample of zero variance (e.g. a unit whose output does not depend on the
  input, or a dead gradient) has no correlation and contributes nothing;
- a non-finite response contributes nothing and is reported, never silently dropped;
- when no response is usable, or K is singular, the score is ``-inf``, the documented worst.

The caller's model is not modified: parameters are used detached (no ``.grad`` is written),
BatchNorm statistics are updated on copies, hooks are removed and train/eval flags restored.
Gradients with respect to parameters are never computed, which makes the backward pass cheaper
than a training step's.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from nas.proxies._functional import check_targets, logits_of, mode
from nas.proxies.base import ProxyResult, register, register_family, score
from nas.proxies.baselines import jacob_cov_from

Responses = Literal["both", "act", "grad"]
Padding = Literal["model", "circular"]
PADDINGS: tuple[str, ...] = ("model", "circular")
Weighting = Literal["none", "linear", "quadratic", "exp_top_down", "exp_bottom_up"]
WEIGHTINGS: tuple[str, ...] = ("none", "linear", "quadratic", "exp_top_down", "exp_bottom_up")
RESPONSES: tuple[str, ...] = ("both", "act", "grad")

#: Activation module types hooked by default: every elementwise nonlinearity in ``torch.nn``.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
)  # fmt: skip


def layer_weights(num_layers: int, weighting: Weighting) -> list[float]:
    """Log2 of the weight of each layer l = 1..L under ``weighting``.

    ``exp_bottom_up`` (WRCor) is ``2**l``; ``exp_top_down`` is ``2**(L + 1 - l)``; ``linear`` is
    ``l``; ``quadratic`` is ``l**2``; ``none`` is 1. Logs keep deep networks from overflowing.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; allowed: {', '.join(WEIGHTINGS)}")
    ls = range(1, num_layers + 1)
    if weighting == "exp_bottom_up":
        return [float(l) for l in ls]
    if weighting == "exp_top_down":
        return [float(num_layers + 1 - l) for l in ls]
    if weighting == "linear":
        return [math.log2(l) for l in ls]
    if weighting == "quadratic":
        return [2 * math.log2(l) for l in ls]
    return [0.0 for _ in ls]


@dataclass
class ResponseKernels:
    """Per-layer sums of absolute correlation matrices from one pass (float64, N x N each).

    Every ablation and weighting is a cheap combination of these: see :meth:`score`.
    """

    n: int
    act: dict[int, torch.Tensor] = field(default_factory=dict)
    grad: dict[int, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "units_hooked", "act_used", "grad_used", "act_constant", "grad_constant",
                "act_nonfinite", "grad_nonfinite", "grad_missing",
            ),
            0,
        )
    )  # fmt: skip
    num_layers: int = 0
    #: ``d(sum of logits)/d(inputs)`` of the same forward pass, when asked for (JacCor shares it).
    jacobian: torch.Tensor | None = None

    def add(self, kind: Literal["act", "grad"], layer: int, corr: torch.Tensor) -> None:
        store = self.act if kind == "act" else self.grad
        if layer in store:
            store[layer].add_(corr)
        else:
            store[layer] = corr.clone()

    def score(self, responses: Responses = "both", weighting: Weighting = "exp_bottom_up") -> float:
        """``log |det K|`` for the chosen responses and weighting; ``-inf`` if K is empty or singular."""
        if responses not in RESPONSES:
            raise ValueError(f"unknown responses {responses!r}; allowed: {', '.join(RESPONSES)}")
        log2w = layer_weights(self.num_layers, weighting)
        stores = {"both": (self.act, self.grad), "act": (self.act,), "grad": (self.grad,)}[responses]
        layers = sorted({l for s in stores for l in s})
        if not layers:
            return float("-inf")
        # K = sum_l 2**a_l M_l = 2**top * sum_l 2**(a_l - top) M_l, exact and overflow-free.
        top = max(log2w[l - 1] for l in layers)
        k = None
        for l in layers:
            m = sum(s[l] for s in stores if l in s)
            term = m * 2.0 ** (log2w[l - 1] - top)
            k = term if k is None else k + term
        _, logabsdet = torch.linalg.slogdet(k)
        value = float(logabsdet) + self.n * top * math.log(2.0)
        if math.isnan(value):
            return float("-inf")
        return value


def _abs_corr(x: torch.Tensor, rel_tol: float) -> tuple[torch.Tensor | None, str]:
    """|Pearson correlation| between the rows of ``x`` (N x D) as float64, or None and why not."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    xc = x - x.mean(dim=1, keepdim=True)
    gram = xc @ xc.T
    if not torch.isfinite(gram).all():
        return None, "nonfinite"
    var = gram.diagonal()
    scale = (x * x).sum(dim=1)
    if bool((var <= (rel_tol**2) * scale).any()) or bool((var == 0).any()):
        return None, "constant"
    gram = gram.double()
    inv = gram.diagonal().rsqrt()
    return (gram * inv[:, None] * inv[None, :]).abs_(), "ok"


@contextmanager
def padded_as(model: nn.Module, padding: Padding) -> Iterator[int]:
    """Within the block, ``padding="circular"`` switches every zero-padded convolution of ``model``
    (transposed ones excepted: torch pads those with zeros only) to circular padding; yields how
    many were switched and restores them on exit."""
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; allowed: {', '.join(PADDINGS)}")
    convs = []
    if padding == "circular":
        convs = [
            m for m in model.modules()
            if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed and m.padding_mode == "zeros"
            and m.padding != "valid" and (isinstance(m.padding, str) or any(m.padding))
        ]  # fmt: skip
    try:
        for m in convs:
            m.padding_mode = "circular"
        yield len(convs)
    finally:
        for m in convs:
            m.padding_mode = "zeros"


def _layer_map(model: nn.Module, layers: Sequence[nn.Module] | None, types: tuple[type, ...]) -> tuple[dict[nn.Module, int] | None, int, int]:
    """Map activation module -> layer (1-based); ``None`` means the call-order fallback."""
    if layers is None and callable(getattr(model, "layer_units", None)):
        layers = model.layer_units()
    if layers is None:
        return None, 0, 0
    if len(layers) == 0:
        raise ValueError("layers must list at least one depth-ordered module")
    mapping: dict[nn.Module, int] = {}
    for l, layer in enumerate(layers, start=1):
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layers[{l - 1}] is {type(layer).__name__}, expected an nn.Module")
        for m in layer.modules():
            if isinstance(m, types) and m not in mapping:
                mapping[m] = l
    unassigned = sum(1 for m in model.modules() if isinstance(m, types) and m not in mapping)
    return mapping, len(layers), unassigned


def response_kernels(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    layers: Sequence[nn.Module] | None = None,
    activation_types: tuple[type[nn.Module], ...] = ACTIVATIONS,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    split: int = 1,
    padding: Padding = "model",
    jacobian: bool = False,
) -> list[ResponseKernels]:
    """One forward/backward per chunk, returning the per-layer correlation sums of each chunk.

    Args:
        model: any ``nn.Module`` producing logits; it is left unmodified.
        inputs, targets: the batch; ``targets`` are class indices.
        layers: depth-ordered layers; default ``model.layer_units()`` or the call-order fallback.
        activation_types: module types treated as units.
        loss_fn: ``(logits, targets) -> scalar``; default cross-entropy.
        split: number of chunks the batch is cut into to save memory (each chunk gets its own
            BatchNorm statistics and its own kernel).
        padding: ``"model"`` (as built) or ``"circular"`` (see the module docstring).
        jacobian: also keep the input Jacobian of the summed logits of the same forward pass
            (one more backward, with the response hooks off), as JacCor defines it.
    """
    n = inputs.shape[0]
    if not isinstance(split, int) or split < 1 or n // split < 2:
        raise ValueError(f"split={split!r} must be an int >= 1 leaving at least 2 samples per chunk (batch {n})")
    mapping, num_layers, unassigned = _layer_map(model, layers, activation_types)
    loss_fn = loss_fn or nn.functional.cross_entropy
    rel_tol = 100 * torch.finfo(inputs.dtype if inputs.is_floating_point() else torch.float32).eps

    params = {k: p.detach() for k, p in model.named_parameters()}
    out: list[ResponseKernels] = []
    with mode(model, train=True), padded_as(model, padding):
        for chunk_x, chunk_y in zip(inputs.tensor_split(split), targets.tensor_split(split), strict=True):
            # BatchNorm running statistics are updated on copies, never on the caller's buffers.
            buffers = {k: b.clone() for k, b in model.named_buffers()}
            kernels = ResponseKernels(chunk_x.shape[0])
            kernels.counts["units_unassigned"] = unassigned
            _one_pass(model, params, buffers, chunk_x, chunk_y, mapping, activation_types, loss_fn, kernels, rel_tol,
                      jacobian)  # fmt: skip
            kernels.num_layers = num_layers if mapping is not None else kernels.num_layers
            out.append(kernels)
    return out


def _one_pass(model, params, buffers, x, y, mapping, types, loss_fn, kernels: ResponseKernels, rel_tol: float,
              jacobian: bool = False) -> None:
    handles = []
    hooks_on = [True]  # off while the Jacobian's backward runs through the same graph
    call_layer: list[int] = []
    # Activation correlations keyed by tensor identity: units fed by the same tensor
    # (a node feeding several edges) share one computation. References are held so that an
    # id is never reused while its entry lives.
    inplace_targets: list[tuple[nn.Module, torch.Tensor]] = []
    recent: OrderedDict[int, tuple[torch.Tensor, int, torch.Tensor | None, str]] = OrderedDict()

    def grad_hook(layer: int) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor) -> None:
            if not hooks_on[0]:
                return
            kernels.counts["grad_missing"] -= 1
            corr, why = _abs_corr(g.reshape(g.shape[0], -1), rel_tol)
            if corr is None:
                kernels.counts[f"grad_{why}"] += 1
            else:
                kernels.counts["grad_used"] += 1
                kernels.add("grad", layer, corr)

        return hook

    def pre_hook(module: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        x_in = args[0]
        if mapping is not None:
            layer = mapping.get(module)
            if layer is None:
                return None
        else:
            layer = len(call_layer) + 1
            call_layer.append(layer)
            kernels.num_layers = layer
        kernels.counts["units_hooked"] += 1
        key = id(x_in)
        hit = recent.get(key)
        if hit is not None and hit[0] is x_in and hit[1] == x_in._version:
            corr, why = hit[2], hit[3]
        else:
            corr, why = _abs_corr(x_in.detach().reshape(x_in.shape[0], -1), rel_tol)
            recent[key] = (x_in, x_in._version, corr, why)
            if len(recent) > 8:
                recent.popitem(last=False)
        if corr is None:
            kernels.counts[f"act_{why}"] += 1
        else:
            kernels.counts["act_used"] += 1
            kernels.add("act", layer, corr)
        if not x_in.requires_grad:
            return None
        # A fresh alias so the hook sees the gradient flowing through this unit alone. An in-place
        # activation works on a copy (a hook on a view would be lost to the in-place rewrite),
        # and the post-hook writes the result back into the original tensor, as the module would.
        if getattr(module, "inplace", False):
            alias = x_in.clone()
            inplace_targets.append((module, x_in))
        else:
            alias = x_in.view_as(x_in)
        alias.register_hook(grad_hook(layer))
        kernels.counts["grad_missing"] += 1
        return (alias, *args[1:])

    def inplace_post_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not inplace_targets or inplace_targets[-1][0] is not module:
            return None
        return inplace_targets.pop()[1].copy_(output)

    try:
        for m in model.modules():
            if isinstance(m, types):
                handles.append(m.register_forward_pre_hook(pre_hook))
                if getattr(m, "inplace", False):
                    handles.append(m.register_forward_hook(inplace_post_hook))
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            logits = logits_of(model, {**params, **buffers}, leaf.clone(), "wrcor")
            recent.clear()
            check_targets(logits, y, "wrcor")
            if jacobian:
                hooks_on[0] = False
                (kernels.jacobian,) = torch.autograd.grad(logits.sum(), leaf, retain_graph=True, allow_unused=True)
                hooks_on[0] = True
            loss = loss_fn(logits, y)
            if loss.requires_grad:
                torch.autograd.grad(loss, leaf, allow_unused=True)
    finally:
        for h in handles:
            h.remove()


#: The WRCor family, declared once: name -> (responses, weighting, description). Every member is a
#: registered proxy taking the options below, and all of them come out of one
#: :func:`response_kernels` pass (the family ``"wrcor"`` of :func:`nas.proxies.score_many`).
VARIANTS: dict[str, tuple[Responses, Weighting, str]] = {
    "wrcor": ("both", "exp_bottom_up", "WRCor: log|det| of exponentially bottom-to-top weighted activation+gradient correlations."),
    "rcor": ("both", "none", "RCor: WRCor without layer weights."),
    "acor": ("act", "none", "ACor: activation correlations only, unweighted."),
    "gcor": ("grad", "none", "GCor: gradient correlations only, unweighted."),
    "wrcor_linear": ("both", "linear", "WRCor with linear layer weights l (the paper's weighting ablation)."),
    "wrcor_quadratic": ("both", "quadratic", "WRCor with quadratic layer weights l^2 (the paper's weighting ablation)."),
    "wrcor_exp_top_down": ("both", "exp_top_down", "WRCor with exponential top-to-bottom weights 2^(L+1-l) (the paper's weighting ablation)."),
}  # fmt: skip
#: Options of one member alone; the others define the shared pass.
MEMBER_OPTIONS: tuple[str, ...] = ("responses", "weighting")
PASS_OPTIONS: tuple[str, ...] = ("split", "layers", "activation_types", "loss_fn", "padding")


def _check_variant(responses: str, weighting: str) -> None:
    if responses not in RESPONSES:
        raise ValueError(f"unknown responses {responses!r}; allowed: {', '.join(RESPONSES)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; allowed: {', '.join(WEIGHTINGS)}")


def _result(name: str, chunks: list[ResponseKernels], responses: Responses, weighting: Weighting, split: int,
            padding: Padding, seconds: float = 0.0) -> ProxyResult:
    # Chunks are independent blocks of a block-diagonal K: log|det| adds up.
    value = sum(k.score(responses, weighting) for k in chunks)
    diag: dict[str, int | str] = {"layers": chunks[0].num_layers, "split": split}
    for key in chunks[0].counts:
        diag[key] = sum(k.counts[key] for k in chunks)
    diag["responses"], diag["weighting"], diag["padding"] = responses, weighting, padding
    return ProxyResult(name, float(value), seconds, diag)


def _family_pass(  # noqa: C901  (one pass, several members)
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None,
    wanted: dict[str, dict[str, str]],
    *,
    split: int = 1,
    layers: Sequence[nn.Module] | None = None,
    activation_types: tuple[type[nn.Module], ...] = ACTIVATIONS,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    padding: Padding = "model",
) -> dict[str, ProxyResult | Exception]:
    """Every wanted member from one :func:`response_kernels` pass (``wanted``: member -> its own options).

    JacCor (``jacob_cov``) belongs to the family: its input Jacobian comes from the same forward
    pass (one more backward of the summed logits), when the pass scores the whole batch at once
    (``split == 1``); otherwise, or alone, it is computed on its own.
    """
    variants = {n: o for n, o in wanted.items() if n in VARIANTS}
    out: dict[str, ProxyResult | Exception] = {}
    if "jacob_cov" in wanted and not (variants and split == 1):
        out["jacob_cov"] = _standalone("jacob_cov", model, inputs, targets, wanted["jacob_cov"])
    if not variants:
        return out
    if targets is None:
        raise ValueError("the WRCor family needs labels: pass targets (class indices, shape (N,))")
    start = time.perf_counter()
    with_jacobian = "jacob_cov" in wanted and split == 1
    chunks = response_kernels(model, inputs, targets, layers=layers, activation_types=activation_types,
                              loss_fn=loss_fn, split=split, padding=padding, jacobian=with_jacobian)  # fmt: skip
    shared = time.perf_counter() - start
    if with_jacobian:
        t0 = time.perf_counter()
        try:
            jac = jacob_cov_from(chunks[0].jacobian, model, inputs.shape[0], **wanted["jacob_cov"])
            out["jacob_cov"] = ProxyResult("jacob_cov", jac.score, shared + time.perf_counter() - t0, jac.diagnostics)
        except FloatingPointError as e:
            out["jacob_cov"] = e
    for name, own in variants.items():
        t0 = time.perf_counter()
        responses, weighting, _ = VARIANTS[name]
        responses, weighting = own.get("responses", responses), own.get("weighting", weighting)
        try:
            _check_variant(responses, weighting)
        except ValueError as e:
            out[name] = e
            continue
        out[name] = _result(name, chunks, responses, weighting, split, padding, shared + time.perf_counter() - t0)
    return out


def _wrcor_proxy(name: str, responses: Responses, weighting: Weighting) -> Callable[..., ProxyResult]:
    def proxy(
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        responses: Responses = responses,
        weighting: Weighting = weighting,
        split: int = 1,
        layers: Sequence[nn.Module] | None = None,
        activation_types: tuple[type[nn.Module], ...] = ACTIVATIONS,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        padding: Padding = "model",
    ) -> ProxyResult:
        _check_variant(responses, weighting)
        chunks = response_kernels(
            model, inputs, targets, layers=layers, activation_types=activation_types,
            loss_fn=loss_fn, split=split, padding=padding,
        )  # fmt: skip
        return _result(name, chunks, responses, weighting, split, padding)

    proxy.__name__ = name
    return proxy


def _doc(what: str) -> str:
    return (
        f"{what}\n\nOptions: ``responses`` ('both' | 'act' | 'grad'), ``weighting`` "
        f"({' | '.join(WEIGHTINGS)}), ``split``, ``layers``, ``activation_types``, ``loss_fn``, "
        "``padding`` ('model' | 'circular'). "
        "Larger is better; ``-inf`` when no response is usable or K is singular. "
        "See :mod:`nas.proxies.wrcor`."
    )


for _name, (_resp, _weight, _what) in VARIANTS.items():
    _fn = _wrcor_proxy(_name, _resp, _weight)
    _fn.__doc__ = _doc(_what)
    register(_name)(_fn)
def _standalone(name: str, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None,
                options: dict) -> ProxyResult | Exception:
    try:
        return score(name, model, inputs, targets, **options)
    except Exception as e:  # recorded for that member, as score_many records it
        return e


register_family("wrcor", (*VARIANTS, "jacob_cov"), _family_pass, PASS_OPTIONS)
