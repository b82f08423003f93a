"""The four AZ-NAS measures: expressivity, progressivity, trainability and complexity.

Lee & Ham, "AZ-NAS: Assembling Zero-Cost Proxies for Network Architecture Search" (CVPR 2024);
the authors' code is ``cvlab-yonsei/AZ-NAS`` (``NB201/ZeroShotProxy/compute_az_nas_score.py``,
``ImageNet_MBV2/ZeroShotProxy/compute_az_nas_score.py``). All four come from one forward pass
and one backward pass (:func:`az_nas_family`); each registered member calls that pass for itself.

Blocks. The measures read the feature map at the output of every block ``f_0, ..., f_L``:

1. ``blocks=`` when the caller gives them;
2. else ``model.feature_blocks()`` when the model has it (NAS-Bench-201: the stem and the 17
   cells, exactly the authors' ``extract_cell_features``; the MobileNet-like network: the stem,
   every inverted-residual sub-layer and the head conv block, as the authors' ImageNet code,
   which reads the output of every residual block);
3. else ``model.layer_units()`` (the depth-ordered layers WRCor uses);
4. else ``ValueError`` naming the proxy and the model: no fallback guesses blocks.

Every call of a block adds one feature map, in call order. Channels are dim 1 (``(N, C)`` or
``(N, C, *spatial)``); every sample and position is one observation of the ``C`` channels.

Measures (all larger is better):

- expressivity: sum over feature maps of the entropy of the normalized eigenvalues of the
  channel covariance (population covariance over samples and positions);
- progressivity: the smallest increase of that entropy from one feature map to the next;
- trainability: mean over consecutive pairs ``(f_{l-1}, f_l)`` of ``-s - 1/s + 2``, ``s`` the
  largest singular value of ``M = mean over positions of g_in g_out^T``, where ``g_out`` is a
  Rademacher (+-1) backward signal drawn at ``f_l`` and ``g_in`` its vector-Jacobian product at
  ``f_{l-1}`` (when ``f_{l-1}`` is larger spatially by an integer stride, ``g_in`` is
  pixel-unshuffled to ``f_l``'s grid first). ``M`` estimates the block's channel Jacobian, so the
  score peaks at 0 when its spectral norm is 1;
- complexity: multiply-accumulates per sample of the same forward pass (counted by
  ``torch.utils.flop_counter``; the authors use the network's FLOPs, from the NAS-Bench-201 API
  on that space).

The network runs with BatchNorm in training mode (batch statistics, on cloned buffers), dropout
off, parameters detached (no ``.grad`` is written); the input is the batch given. No labels are
used.

Where the authors' code differs from the paper or from this module, and which is followed:

- initialization: the authors re-initialize every network before scoring (Kaiming normal,
  fan-in, biases 0, norm weights 1); the project scores a network at its own initialization,
  and so does this module (no option: the effect of the authors' rule was not measured). With
  BatchNorm in training mode after a convolution, the block outputs do not depend on the scale
  of that convolution's weights; on NAS-Bench-201 that is every convolution but the
  unnormalized 1x1 shortcut of the two reduction blocks, so the rule changes the shape of the
  weight distribution (normal instead of PyTorch's uniform) more than its scale;
- input: on NAS-Bench-201 the authors feed Gaussian noise ``randn``; here the caller's batch
  (the project's benchmark passes real images) is used;
- the Rademacher signal: the authors draw it from the global RNG; here from a
  ``torch.Generator`` seeded by ``seed`` (on the CPU, so the score does not depend on the device);
- an identity block (``g_in == g_out`` exactly) scores ``-inf`` in the authors' code, and here;
- eigenvalues: the authors take ``-sum p log(p + 1e-8)`` of possibly negative round-off
  eigenvalues; here negatives are clipped to 0 (counted) and ``0 log 0 = 0``;
- ``s = 0`` (a block that passes no gradient): the authors add ``1e-6`` and get about ``-1e6``;
  here the exact ``-inf``. A feature map with no variance makes the entropy undefined (NaN in the
  authors' code, which they map to ``-inf``): expressivity and progressivity are ``-inf``.

Non-finite values in a feature map or a backward signal make that measure ``-inf`` with the
offending blocks in ``diagnostics`` (``nonfinite_features``, ``nonfinite_blocks``) and the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from nas.proxies._functional import detached_state, mode, model_name
from nas.proxies.base import ProxyResult, alone, register, register_family

#: The members computed together by :func:`az_nas_family`.
AZ_NAS_MEMBERS: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")

Outcome = ProxyResult | Exception


def feature_blocks(model: nn.Module, proxy: str, blocks: Sequence[nn.Module] | None = None) -> tuple[list[nn.Module], str]:
    """The blocks whose outputs are read, and where they came from (see the module docstring).

    Raises:
        ValueError: the model declares no blocks and none are given, or the list is empty.
        TypeError: a block is not an ``nn.Module``.
    """
    source = "blocks"
    if blocks is None:
        for method in ("feature_blocks", "layer_units"):
            if callable(getattr(model, method, None)):
                blocks, source = getattr(model, method)(), method
                break
    if blocks is None:
        raise ValueError(
            f"{proxy}: model {model_name(model)} declares no blocks: give it a method feature_blocks() "
            "(or layer_units()) returning its sequential blocks in depth order, or pass blocks=[...]"
        )
    blocks = list(blocks)
    if not blocks:
        raise ValueError(f"{proxy}: the block list of model {model_name(model)} is empty")
    for i, b in enumerate(blocks):
        if not isinstance(b, nn.Module):
            raise TypeError(f"{proxy}: blocks[{i}] is {type(b).__name__}, expected an nn.Module")
    return blocks, source


def _observations(f: torch.Tensor) -> torch.Tensor:
    """``(observations, channels)``: every sample and position of a channels-at-dim-1 tensor."""
    return f.movedim(1, -1).reshape(-1, f.shape[1]) if f.dim() > 2 else f


def spectral_entropy(f: torch.Tensor) -> tuple[float, int]:
    """Entropy of the normalized eigenvalues of the channel covariance of ``f``; ``-inf`` if it is 0.

    Returns ``(entropy, eigenvalues clipped from round-off negatives to 0)``.
    """
    obs = _observations(f.detach())
    obs = obs - obs.mean(dim=0, keepdim=True)
    # the product in the feature dtype (fast), the spectrum in float64
    cov = (obs.T @ obs).double() / obs.shape[0]
    lam = torch.linalg.eigvalsh(cov)
    clipped = int((lam < 0).sum())
    lam = lam.clamp_min(0.0)
    total = lam.sum()
    if total <= 0:
        return float("-inf"), clipped
    p = lam / total
    return float(-torch.special.xlogy(p, p).sum()), clipped


def block_trainability(g_in: torch.Tensor, g_out: torch.Tensor, proxy: str) -> float:
    """``-s - 1/s + 2``, ``s`` the top singular value of ``mean_pos g_in g_out^T`` (``-inf`` for ``s = 0``)."""
    if g_in.shape[2:] != g_out.shape[2:]:
        if g_in.dim() != 4 or g_out.dim() != 4:
            raise ValueError(
                f"{proxy}: consecutive feature maps of shapes {tuple(g_in.shape)} and {tuple(g_out.shape)} "
                "differ in size and are not (N, C, H, W)"
            )
        stride = g_in.shape[2] // g_out.shape[2]
        if stride < 1 or g_in.shape[2:] != (g_out.shape[2] * stride, g_out.shape[3] * stride):
            raise ValueError(
                f"{proxy}: feature map {tuple(g_in.shape)} is not an integer-stride upsampling of "
                f"{tuple(g_out.shape)}; the block Jacobian cannot be aligned"
            )
        g_in = nn.functional.pixel_unshuffle(g_in, stride)
    a, b = _observations(g_in), _observations(g_out)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{proxy}: feature maps {tuple(g_in.shape)} and {tuple(g_out.shape)} have different positions")
    mat = (a.T @ b).double() / b.shape[0]
    s = float(torch.linalg.matrix_norm(mat, ord=2))
    if s == 0.0:
        return float("-inf")
    return -s - 1.0 / s + 2.0


def az_nas_family(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    wanted: Collection[str] = AZ_NAS_MEMBERS,
    *,
    blocks: Sequence[nn.Module] | None = None,
    seed: int = 0,
) -> dict[str, Outcome]:
    """The AZ-NAS measures from one shared forward and backward pass.

    Args:
        model: any ``nn.Module``; left unmodified.
        inputs: the batch; ``targets`` is not used (AZ-NAS needs no labels).
        wanted: the members to compute (a subset of :data:`AZ_NAS_MEMBERS`).
        blocks: the blocks to read (default: see the module docstring).
        seed: seed of the Rademacher backward signals of trainability.

    Returns:
        For each wanted member a :class:`ProxyResult` (``seconds`` = the shared pass plus that
        member's own work) or the exception it raised.

    Raises:
        ValueError: unknown members, no blocks, fewer than two feature maps, a block never
            called or not returning a tensor.
    """
    unknown = set(wanted) - set(AZ_NAS_MEMBERS)
    if unknown:
        raise ValueError(f"not members of the AZ-NAS family: {sorted(unknown)}; members: {AZ_NAS_MEMBERS}")
    proxy = "/".join(w for w in AZ_NAS_MEMBERS if w in wanted)
    mods, source = feature_blocks(model, proxy, blocks)
    features: list[torch.Tensor] = []
    # copies for the entropies: a later in-place op on a block's output must not change them
    copies: list[torch.Tensor] = []
    keep_copies = bool({"az_expressivity", "az_progressivity"} & set(wanted))
    called: set[int] = set()

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"{proxy}: block {type(module).__name__} returned {type(output).__name__}, expected a tensor")
        called.add(id(module))
        features.append(output)
        if keep_copies:
            copies.append(output.detach().clone())

    start = time.perf_counter()
    handles = [m.register_forward_hook(hook) for m in mods]
    counter = FlopCounterMode(display=False) if "az_complexity" in wanted else None
    try:
        with mode(model, train=True), torch.enable_grad():
            state, _ = detached_state(model)
            # the input carries the graph: parameters are detached, and only features get gradients
            x = inputs.detach().clone().requires_grad_(inputs.is_floating_point())
            if counter is not None:
                with counter:
                    functional_call(model, state, (x,))
            else:
                functional_call(model, state, (x,))
    finally:
        for h in handles:
            h.remove()
    missing = [i for i, m in enumerate(mods) if id(m) not in called]
    if missing:
        raise ValueError(f"{proxy}: block(s) {missing} of model {model_name(model)} ({source}) were not called in the forward pass")
    if len(features) < 2:
        raise ValueError(
            f"{proxy}: model {model_name(model)} gave {len(features)} feature map(s) from its blocks ({source}); "
            "AZ-NAS needs at least two"
        )
    shared = time.perf_counter() - start
    base: dict[str, Any] = {"blocks": len(mods), "features": len(features), "block_source": source}
    nonfinite = [i for i, f in enumerate(copies) if not bool(torch.isfinite(f).all())]

    def entropies() -> tuple[list[float], dict[str, Any]]:
        if nonfinite:
            return [], {"nonfinite_features": nonfinite, "reason": f"feature map(s) {nonfinite} have non-finite values"}
        ent, clipped = zip(*(spectral_entropy(f) for f in copies), strict=True)
        extra: dict[str, Any] = {"eigenvalues_clipped": sum(clipped), "entropies": list(ent)}
        constant = [i for i, e in enumerate(ent) if e == float("-inf")]
        if constant:
            extra.update(constant_features=constant, reason=f"feature map(s) {constant} have no variance")
        return list(ent), extra

    cache: dict[str, tuple[list[float], dict[str, Any]]] = {}

    def cached_entropies() -> tuple[list[float], dict[str, Any]]:
        if "e" not in cache:
            cache["e"] = entropies()
        return cache["e"]

    def expressivity() -> tuple[float, dict[str, Any]]:
        ent, extra = cached_entropies()
        return (sum(ent) if ent else float("-inf")), extra

    def progressivity() -> tuple[float, dict[str, Any]]:
        ent, extra = cached_entropies()
        if not ent or any(e == float("-inf") for e in ent):
            return float("-inf"), extra
        return min(b - a for a, b in zip(ent[:-1], ent[1:], strict=True)), extra

    def trainability() -> tuple[float, dict[str, Any]]:
        gen = torch.Generator().manual_seed(seed)
        scores: list[float] = []
        identity, bad = [], []
        for i in reversed(range(1, len(features))):
            f_out, f_in = features[i], features[i - 1]
            g_out = (torch.randint(0, 2, f_out.shape, generator=gen) * 2 - 1).to(f_out.dtype).to(f_out.device)
            (g_in,) = torch.autograd.grad(f_out, f_in, g_out, retain_graph=True, allow_unused=True)
            if g_in is None:
                raise ValueError(
                    f"az_trainability: feature map {i} of model {model_name(model)} does not depend on feature map "
                    f"{i - 1}; the blocks ({source}) must be sequential"
                )
            if not bool(torch.isfinite(g_in).all()):
                bad.append(i)
                continue
            if g_in.shape == g_out.shape and bool(torch.equal(g_in, g_out)):
                identity.append(i)  # the authors score an identity block -inf
                scores.append(float("-inf"))
                continue
            scores.append(block_trainability(g_in, g_out, "az_trainability"))
        scores.reverse()
        extra: dict[str, Any] = {"block_scores": scores, "identity_blocks": sorted(identity), "seed": seed}
        if bad:
            extra.update(nonfinite_blocks=sorted(bad), reason=f"block(s) {sorted(bad)} pass non-finite gradients")
            return float("-inf"), extra
        dead = [i + 1 for i, v in enumerate(scores) if v == float("-inf") and i + 1 not in identity]
        if identity or dead:
            extra["zero_gradient_blocks"] = dead
            extra["reason"] = f"identity block(s) {sorted(identity)}, block(s) passing no gradient {dead}"
        value = math.fsum(scores) / len(scores)
        return (value if not math.isnan(value) else float("-inf")), extra

    def complexity() -> tuple[float, dict[str, Any]]:
        assert counter is not None
        macs = counter.get_total_flops() / 2 / inputs.shape[0]
        return float(macs), {"macs": macs}

    members: dict[str, Callable[[], tuple[float, dict[str, Any]]]] = {
        "az_expressivity": expressivity, "az_progressivity": progressivity,
        "az_trainability": trainability, "az_complexity": complexity,
    }  # fmt: skip
    out: dict[str, Outcome] = {}
    for name in AZ_NAS_MEMBERS:
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        try:
            value, extra = members[name]()
        except (FloatingPointError, ValueError, RuntimeError) as e:  # returned to the caller, per member
            out[name] = e
            continue
        out[name] = ProxyResult(name, value, shared + time.perf_counter() - t0, {**base, **extra})
    return out


def _member(name: str) -> Callable[..., ProxyResult]:
    def proxy(
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        blocks: Sequence[nn.Module] | None = None,
        seed: int = 0,
    ) -> ProxyResult:
        return alone(az_nas_family(model, inputs, targets, (name,), blocks=blocks, seed=seed), name)

    proxy.__name__ = name
    return proxy


_DOCS = {
    "az_expressivity": """AZ-NAS expressivity: sum over block outputs of the entropy of the normalized channel-covariance eigenvalues.

    Lee & Ham, "AZ-NAS" (CVPR 2024). Larger is better (features spread over more directions);
    ``-inf`` when a feature map has no variance. Blocks, BatchNorm mode and the differences from
    the authors' code: :mod:`nas.proxies.aznas`. Options: ``blocks``, ``seed`` (unused here).""",
    "az_progressivity": """AZ-NAS progressivity: the smallest increase of the spectral entropy from one block output to the next.

    Lee & Ham, "AZ-NAS" (CVPR 2024). Larger is better (expressivity grows with depth at every
    block); ``-inf`` when a feature map has no variance. See :mod:`nas.proxies.aznas`.
    Options: ``blocks``, ``seed`` (unused here).""",
    "az_trainability": """AZ-NAS trainability: mean over blocks of -s - 1/s + 2, s the spectral norm of the block's Jacobian estimate.

    Lee & Ham, "AZ-NAS" (CVPR 2024). The estimate is ``mean_pos g_in g_out^T`` from a Rademacher
    backward signal ``g_out`` at each block output (seeded by ``seed``). Larger is better (0 at
    s = 1); an identity block or s = 0 is ``-inf``. See :mod:`nas.proxies.aznas`.
    Options: ``blocks``, ``seed``.""",
    "az_complexity": """AZ-NAS complexity: multiply-accumulates per sample of the network's forward pass.

    Lee & Ham, "AZ-NAS" (CVPR 2024) use the FLOPs of the network; counted here in the shared
    forward pass by ``torch.utils.flop_counter`` (the value of the ``flops`` proxy). Larger is
    better. Options: ``blocks``, ``seed`` (unused here).""",
}

for _name in AZ_NAS_MEMBERS:
    _fn = _member(_name)
    _fn.__doc__ = _DOCS[_name]
    register(_name, needs_targets=False)(_fn)
register_family("az_nas", AZ_NAS_MEMBERS, az_nas_family, ("blocks", "seed"))
