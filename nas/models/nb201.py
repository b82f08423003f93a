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
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from nas.arch.nb201 import ARCH_RESNET, EDGES, OPS, NB201Arch


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


class NB201Network(nn.Module):
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
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if cells_per_stage < 1:
            raise ValueError(f"cells_per_stage must be >= 1, got {cells_per_stage}")
        self.ops = tuple(ops)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = 0.0
        self.grad_checkpointing = False
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
        self.num_features = self.head_hidden_size = c
        self.global_pool, self.classifier = create_classifier(c, num_classes, global_pool)
        self.head_drop = nn.Dropout(drop_rate)

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the 17 cells (reductions included), then the final BN-ReLU."""
        return [*self.cells, self.lastact]

    def feature_blocks(self) -> list[nn.Module]:
        """Sequential blocks whose outputs are the network's successive feature maps: the stem, then the 17 cells."""
        return [self.stem, *self.cells]

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each cell's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier with ``num_classes`` outputs (0: none); pooling kept unless given."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        pool = self.global_pool.pool_type if global_pool is None else global_pool
        self.global_pool, self.classifier = create_classifier(self.num_features, num_classes, pool)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The stage outputs (timm's interface), and the final features unless ``intermediates_only``.

        Args:
            x: input images.
            indices: feature levels to return: the last ``n`` if an int, all if None, else
                the listed levels (negative from the end).
            norm: apply the final BN-ReLU to the last stage's output.
            stop_early: skip the cells after the last level taken.
            output_fmt: ``"NCHW"``, the only layout.
            intermediates_only: return only the list of intermediates.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"nb201 features are NCHW only, got output_fmt={output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        take = [self.stage_ends[i] for i in take_indices]
        last_cell = self.stage_ends[-1]
        cells = self.cells
        if stop_early and not torch.jit.is_scripting():  # TorchScript cannot slice a Sequential
            cells = self.cells[: self.stage_ends[max_index] + 1]
        intermediates = []
        x = self.stem(x)
        i = -1
        for i, cell in enumerate(cells):
            x = cell(x)
            if i in take:
                intermediates.append(self.lastact(x) if norm and i == last_cell else x)
        if intermediates_only:
            return intermediates
        if i == last_cell:
            x = self.lastact(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the layers after the last level in ``indices`` (timm's interface); the kept levels.

        The final BN-ReLU goes with ``prune_norm`` or when later cells go; the classifier and
        pooling go with ``prune_head`` or when cells go (they are sized for the last stage).
        """
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        end = self.stage_ends[max_index]
        truncated = end < len(self.cells) - 1
        self.cells = self.cells[: end + 1]
        if prune_norm or truncated:
            self.lastact = nn.Identity()
        if truncated:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or truncated:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.cells, x)
        else:
            x = self.cells(x)
        return self.lastact(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return dict(
        url="",
        num_classes=10,
        input_size=(3, 32, 32),
        pool_size=(8, 8),
        crop_pct=1.0,
        interpolation="bilinear",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        first_conv="stem.0",
        classifier="classifier",
        **kwargs,
    )


#: timm's pretrained configurations (CIFAR-10 input and normalization; no weights).
default_cfgs = generate_default_cfgs({"nb201": _cfg()})


def build(
    ops: tuple[str, ...], variant: str = "nb201", pretrained: bool = False, **kwargs: Any
) -> NB201Network:
    """The network of ``ops`` through timm's ``build_model_with_cfg`` (the pretrained config of
    ``variant``; ``features_only`` and the other timm creation options in ``kwargs``)."""
    if pretrained:
        raise ValueError(f"{variant} networks have no pretrained weights; use pretrained=False")
    return build_model_with_cfg(
        NB201Network,
        variant,
        pretrained,
        ops=ops,
        feature_cfg=dict(out_indices=(0, 1, 2), flatten_sequential=True),
        **kwargs,
    )


@register_model
def nb201(pretrained: bool = False, arch: str | NB201Arch | None = None, **kwargs: Any) -> NB201Network:
    """NAS-Bench-201 network for the cell ``arch`` (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` or an
    :class:`~nas.arch.nb201.NB201Arch`); without one, the benchmark's ResNet-like cell."""
    if arch is None:
        arch = ARCH_RESNET
    elif isinstance(arch, str):
        arch = NB201Arch.decode(arch)
    elif not isinstance(arch, NB201Arch):
        raise TypeError(f"arch must be a cell string or an NB201Arch, got {type(arch).__name__}")
    return build(arch.ops, "nb201", pretrained, **kwargs)
