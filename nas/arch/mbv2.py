"""Networks of the MobileNetV2-like (Zen-NAS) ImageNet space: value types and their grammar.

A network is a 3x3 stride-2 stem, seven stages of inverted-residual super-blocks, a 1x1 head
conv, global average pooling and a linear classifier (built by :mod:`nas.models.mbv2`). The
input resolution is part of the architecture.

Canonical string (11 ``_``-separated tokens, all numbers in decimal without leading zeros)::

    r<resolution>_s<stem>_<stage 0>_..._<stage 6>_h<head>_<se|nose>
    stage token: e<expansion>k<kernel>c<out_channels>s<stride>b<bottleneck>n<sub_layers>

The paper's 600M network (:data:`ARCH_600M`)::

    r224_s48_e2k7c32s2b40n2_e2k7c32s2b48n3_e6k7c64s1b40n3_e6k7c88s2b40n4_e6k7c104s1b56n6_e6k5c152s2b192n6_e6k5c240s1b136n2_h1264_se

Ranges (every width a multiple of 8):

- resolution in {192, 224, 256, 288, 320}; stem 16-48; head 128-1536;
- per stage: expansion in {1, 2, 4, 6}, kernel in {3, 5, 7}, stride in {1, 2} with exactly
  four stride-2 stages (the stem is the fifth: total stride 32);
- per stage ``i`` (:data:`SUB_LAYERS`, :data:`WIDTHS`): sub-layers 1-2, 2-3, 2-3, 2-4, 2-6, 2-6,
  1-2 and out/bottleneck channels 16-64, 16-96, 24-128, 32-192, 32-256, 48-384, 64-512 (our
  choice: each range holds the 600M network's widths with room on both sides).

Example:
    >>> from nas.arch.mbv2 import ARCH_600M, PAPER_STRIDES, MBV2Arch
    >>> MBV2Arch.decode(ARCH_600M.encode()) == ARCH_600M and ARCH_600M.strides == PAPER_STRIDES
    True
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

#: The paper's resolutions (the space's default); an architecture may take any positive multiple
#: of :data:`TOTAL_STRIDE` (e.g. 32 for CIFAR-sized images).
RESOLUTIONS = (192, 224, 256, 288, 320)
TOTAL_STRIDE = 32
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
        _check_int("resolution", self.resolution)
        if self.resolution < TOTAL_STRIDE or self.resolution % TOTAL_STRIDE:
            raise ValueError(
                f"resolution={self.resolution} not allowed; expected a positive multiple of {TOTAL_STRIDE} "
                f"(the network's total stride), e.g. one of {', '.join(map(str, RESOLUTIONS))}"
            )
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


#: The paper's 600M-MACs network (with SE), timm's ``wrcor_600m``.
ARCH_600M = MBV2Arch.decode(
    "r224_s48_e2k7c32s2b40n2_e2k7c32s2b48n3_e6k7c64s1b40n3_e6k7c88s2b40n4_e6k7c104s1b56n6"
    "_e6k5c152s2b192n6_e6k5c240s1b136n2_h1264_se"
)
#: The same network without squeeze-excitation, timm's ``wrcor_600m_nose``.
ARCH_600M_NOSE = dataclasses.replace(ARCH_600M, se=False)
#: The named networks: timm model name -> architecture.
NAMED_ARCHS: dict[str, MBV2Arch] = {"wrcor_600m": ARCH_600M, "wrcor_600m_nose": ARCH_600M_NOSE}
