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
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
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
        global_pool: timm pooling type (``"avg"``, the benchmark's, ``"max"``, ``"avgmax"``,
            ``"catavgmax"``, or ``""`` for none, which needs ``num_classes=0``).
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
        global_pool: str = "avg",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"unexpected argument(s) for the nb101 network: {sorted(kwargs)}")
        if not isinstance(arch, NB101Arch):
            raise TypeError(f"arch must be an NB101Arch, got {type(arch).__name__}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        for name, value in (
            ("stem_channels", stem_channels),
            ("num_stacks", num_stacks),
            ("cells_per_stack", cells_per_stack),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.arch = arch.pruned()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = 0.0
        self.grad_checkpointing = False
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
        self.num_features = self.head_hidden_size = c
        self.global_pool, self.classifier = create_classifier(c, num_classes, global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        # networks built directly (not through timm) still describe their input
        self.pretrained_cfg = self.default_cfg = _cfg(
            input_size=(in_chans, 32, 32), num_classes=num_classes
        )

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the stem, then every cell and down-sampling max-pool in
        network order (12 for the benchmark: the pools hold no activation but keep their place)."""
        return [self.stem, *self.layers]

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
        """The stack outputs (timm's interface), and the final features unless ``intermediates_only``.

        Args:
            x: input images.
            indices: feature levels to return: the last ``n`` if an int, all if None, else
                the listed levels (negative from the end).
            norm: accepted for timm's interface; the network has no final norm.
            stop_early: skip the layers after the last level taken.
            output_fmt: ``"NCHW"``, the only layout.
            intermediates_only: return only the list of intermediates.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"nb101 features are NCHW only, got output_fmt={output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        take = [self.stage_ends[i] for i in take_indices]
        layers = self.layers
        if stop_early and not torch.jit.is_scripting():  # TorchScript cannot slice a Sequential
            layers = self.layers[: self.stage_ends[max_index] + 1]
        intermediates = []
        x = self.stem(x)
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in take:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the layers after the last level in ``indices`` (timm's interface); the kept levels.

        The pooling and classifier go with ``prune_head`` or when layers go (they are sized for
        the last stack); ``prune_norm`` has nothing to remove.
        """
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        end = self.stage_ends[max_index]
        truncated = end < len(self.layers) - 1
        self.layers = self.layers[: end + 1]
        if truncated:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or truncated:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.layers, x)
        return self.layers(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    cfg = dict(
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
    )
    cfg.update(kwargs)
    return cfg


#: timm's pretrained configurations (CIFAR-10 input and normalization; no weights).
default_cfgs = generate_default_cfgs({"nb101": _cfg()})


def build(
    arch: NB101Arch, variant: str = "nb101", pretrained: bool = False, **kwargs: Any
) -> NB101Network:
    """The network of ``arch`` through timm's ``build_model_with_cfg`` (the pretrained config of
    ``variant``; ``features_only`` and the other timm creation options in ``kwargs``)."""
    if pretrained:
        raise ValueError(f"{variant} networks have no pretrained weights; use pretrained=False")
    feature_cfg = dict(
        out_indices=tuple(range(kwargs.get("num_stacks", 3))), flatten_sequential=True
    )
    feature_cfg.update(kwargs.pop("feature_cfg", None) or {})
    return build_model_with_cfg(
        NB101Network, variant, pretrained, arch=arch, feature_cfg=feature_cfg, **kwargs
    )


@register_model
def nb101(
    pretrained: bool = False, arch: str | NB101Arch | None = None, **kwargs: Any
) -> NB101Network:
    """NAS-Bench-101 network for the cell ``arch`` (its string form or an
    :class:`~nas.arch.nb101.NB101Arch`); without one, the README's Inception-like cell."""
    if arch is None:
        arch = decode(DEFAULT_ARCH)
    elif isinstance(arch, str):
        arch = decode(arch)
    elif not isinstance(arch, NB101Arch):
        raise TypeError(f"arch must be a cell string or an NB101Arch, got {type(arch).__name__}")
    return build(arch, "nb101", pretrained, **kwargs)
