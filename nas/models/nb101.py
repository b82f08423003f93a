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
string form of :mod:`nas.arch.nb101`); without ``arch`` it builds :data:`DEFAULT_ARCH`. Feature
levels (``features_only=True``, :meth:`NB101Network.forward_intermediates`) are the outputs of
the stacks, at reductions 1, 2 and 4.
"""

# No `from __future__ import annotations`: torch.fx copies forward's annotations into the code it
# generates, and TorchScript cannot resolve them as strings.
from typing import Any

import torch
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from torch import nn

from nas.arch.nb101 import NB101Arch, decode
from nas.models._timm import (
    TimmNet,
    build_timm,
    check_args,
    check_num_classes,
    cifar_cfg,
    resolve_arch,
)

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


class Vertex(nn.Module):
    """One interior vertex of a cell: the sum of its inputs, then its op.

    Its inputs are the earlier interior vertices feeding it (sliced to its width: a wider source
    holds one extra channel from an uneven split) and, when the cell input feeds it, a 1x1
    conv-BN-ReLU projection of the cell input.
    """

    # typed here: TorchScript cannot infer the element type of an empty list
    sources: list[int]

    def __init__(
        self, op: nn.Module, width: int, sources: list[int], projection: nn.Module | None
    ) -> None:
        super().__init__()
        if not sources and projection is None:
            raise ValueError("a vertex needs at least one input")
        self.op = op
        self.width = width
        self.sources = sources
        self.projection = projection

    def forward(self, x: torch.Tensor, states: list[torch.Tensor]) -> torch.Tensor:
        inputs = [states[s][:, : self.width] for s in self.sources]
        if self.projection is not None:
            inputs.append(self.projection(x))
        total = inputs[0]
        for extra in inputs[1:]:
            total = total + extra
        return self.op(total)


class Cell(nn.Module):
    """One module of a (pruned) NAS-Bench-101 cell, from ``c_in`` to ``c_out`` channels."""

    # typed here: TorchScript cannot infer the element type of an empty list
    concat: list[int]

    def __init__(self, arch: NB101Arch, c_in: int, c_out: int) -> None:
        super().__init__()
        arch = arch.pruned()
        self.matrix = arch.matrix
        m, n = self.matrix, len(self.matrix)
        self.channels = vertex_channels(c_in, c_out, m)
        self.vertices = nn.ModuleList(
            Vertex(
                make_op(arch.ops[t], self.channels[t]),
                self.channels[t],
                [s for s in range(1, t) if m[s][t]],
                ConvBNReLU(c_in, self.channels[t], 1) if m[0][t] else None,
            )
            for t in range(1, n - 1)
        )
        #: Positions in the cell's states (the input is 0) of the vertices the output concatenates.
        self.concat = [t for t in range(1, n - 1) if m[t][n - 1]]
        self.out_projection = ConvBNReLU(c_in, c_out, 1) if m[0][n - 1] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for vertex in self.vertices:
            states.append(vertex(x, states))
        if self.out_projection is None:
            return torch.cat([states[t] for t in self.concat], dim=1)
        projected = self.out_projection(x)
        if len(self.concat) == 0:  # a cell of input and output only
            return projected
        return torch.cat([states[t] for t in self.concat], dim=1) + projected


class NB101Network(TimmNet):
    """NAS-Bench-101 network for one cell, with timm's model interface.

    Args:
        arch: the cell (any valid spec; it is pruned).
        num_classes: classifier outputs; 0 gives pooled features.
        stem_channels: stem width (the benchmark's 128).
        num_stacks: stacks of cells (3).
        cells_per_stack: cells per stack (3).
        in_chans: input channels.
        drop_rate: dropout before the classifier (the benchmark has none).
        global_pool: timm pooling type (``"avg"``, the benchmark's, ``"max"``, ``"avgmax"``,
            ``"catavgmax"``, or ``""`` for none, which needs ``num_classes=0``).
    """

    family = "nb101"

    def __init__(
        self,
        arch: NB101Arch,
        num_classes: int = 10,
        stem_channels: int = 128,
        num_stacks: int = 3,
        cells_per_stack: int = 3,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        check_args(self.family, kwargs, "arch", arch, NB101Arch, "an NB101Arch")
        check_num_classes(num_classes)
        for name, value in (
            ("stem_channels", stem_channels),
            ("num_stacks", num_stacks),
            ("cells_per_stack", cells_per_stack),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.arch = arch.pruned()
        self._init_timm(num_classes, in_chans, drop_rate, 0.0)
        self.stem = ConvBNReLU(in_chans, stem_channels, 3)
        layers: list[nn.Module] = []
        ends: list[int] = []
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
            ends.append(len(layers) - 1)
        # a Sequential (same state-dict keys as a list) so timm's feature wrappers can flatten it
        self.layers = nn.Sequential(*layers)
        #: Index in ``layers`` of each stack's last cell: the feature levels.
        self.stage_ends = tuple(ends)
        self.feature_info = [
            dict(num_chs=stem_channels * 2**s, reduction=2**s, module=f"layers.{end}")
            for s, end in enumerate(ends)
        ]
        self._init_head(c, num_classes, global_pool, drop_rate)
        # networks built directly (not through timm) still describe their input
        self.pretrained_cfg = self.default_cfg = cifar_cfg(
            input_size=(in_chans, 32, 32), num_classes=num_classes
        )

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the stem, then every cell and down-sampling max-pool in
        network order (12 for the benchmark: the pools hold no activation but keep their place)."""
        return [self.stem, *self.layers]

    def _forward_levels(
        self, x: torch.Tensor, take: list[int], stop: int | None, norm: bool, only: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self._sequential_levels(x, self.layers, take, stop, only)

    def _prune(self, end: int, prune_norm: bool, prune_head: bool) -> bool:
        """Later layers go (``prune_norm`` has nothing to remove: there is no final norm)."""
        truncated = end < len(self.layers) - 1
        self.layers = self.layers[: end + 1]
        return truncated

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.layers, x)
        return self.layers(x)


#: timm's pretrained configurations (CIFAR-10 input and normalization; no weights).
default_cfgs = generate_default_cfgs({"nb101": cifar_cfg()})


def build(
    arch: NB101Arch, variant: str = "nb101", pretrained: bool = False, **kwargs: Any
) -> NB101Network:
    """The network of ``arch`` through timm's ``build_model_with_cfg`` (the pretrained config of
    ``variant``; ``features_only`` and the other timm creation options in ``kwargs``)."""
    feature_cfg = dict(
        out_indices=tuple(range(kwargs.get("num_stacks", 3))), flatten_sequential=True
    )
    return build_timm(NB101Network, variant, pretrained, feature_cfg, arch=arch, **kwargs)


@register_model
def nb101(
    pretrained: bool = False, arch: str | NB101Arch | None = None, **kwargs: Any
) -> NB101Network:
    """NAS-Bench-101 network for the cell ``arch`` (its string form or an
    :class:`~nas.arch.nb101.NB101Arch`); without one, the README's Inception-like cell."""
    value = DEFAULT_ARCH if arch is None else arch
    cell = resolve_arch(value, NB101Arch, decode, "arch", "a cell string or an NB101Arch")
    return build(cell, "nb101", pretrained, **kwargs)
