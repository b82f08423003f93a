"""The MobileNetV2-like ImageNet space of Zen-NAS, as searched by WRCor.

The architectures, their string form and their ranges are :mod:`nas.arch.mbv2`; the networks
are built by :mod:`nas.models.mbv2`. This module samples, mutates and costs them.

Sampling draws each of the 38 decisions (:meth:`MBV2Space.decision_sizes`) uniformly; under a
budget, up to ``max_tries`` draws are rejected; if all of them are over budget the last draw is
shrunk to fit (a random decision still above its smallest option is lowered to a uniformly
drawn smaller option, repeated until the network fits). Every cost is nondecreasing in every
decision and the smallest network is checked to fit when the space is made, so this always
ends; it only biases the distribution of budgets too tight for rejection. Strides and SE are
fixed per space (default: the paper's strides and SE on) and never sampled or mutated.

Example:
    >>> import numpy as np, nas
    >>> space = nas.spaces.get("mbv2").with_budget(max_flops=600e6)
    >>> arch = space.sample(np.random.default_rng(0))
    >>> space.decode(space.encode(arch)) == arch and space.flops(arch) <= 600e6
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nas.arch.mbv2 import (
    EXPANSIONS,
    HEAD_RANGE,
    KERNELS,
    NUM_STAGES,
    NUM_STRIDE2,
    PAPER_STRIDES,
    RESOLUTIONS,
    STEM_RANGE,
    SUB_LAYERS,
    WIDTHS,
    MBV2Arch,
    MBV2Stage,
    round8,
)
from nas.models.mbv2 import MBV2Net
from nas.models.mbv2 import build as build_network
from nas.spaces import register
from nas.spaces.base import SearchSpace


def _cost(
    values: list[int] | tuple[int, ...],
    strides: tuple[int, ...],
    se: bool,
    num_classes: int,
) -> tuple[int, int]:
    """(MACs, params) of an RGB network from its 38 decision values (:meth:`MBV2Space._values`).

    MACs are those of the convolutions and the classifier's matmul, which is what
    ``torch.utils.flop_counter.FlopCounterMode`` counts (as FLOPs = 2 x MACs); params count
    every weight, bias and BN affine parameter of the built network.
    """
    side = (values[0] - 1) // 2 + 1
    c = values[1]
    macs = 3 * c * 9 * side * side
    params = 3 * c * 9 + 2 * c
    for i in range(NUM_STAGES):
        e, k, c_out, b, n = values[2 + 5 * i : 7 + 5 * i]
        mid = round8(b * e)
        out_side = (side - 1) // strides[i] + 1
        area_in, area = side * side, out_side * out_side
        se_c = max(1, round(mid / 4)) if se else 0
        se_macs = 2 * mid * se_c
        se_params = 2 * mid * se_c + 2 * se_c + 2 * mid if se else 0
        body = mid * k * k * area + mid * c_out * area + se_macs  # dw + project + SE, any sub-layer
        body_params = mid * k * k + 2 * mid + mid * c_out + 2 * c_out + se_params + 2 * mid
        # sub-layer 0: expand from c at the input side, projection shortcut; later: from c_out
        macs += c * mid * area_in + body + c * c_out * area
        params += c * mid + body_params + c * c_out + 3 * c_out
        macs += (n - 1) * (c_out * mid * area + body)
        params += (n - 1) * (c_out * mid + body_params)
        c, side = c_out, out_side
    head = values[-1]
    macs += c * head * side * side + head * num_classes
    params += c * head + 2 * head + (head * num_classes + num_classes if num_classes > 0 else 0)
    return macs, params


def _window(value: int, options: tuple[int, ...]) -> list[int]:
    """Width options within a factor of 2 of ``value``, other than ``value``."""
    return [o for o in options if o != value and value / 2 <= o <= 2 * value]


@register("mbv2")
class MBV2Space(SearchSpace[MBV2Arch]):
    """The MobileNetV2-like space, optionally restricted to a FLOPs and/or parameter budget.

    Args:
        max_flops: budget on multiply-accumulates at the architecture's resolution (the paper
            calls them FLOPs: 600e6 for the 600M network), or None.
        max_params: budget on parameters (with ``num_classes`` outputs), or None.
        num_classes: classifier outputs used for the costs and by :meth:`build`.
        strides: the stage strides of every sampled network (four 2s).
        se: whether sampled networks use squeeze-excitation.
        max_tries: draws rejected before a draw is shrunk to fit (see the module docstring);
            also the number of draws :meth:`mutate` tries before it raises.
        resolutions: the input resolutions searched (the paper's 192-320 by default; e.g.
            ``(32,)`` or ``(64, 96)`` for small images), each a multiple of 32. A scoring batch of
            another size is resized to each candidate's resolution, and the scorer says so.

    Raises:
        ValueError: a budget below the cost of the smallest network, or bad strides.
    """

    name = "mbv2"

    def __init__(
        self,
        max_flops: float | None = None,
        max_params: float | None = None,
        *,
        num_classes: int = 1000,
        strides: tuple[int, ...] = PAPER_STRIDES,
        se: bool = True,
        max_tries: int = 100,
        resolutions: tuple[int, ...] = RESOLUTIONS,
    ) -> None:
        strides = tuple(strides)
        resolutions = tuple(sorted(set(resolutions)))
        if not resolutions or any(not isinstance(r, int) or r < 32 or r % 32 for r in resolutions):
            raise ValueError(f"resolutions must be positive multiples of 32 (the total stride), got {resolutions}")
        self.resolutions = resolutions
        if len(strides) != NUM_STAGES or set(strides) - {1, 2} or strides.count(2) != NUM_STRIDE2:
            raise ValueError(
                f"strides must be {NUM_STAGES} values in {{1, 2}} with {NUM_STRIDE2} 2s, got {strides}"
            )
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.max_flops, self.max_params = max_flops, max_params
        self.num_classes, self.strides, self.se, self.max_tries = (
            num_classes,
            strides,
            se,
            max_tries,
        )
        stage_opts: list[tuple[int, ...]] = []
        for (w_lo, w_hi), (n_lo, n_hi) in zip(WIDTHS, SUB_LAYERS, strict=True):
            widths = tuple(range(w_lo, w_hi + 1, 8))
            stage_opts += [EXPANSIONS, KERNELS, widths, widths, tuple(range(n_lo, n_hi + 1))]
        self._options: list[tuple[int, ...]] = [
            resolutions,
            tuple(range(STEM_RANGE[0], STEM_RANGE[1] + 1, 8)),
            *stage_opts,
            tuple(range(HEAD_RANGE[0], HEAD_RANGE[1] + 1, 8)),
        ]
        self._index = [{v: i for i, v in enumerate(opts)} for opts in self._options]
        self._sizes = np.array([len(o) for o in self._options])
        # decisions whose options are widths: mutated within a factor of 2
        self._is_width = [
            d == 1 or d == len(self._options) - 1 or (d - 2) % 5 in (2, 3)
            for d in range(len(self._options))
        ]
        for label, limit in (("max_flops", max_flops), ("max_params", max_params)):
            if limit is not None and not limit > 0:
                raise ValueError(f"{label} must be a positive number or None, got {limit}")
        smallest = [opts[0] for opts in self._options]
        min_flops, min_params = _cost(smallest, strides, se, num_classes)
        if not self._fits(min_flops, min_params):
            raise ValueError(
                f"no architecture fits the budget max_flops={max_flops}, max_params={max_params}: "
                f"the smallest network ({self._to_arch(smallest).encode()}) has {min_flops} MACs "
                f"and {min_params} params"
            )

    def with_budget(
        self, max_flops: float | None = None, max_params: float | None = None
    ) -> MBV2Space:
        """The same space under a new budget (None: unbounded)."""
        return MBV2Space(
            max_flops,
            max_params,
            num_classes=self.num_classes,
            strides=self.strides,
            se=self.se,
            max_tries=self.max_tries,
            resolutions=self.resolutions,
        )

    def smallest(self) -> MBV2Arch:
        """Every decision at its smallest option: the least MACs and parameters of the space."""
        return self._to_arch([opts[0] for opts in self._options])

    def __repr__(self) -> str:
        return (
            f"MBV2Space(max_flops={self.max_flops}, max_params={self.max_params}, "
            f"num_classes={self.num_classes}, strides={self.strides}, se={self.se}, resolutions={self.resolutions})"
        )

    # string form
    def decode(self, text: str) -> MBV2Arch:
        return MBV2Arch.decode(text)

    def encode(self, arch: MBV2Arch) -> str:
        return arch.encode()

    # decisions: resolution, stem, 7 x (expansion, kernel, out, bottleneck, sub_layers), head
    def _values(self, arch: MBV2Arch) -> list[int]:
        values = [arch.resolution, arch.stem]
        for s in arch.stages:
            values += [s.expansion, s.kernel, s.out_channels, s.bottleneck, s.sub_layers]
        values.append(arch.head)
        return values

    def _to_arch(
        self, values: list[int], strides: tuple[int, ...] | None = None, se: bool | None = None
    ) -> MBV2Arch:
        strides = self.strides if strides is None else strides
        stages = tuple(
            MBV2Stage(
                values[2 + 5 * i],
                values[3 + 5 * i],
                values[4 + 5 * i],
                strides[i],
                values[5 + 5 * i],
                values[6 + 5 * i],
            )
            for i in range(NUM_STAGES)
        )
        return MBV2Arch(values[0], values[1], stages, values[-1], self.se if se is None else se)

    def decision_sizes(self) -> list[int]:
        return self._sizes.tolist()

    def decisions(self, arch: MBV2Arch) -> list[int]:
        if arch.strides != self.strides or arch.se != self.se:
            raise ValueError(
                f"arch has strides {arch.strides} and se={arch.se}; this space's decisions fix "
                f"strides {self.strides} and se={self.se}"
            )
        return [self._index[d][v] for d, v in enumerate(self._values(arch))]

    def from_decisions(self, choices: list[int]) -> MBV2Arch:
        if len(choices) != len(self._options):
            raise ValueError(f"expected {len(self._options)} decisions, got {len(choices)}")
        for d, c in enumerate(choices):
            if not 0 <= int(c) < len(self._options[d]):
                raise ValueError(
                    f"decision {d} = {c} out of range [0, {len(self._options[d]) - 1}]"
                )
        return self._to_arch([self._options[d][int(c)] for d, c in enumerate(choices)])

    # cost
    def cost(self, arch: MBV2Arch, num_classes: int | None = None) -> tuple[int, int]:
        """``(MACs, params)`` of ``arch`` at its resolution, without building it."""
        nc = self.num_classes if num_classes is None else num_classes
        return _cost(self._values(arch), arch.strides, arch.se, nc)

    def fits(self, arch: MBV2Arch) -> bool:
        """Whether ``arch`` is within this space's budget."""
        return self._fits(*self.cost(arch))

    def _fits(self, macs: int, params: int) -> bool:
        return (self.max_flops is None or macs <= self.max_flops) and (
            self.max_params is None or params <= self.max_params
        )

    def _fits_values(self, values: list[int], strides: tuple[int, ...], se: bool) -> bool:
        if self.max_flops is None and self.max_params is None:
            return True
        return self._fits(*_cost(values, strides, se, self.num_classes))

    # sampling
    def sample(self, rng: np.random.Generator) -> MBV2Arch:
        for _ in range(self.max_tries):
            idx = rng.integers(0, self._sizes).tolist()
            values = [self._options[d][i] for d, i in enumerate(idx)]
            if self._fits_values(values, self.strides, self.se):
                return self._to_arch(values)
        return self._shrink(idx, rng)

    def _shrink(self, idx: list[int], rng: np.random.Generator, strides: tuple[int, ...] | None = None,
                se: bool | None = None) -> MBV2Arch:
        """Lower random decisions (option indices ``idx``) to random smaller options until the budget fits."""
        strides = self.strides if strides is None else strides
        se = self.se if se is None else se
        idx = list(idx)
        values = [self._options[d][i] for d, i in enumerate(idx)]
        while not self._fits_values(values, strides, se):
            lowerable = [d for d, i in enumerate(idx) if i > 0]
            d = lowerable[int(rng.integers(len(lowerable)))]
            idx[d] = int(rng.integers(idx[d]))
            values[d] = self._options[d][idx[d]]
        return self._to_arch(values, strides, se)

    def within_budget(self, arch: MBV2Arch, rng: np.random.Generator) -> MBV2Arch:
        """``arch`` if it fits, else ``arch`` shrunk to fit as :meth:`sample` shrinks its draws."""
        if self.fits(arch):
            return arch
        return self._shrink([self._index[d][v] for d, v in enumerate(self._values(arch))], rng, arch.strides, arch.se)

    def mutate(self, arch: MBV2Arch, rng: np.random.Generator) -> MBV2Arch:
        """Change one decision: the resolution, stem or head width, or one stage's expansion,
        kernel, width, bottleneck or depth. Widths move to another option within a factor of 2;
        the other decisions to any other option. Over-budget draws are rejected (up to
        ``max_tries``, then ``ValueError``)."""
        base = self._values(arch)
        for _ in range(self.max_tries):
            d = int(rng.integers(len(base)))
            opts = self._options[d]
            choices = (
                _window(base[d], opts) if self._is_width[d] else [o for o in opts if o != base[d]]
            )
            values = list(base)
            values[d] = choices[int(rng.integers(len(choices)))]
            if self._fits_values(values, arch.strides, arch.se):
                return self._to_arch(values, arch.strides, arch.se)
        raise ValueError(
            f"no mutation of {arch.encode()} within max_flops={self.max_flops}, "
            f"max_params={self.max_params} found in {self.max_tries} draws"
        )

    def input_resolution(self, arch: MBV2Arch) -> int:
        return arch.resolution

    def mutate_within(self, arch: MBV2Arch, rng: np.random.Generator) -> MBV2Arch | None:
        """:meth:`mutate` already keeps to the budget; None when it finds no neighbour that fits."""
        try:
            return self.mutate(arch, rng)
        except ValueError:
            return None

    # networks
    def build(self, arch: MBV2Arch, num_classes: int | None = None, **kwargs: Any) -> MBV2Net:
        """The untrained network (``num_classes`` defaults to the space's)."""
        nc = self.num_classes if num_classes is None else num_classes
        return build_network(arch, num_classes=nc, **kwargs)

    def timm_spec(self, arch: MBV2Arch) -> tuple[str, dict[str, Any]]:
        return "wrcor_mbv2", {"arch": arch.encode()}
