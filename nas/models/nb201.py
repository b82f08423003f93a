"""The NAS-Bench-201 CIFAR network (the benchmark's ``TinyNetwork`` with a fixed cell).

Built exactly as the benchmark builds it, so parameter counts match the benchmark's table:
a 3x3 conv stem to ``C`` channels + BN; three stages of ``N`` cells at ``C``/``2C``/``4C``
channels with the benchmark's residual reduction block between stages; BN-ReLU, global average
pooling, linear classifier. Convolution ops are ReLU -> conv -> BN.

Registered with timm as ``nb201``: ``timm.create_model("nb201", arch="|nor_conv_3x3~0|+...|")``
builds any cell (:mod:`nas.arch.nb201` documents the string); without ``arch`` it builds the
benchmark's ResNet-like cell (:data:`nas.arch.nb201.ARCH_RESNET`). Feature levels
(``features_only=True``, :meth:`NB201Network.forward_intermediates`) are the three stage
outputs, at reductions 1, 2 and 4.
"""

# No `from __future__ import annotations`: torch.fx copies forward's annotations into the code it
# generates, and TorchScript cannot resolve them as strings.
from typing import Any

import torch
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from torch import nn

from nas.arch.nb201 import ARCH_RESNET, EDGES, OPS, NB201Arch
from nas.models._ops import ReLUConvBN
from nas.models._timm import TimmNet, build_timm, check_num_classes, cifar_cfg, resolve_arch


class Zero(nn.Module):
    """The ``none`` op: multiplies by zero (keeps shape, device and dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    """The module of op ``name`` (one of :data:`nas.arch.nb201.OPS`) at width ``channels``."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}; allowed: {', '.join(OPS)}")


class Cell(nn.Module):
    """A 4-node DAG cell: node j is the sum of the ops on every edge i -> j."""

    def __init__(self, ops: tuple[str, ...], channels: int) -> None:
        super().__init__()
        if len(ops) != len(EDGES):
            raise ValueError(f"a cell has {len(EDGES)} edges, got {len(ops)} ops")
        self.ops = ops
        self.edges = nn.ModuleList(make_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the edges in EDGES order, written out so TorchScript and torch.fx see constant indices
        e = self.edges
        n1 = e[0](x)
        n2 = e[1](x) + e[2](n1)
        return e[3](x) + e[4](n1) + e[5](n2)


class ResNetReduction(nn.Module):
    """The benchmark's residual block between stages (stride 2, doubles the channels)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, 1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(TimmNet):
    """NAS-Bench-201 network for one cell, with timm's model interface.

    Args:
        ops: the six edge ops in canonical order (see :data:`nas.arch.nb201.EDGES`).
        num_classes: classifier outputs; 0 gives pooled features.
        channels: stem / first-stage width ``C`` (the benchmark uses 16).
        cells_per_stage: ``N`` (the benchmark uses 5).
        in_chans: input channels.
        drop_rate: dropout before the classifier.
        global_pool: timm pooling type (``"avg"``, ``"max"``, ``"avgmax"``, ``"catavgmax"``,
            or ``""`` for none, which needs ``num_classes=0``).
    """

    family = "nb201"

    def __init__(
        self,
        ops: tuple[str, ...],
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if cells_per_stage < 1:
            raise ValueError(f"cells_per_stage must be >= 1, got {cells_per_stage}")
        self.ops = tuple(ops)
        self._init_timm(num_classes, in_chans, drop_rate, 0.0)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        cells: list[nn.Module] = []
        ends: list[int] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                cells.append(ResNetReduction(c, c * 2))
                c *= 2
            cells.extend(Cell(self.ops, c) for _ in range(cells_per_stage))
            ends.append(len(cells) - 1)
        # a Sequential (same state-dict keys as a list) so timm's feature wrappers can flatten it
        self.cells = nn.Sequential(*cells)
        #: Index in ``cells`` of each stage's last cell: the feature levels.
        self.stage_ends = tuple(ends)
        self.feature_info = [
            dict(num_chs=channels * 2**s, reduction=2**s, module=f"cells.{end}")
            for s, end in enumerate(ends)
        ]
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self._init_head(c, num_classes, global_pool, drop_rate)

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the 17 cells (reductions included), then the final BN-ReLU."""
        return [*self.cells, self.lastact]

    def feature_blocks(self) -> list[nn.Module]:
        """Sequential blocks whose outputs are the network's successive feature maps: the stem, then the 17 cells."""
        return [self.stem, *self.cells]

    def _forward_levels(
        self, x: torch.Tensor, take: list[int], stop: int | None, norm: bool, only: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self._sequential_levels(
            x, self.cells, take, stop, only, final=self.lastact, final_norm=norm
        )

    def _prune(self, end: int, prune_norm: bool, prune_head: bool) -> bool:
        """Later cells go, and the final BN-ReLU with them or with ``prune_norm``."""
        truncated = end < len(self.cells) - 1
        self.cells = self.cells[: end + 1]
        if prune_norm or truncated:
            self.lastact = nn.Identity()
        return truncated

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.cells, x)
        else:
            x = self.cells(x)
        return self.lastact(x)


#: timm's pretrained configurations (CIFAR-10 input and normalization; no weights).
default_cfgs = generate_default_cfgs({"nb201": cifar_cfg()})


def build(
    ops: tuple[str, ...], variant: str = "nb201", pretrained: bool = False, **kwargs: Any
) -> NB201Network:
    """The network of ``ops`` through timm's ``build_model_with_cfg`` (the pretrained config of
    ``variant``; ``features_only`` and the other timm creation options in ``kwargs``)."""
    feature_cfg = dict(out_indices=(0, 1, 2), flatten_sequential=True)
    return build_timm(NB201Network, variant, pretrained, feature_cfg, ops=ops, **kwargs)


@register_model
def nb201(pretrained: bool = False, arch: str | NB201Arch | None = None, **kwargs: Any) -> NB201Network:
    """NAS-Bench-201 network for the cell ``arch`` (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` or an
    :class:`~nas.arch.nb201.NB201Arch`); without one, the benchmark's ResNet-like cell."""
    value = ARCH_RESNET if arch is None else arch
    cell = resolve_arch(value, NB201Arch, NB201Arch.decode, "arch", "a cell string or an NB201Arch")
    return build(cell.ops, "nb201", pretrained, **kwargs)
