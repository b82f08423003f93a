"""The NAS-Bench-201 CIFAR network (the benchmark's ``TinyNetwork`` with a fixed cell).

Built exactly as the benchmark builds it, so parameter counts match the benchmark's table:
a 3x3 conv stem to ``C`` channels + BN; three stages of ``N`` cells at ``C``/``2C``/``4C``
channels with the benchmark's residual reduction block between stages; BN-ReLU, global average
pooling, linear classifier. Convolution ops are ReLU -> conv -> BN.

Registered with timm as ``nb201``: ``timm.create_model("nb201", arch="|nor_conv_3x3~0|+...|")``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Cell edges (to_node, from_node) in canonical string order.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv -> BN, the benchmark's convolution op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: multiplies by zero (keeps shape, device and dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
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
        nodes = [x]
        for to_node in (1, 2, 3):
            total = None
            for k, (j, i) in enumerate(EDGES):
                if j == to_node:
                    out = self.edges[k](nodes[i])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]


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


class NB201Network(nn.Module):
    """NAS-Bench-201 network for one cell, with timm's model interface.

    Args:
        ops: the six edge ops in canonical order (see :data:`EDGES`).
        num_classes: classifier outputs; 0 gives pooled features.
        channels: stem / first-stage width ``C`` (the benchmark uses 16).
        cells_per_stage: ``N`` (the benchmark uses 5).
        in_chans: input channels.
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        ops: tuple[str, ...],
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"unexpected argument(s) for the nb201 network: {sorted(kwargs)}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.ops = tuple(ops)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = 0.0
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        cells: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                cells.append(ResNetReduction(c, c * 2))
                c *= 2
            cells.extend(Cell(self.ops, c) for _ in range(cells_per_stage))
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.num_features = c
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = dict(
            input_size=(in_chans, 32, 32),
            crop_pct=1.0,
            interpolation="bilinear",
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            first_conv="stem.0",
            classifier="classifier",
            num_classes=num_classes,
        )
        self.default_cfg = self.pretrained_cfg

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the 17 cells (reductions included), then the final BN-ReLU."""
        return [*self.cells, self.lastact]

    def feature_blocks(self) -> list[nn.Module]:
        """Sequential blocks whose outputs are the network's successive feature maps: the stem, then the 17 cells."""
        return [self.stem, *self.cells]

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "avg"):
            raise ValueError(f"nb201 supports global_pool 'avg' only, got {global_pool!r}")
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.lastact(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        x = self.head_drop(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def nb201(pretrained: bool = False, arch: str | None = None, **kwargs: Any) -> NB201Network:
    """NAS-Bench-201 network for the cell string ``arch`` (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``)."""
    if pretrained:
        raise ValueError("nb201 networks have no pretrained weights; use pretrained=False")
    if arch is None:
        raise ValueError("nb201 needs arch='|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' (a cell string)")
    from nas.spaces.nb201 import parse_cell

    for key in TIMM_INTERNAL_KWARGS:
        kwargs.pop(key, None)
    return NB201Network(parse_cell(arch), **kwargs)


#: Arguments timm's ``create_model`` passes to every entry point that a plain model ignores.
TIMM_INTERNAL_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
