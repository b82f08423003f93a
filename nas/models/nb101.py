"""The NAS-Bench-101 CIFAR network (the benchmark's ``model_builder`` with a fixed cell).

Built exactly as the benchmark builds it, so parameter counts equal the dataset's
``trainable_parameters``: a 3x3 conv-BN-ReLU stem to 128 channels; three stacks of three cells,
each stack after the first opening with a 2x2 max-pool (stride 2) and doubling the channels;
global average pooling; a dense classifier (with bias). Convolutions have no bias; BatchNorm
uses the benchmark's epsilon 1e-5 and moving-average decay 0.997 (PyTorch momentum 0.003).

Inside a cell (pruned first), the output channels are split among the vertices feeding the
output (:func:`vertex_channels`); an interior vertex sums its interior inputs (sliced to its
width) and, when the input feeds it, a 1x1 conv-BN-ReLU projection of the cell input; the output
concatenates its interior inputs and adds a projection of the cell input when the input feeds
the output directly (a cell of input and output only is that projection).

Registered with timm as ``nb101``: ``timm.create_model("nb101", arch="<rows>;<ops>")`` (the
string form of :mod:`nas.arch.nb101`); without ``arch`` it builds :data:`DEFAULT_ARCH`.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

from nas.arch.nb101 import NB101Arch, decode

#: The benchmark's BatchNorm settings (``base_ops.BN_EPSILON``, ``BN_MOMENTUM`` = 0.997 decay).
BN_EPS = 1e-5
BN_MOMENTUM = 1.0 - 0.997
#: The Inception-like cell of the benchmark's README (2,694,282 trainable parameters).
DEFAULT_ARCH = (
    "0111010/0000001/0000001/0000100/0000001/0000001/0000000;"
    "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output"
)


def vertex_channels(c_in: int, c_out: int, matrix: tuple[tuple[int, ...], ...]) -> list[int]:
    """Channels of every vertex of a pruned cell (the benchmark's ``compute_vertex_channels``).

    The output's ``c_out`` channels are split evenly among the vertices feeding it, the first
    ``c_out % fan_in`` of them taking one extra; every other interior vertex takes the largest
    width among the interior vertices it feeds. The input keeps ``c_in``.
    """
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[-1] = c_in, c_out
    if n == 2:
        return channels
    fan_in = sum(matrix[v][n - 1] for v in range(1, n - 1))
    base, extra = divmod(c_out, fan_in)
    for v in range(1, n - 1):
        if matrix[v][n - 1]:
            channels[v] = base + (1 if extra > 0 else 0)
            extra -= 1 if extra > 0 else 0
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v][dst]:
                    channels[v] = max(channels[v], channels[dst])
        assert channels[v] > 0, f"vertex {v} got no channels"
    return channels


class ConvBNReLU(nn.Sequential):
    """Conv (no bias, 'same' padding, stride 1) -> BN -> ReLU, the benchmark's ``conv_bn_relu``."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=False),
        )


def make_op(name: str, channels: int) -> nn.Module:
    if name == "conv3x3-bn-relu":
        return ConvBNReLU(channels, channels, 3)
    if name == "conv1x1-bn-relu":
        return ConvBNReLU(channels, channels, 1)
    if name == "maxpool3x3":
        # TF 'same' max pooling ignores the padded border, as -inf padding does.
        return nn.MaxPool2d(3, stride=1, padding=1)
    raise ValueError(f"unknown NAS-Bench-101 op {name!r}")


class Cell(nn.Module):
    """One module of a (pruned) NAS-Bench-101 cell, from ``c_in`` to ``c_out`` channels."""

    def __init__(self, arch: NB101Arch, c_in: int, c_out: int) -> None:
        super().__init__()
        arch = arch.pruned()
        self.matrix = arch.matrix
        n = len(self.matrix)
        self.channels = vertex_channels(c_in, c_out, self.matrix)
        # Index t holds vertex t's op / the projection of the input into vertex t (or Identity).
        self.vertex_ops = nn.ModuleList(
            [nn.Identity()] + [make_op(arch.ops[t], self.channels[t]) for t in range(1, n - 1)]
        )
        self.projections = nn.ModuleList(
            ConvBNReLU(c_in, self.channels[t], 1) if self.matrix[0][t] else nn.Identity()
            for t in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, n = self.matrix, len(self.matrix)
        tensors = [x]
        concat = []
        for t in range(1, n - 1):
            width = self.channels[t]
            # Wider sources (one extra channel from an uneven split) are sliced to this width.
            inputs = [tensors[s][:, :width] for s in range(1, t) if m[s][t]]
            if m[0][t]:
                inputs.append(self.projections[t](x))
            total = inputs[0]
            for extra in inputs[1:]:
                total = total + extra
            out = self.vertex_ops[t](total)
            tensors.append(out)
            if m[t][n - 1]:
                concat.append(out)
        if not concat:
            return self.projections[n - 1](x)
        out = concat[0] if len(concat) == 1 else torch.cat(concat, dim=1)
        if m[0][n - 1]:
            out = out + self.projections[n - 1](x)
        return out


class NB101Network(nn.Module):
    """NAS-Bench-101 network for one cell, with timm's model interface.

    Args:
        arch: the cell (any valid spec; it is pruned).
        num_classes: classifier outputs; 0 gives pooled features.
        stem_channels: stem width (the benchmark's 128).
        num_stacks: stacks of cells (3).
        cells_per_stack: cells per stack (3).
        in_chans: input channels.
        drop_rate: dropout before the classifier (the benchmark has none).
    """

    def __init__(
        self,
        arch: NB101Arch,
        num_classes: int = 10,
        stem_channels: int = 128,
        num_stacks: int = 3,
        cells_per_stack: int = 3,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"unexpected argument(s) for the nb101 network: {sorted(kwargs)}")
        if not isinstance(arch, NB101Arch):
            raise TypeError(f"arch must be an NB101Arch, got {type(arch).__name__}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        for name, value in (("stem_channels", stem_channels), ("num_stacks", num_stacks), ("cells_per_stack", cells_per_stack)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.arch = arch.pruned()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = 0.0
        self.stem = ConvBNReLU(in_chans, stem_channels, 3)
        layers: list[nn.Module] = []
        c = stem_channels
        for stack in range(num_stacks):
            c_out = c
            if stack > 0:
                # TF 'same' 2x2/2 pooling: ceil(H / 2) outputs, the last window clipped.
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
                c_out = c * 2
            for _ in range(cells_per_stack):
                layers.append(Cell(self.arch, c, c_out))
                c = c_out
        self.layers = nn.ModuleList(layers)
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
        """Depth-ordered layers for WRCor: the stem, then every cell and down-sampling max-pool in
        network order (12 for the benchmark: the pools hold no activation but keep their place)."""
        return [self.stem, *self.layers]

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "avg"):
            raise ValueError(f"nb101 supports global_pool 'avg' only, got {global_pool!r}")
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        x = self.head_drop(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def nb101(pretrained: bool = False, arch: str | NB101Arch | None = None, **kwargs: Any) -> NB101Network:
    """NAS-Bench-101 network for the cell string ``arch`` (default: the README's Inception-like cell)."""
    if pretrained:
        raise ValueError("nb101 networks have no pretrained weights; use pretrained=False")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's own creation arguments
        kwargs.pop(key, None)
    cell = arch if isinstance(arch, NB101Arch) else decode(DEFAULT_ARCH if arch is None else arch)
    return NB101Network(cell, **kwargs)
