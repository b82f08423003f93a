"""The MobileNetV2-like ImageNet space of Zen-NAS, as searched by WRCor.

A network is a 3x3 stride-2 stem, seven stages of inverted-residual super-blocks, a 1x1 head
conv, global average pooling and a linear classifier (see :mod:`nas.models.mbv2`). The input
resolution is part of the architecture.

Canonical string (11 ``_``-separated tokens, all numbers in decimal without leading zeros)::

    r<resolution>_s<stem>_<stage 0>_..._<stage 6>_h<head>_<se|nose>
    stage token: e<expansion>k<kernel>c<out_channels>s<stride>b<bottleneck>n<sub_layers>

The paper's 600M network::

    r224_s48_e2k7c32s2b40n2_e2k7c32s2b48n3_e6k7c64s1b40n3_e6k7c88s2b40n4_e6k7c104s1b56n6_e6k5c152s2b192n6_e6k5c240s1b136n2_h1264_se

Ranges (every width a multiple of 8):

- resolution in {192, 224, 256, 288, 320}; stem 16-48; head 128-1536;
- per stage: expansion in {1, 2, 4, 6}, kernel in {3, 5, 7}, stride in {1, 2} with exactly
  four stride-2 stages (the stem is the fifth: total stride 32);
- per stage ``i`` (:data:`SUB_LAYERS`, :data:`WIDTHS`): sub-layers 1-2, 2-3, 2-3, 2-4, 2-6, 2-6,
  1-2 and out/bottleneck channels 16-64, 16-96, 24-128, 32-192, 32-256, 48-384, 64-512 (our
  choice: each range holds the 600M network's widths with room on both sides).

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

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.models.mbv2 import ARCH_600M, MBV2Net
from nas.spaces import register
from nas.spaces.base import SearchSpace

RESOLUTIONS = (192, 224, 256, 288, 320)
EXPANSIONS = (1, 2, 4, 6)
KERNELS = (3, 5, 7)
STEM_RANGE = (16, 48)
HEAD_RANGE = (128, 1536)
NUM_STAGES = 7
NUM_STRIDE2 = 4
#: (min, max) sub-layers of each stage.
SUB_LAYERS = ((1, 2), (2, 3), (2, 3), (2, 4), (2, 6), (2, 6), (1, 2))
#: (min, max) output and bottleneck channels of each stage.
WIDTHS = ((16, 64), (16, 96), (24, 128), (32, 192), (32, 256), (48, 384), (64, 512))
#: Stage strides of the paper's networks.
PAPER_STRIDES = (2, 2, 1, 2, 1, 2, 1)

#: The paper's 600M network (the string of timm's ``wrcor_600m``).
PAPER_600M = ARCH_600M

_NUM = r"(0|[1-9]\d*)"
_STAGE_TOKEN = re.compile(f"^e{_NUM}k{_NUM}c{_NUM}s{_NUM}b{_NUM}n{_NUM}$")
_SCALAR_TOKEN = re.compile(f"^([a-z]){_NUM}$")
_STAGE_FORM = "e<expansion>k<kernel>c<out>s<stride>b<bottleneck>n<sub_layers>"
_ARCH_FORM = "r<resolution>_s<stem>_<7 stage tokens>_h<head>_<se|nose>"


def round8(x: float) -> int:
    """``x`` rounded half-up to a multiple of 8, at least 8 (the super-block's mid width)."""
    return max(8, int(x + 4) // 8 * 8)


def _check_int(field: str, value: Any) -> None:
    if type(value) is not int:
        raise TypeError(f"{field} must be an int, got {type(value).__name__}")


def _check_width(field: str, value: int, lo: int, hi: int) -> None:
    _check_int(field, value)
    if value % 8 or not lo <= value <= hi:
        raise ValueError(f"{field}={value} not allowed; expected a multiple of 8 in {lo}-{hi}")


def _check_choice(field: str, value: int, allowed: tuple[int, ...]) -> None:
    _check_int(field, value)
    if value not in allowed:
        raise ValueError(
            f"{field}={value} not allowed; expected one of {', '.join(map(str, allowed))}"
        )


@dataclass(frozen=True)
class MBV2Stage:
    """One super-block ``E{expansion}K{kernel}(in, out_channels, stride, bottleneck, sub_layers)``.

    Validates the stage-independent fields; the per-stage ranges are checked by :class:`MBV2Arch`.
    """

    expansion: int
    kernel: int
    out_channels: int
    stride: int
    bottleneck: int
    sub_layers: int

    def __post_init__(self) -> None:
        _check_choice("expansion", self.expansion, EXPANSIONS)
        _check_choice("kernel", self.kernel, KERNELS)
        _check_choice("stride", self.stride, (1, 2))
        for field in ("out_channels", "bottleneck", "sub_layers"):
            _check_int(field, getattr(self, field))
        for field in ("out_channels", "bottleneck"):
            value = getattr(self, field)
            if value % 8 or value <= 0:
                raise ValueError(f"{field}={value} not allowed; expected a positive multiple of 8")

    @property
    def mid(self) -> int:
        """Channels inside each sub-layer: ``round8(bottleneck * expansion)``."""
        return round8(self.bottleneck * self.expansion)

    def encode(self) -> str:
        return (
            f"e{self.expansion}k{self.kernel}c{self.out_channels}s{self.stride}"
            f"b{self.bottleneck}n{self.sub_layers}"
        )


@dataclass(frozen=True)
class MBV2Arch:
    """A network of the space: resolution, stem width, seven stages, head width and SE on/off.

    Raises:
        ValueError: a field outside its range, naming the field, the value and the range.
    """

    resolution: int
    stem: int
    stages: tuple[MBV2Stage, ...]
    head: int
    se: bool = True

    def __post_init__(self) -> None:
        _check_choice("resolution", self.resolution, RESOLUTIONS)
        _check_width("stem", self.stem, *STEM_RANGE)
        _check_width("head", self.head, *HEAD_RANGE)
        if not isinstance(self.se, bool):
            raise TypeError(f"se must be a bool, got {type(self.se).__name__}")
        if not isinstance(self.stages, tuple) or not all(
            isinstance(s, MBV2Stage) for s in self.stages
        ):
            raise TypeError("stages must be a tuple of MBV2Stage")
        if len(self.stages) != NUM_STAGES:
            raise ValueError(f"an architecture has {NUM_STAGES} stages, got {len(self.stages)}")
        for i, stage in enumerate(self.stages):
            lo, hi = WIDTHS[i]
            _check_width(f"stages[{i}].out_channels", stage.out_channels, lo, hi)
            _check_width(f"stages[{i}].bottleneck", stage.bottleneck, lo, hi)
            lo, hi = SUB_LAYERS[i]
            if not lo <= stage.sub_layers <= hi:
                raise ValueError(
                    f"stages[{i}].sub_layers={stage.sub_layers} outside stage {i}'s range {lo}-{hi}"
                )
        if self.strides.count(2) != NUM_STRIDE2:
            raise ValueError(
                f"exactly {NUM_STRIDE2} stages must have stride 2 (the stem is the fifth, total "
                f"stride 32), got strides {self.strides}"
            )

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(s.stride for s in self.stages)

    def encode(self) -> str:
        """The canonical string (see the module docstring)."""
        stages = "_".join(s.encode() for s in self.stages)
        return (
            f"r{self.resolution}_s{self.stem}_{stages}_h{self.head}_{'se' if self.se else 'nose'}"
        )

    @classmethod
    def decode(cls, text: str) -> MBV2Arch:
        """Parse the canonical string; ``ValueError`` naming the bad token or field."""
        if not isinstance(text, str):
            raise TypeError(f"an architecture string must be str, got {type(text).__name__}")
        tokens = text.strip().split("_")
        if len(tokens) != NUM_STAGES + 4:
            raise ValueError(
                f"malformed architecture {text!r}: expected {NUM_STAGES + 4} '_'-separated tokens "
                f"{_ARCH_FORM}, got {len(tokens)}"
            )
        scalars = {}
        for token, key, name in (
            (tokens[0], "r", "resolution"),
            (tokens[1], "s", "stem"),
            (tokens[-2], "h", "head"),
        ):
            m = _SCALAR_TOKEN.match(token)
            if not m or m.group(1) != key:
                raise ValueError(f"bad {name} token {token!r} in {text!r}: expected {key}<{name}>")
            scalars[name] = int(m.group(2))
        if tokens[-1] not in ("se", "nose"):
            raise ValueError(f"bad SE token {tokens[-1]!r} in {text!r}: expected 'se' or 'nose'")
        stages = []
        for i, token in enumerate(tokens[2:-2]):
            m = _STAGE_TOKEN.match(token)
            if not m:
                raise ValueError(
                    f"bad stage token {token!r} (stage {i}) in {text!r}: expected {_STAGE_FORM}"
                )
            e, k, c, s, b, n = (int(g) for g in m.groups())
            try:
                stages.append(MBV2Stage(e, k, c, s, b, n))
            except ValueError as err:
                raise ValueError(f"stage {i} (token {token!r}): {err}") from None
        return cls(
            stem=scalars["stem"],
            stages=tuple(stages),
            head=scalars["head"],
            resolution=scalars["resolution"],
            se=tokens[-1] == "se",
        )

    def __str__(self) -> str:
        return self.encode()


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
    ) -> None:
        strides = tuple(strides)
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
            RESOLUTIONS,
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
        )

    def __repr__(self) -> str:
        return (
            f"MBV2Space(max_flops={self.max_flops}, max_params={self.max_params}, "
            f"num_classes={self.num_classes}, strides={self.strides}, se={self.se})"
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

    def flops(self, arch: MBV2Arch, num_classes: int | None = None) -> int:
        """Multiply-accumulates of conv and linear layers (``FlopCounterMode`` total / 2)."""
        return self.cost(arch, num_classes)[0]

    def params(self, arch: MBV2Arch, num_classes: int | None = None) -> int:
        return self.cost(arch, num_classes)[1]

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
        while not self._fits_values(values, self.strides, self.se):
            lowerable = [d for d, i in enumerate(idx) if i > 0]
            d = lowerable[int(rng.integers(len(lowerable)))]
            idx[d] = int(rng.integers(idx[d]))
            values[d] = self._options[d][idx[d]]
        return self._to_arch(values)

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
        return MBV2Net(arch, num_classes=nc, **kwargs)

    def timm_spec(self, arch: MBV2Arch) -> tuple[str, dict[str, Any]]:
        return "wrcor_mbv2", {"arch": arch.encode()}
