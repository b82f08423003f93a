"""DARTS's CIFAR network (``NetworkCIFAR`` of quark0/darts, ``cnn/model.py`` and ``cnn/operations.py``).

A 3x3 conv stem to ``3 * C`` channels + BN; ``layers`` cells, the reduction cell at positions
``layers // 3`` and ``2 * layers // 3`` (each doubles the width and halves the side), every
other one a normal cell; global average pooling and a linear classifier on the last cell's
``4 * C_last`` channels. A cell preprocesses its two inputs to its width ``C``: the previous
cell's output with ReLU-conv1x1-BN, the one before with ReLU-conv1x1-BN too, or with
FactorizedReduce when the previous cell reduced (its input is then twice as large). Ops, as
DARTS's evaluation network builds them (affine BN everywhere):

- ``sep_conv_kxk``: (ReLU, depthwise kxk conv, 1x1 conv, BN) applied twice, the stride in the
  first depthwise conv;
- ``dil_conv_kxk``: ReLU, depthwise kxk conv with dilation 2, 1x1 conv, BN (once);
- ``max_pool_3x3`` / ``avg_pool_3x3`` (padding 1, ``count_include_pad=False``): no BN;
- ``skip_connect``: identity, or FactorizedReduce at stride 2.

In a reduction cell the edges from the two cell inputs have stride 2. Drop path (DARTS's
per-sample mask on every non-identity edge, training only) is ``drop_path_rate``, 0 by default.
The auxiliary head (DARTS's ``AuxiliaryHeadCIFAR`` after cell ``2 * layers // 3``) is built only
with ``auxiliary=True`` and is read with :meth:`DartsNetwork.forward_train`; ``forward`` returns
the main logits only.

Registered with timm as ``darts``: ``timm.create_model("darts")`` is DARTS V2 at DARTS's
evaluation configuration (36 channels, 20 cells; 3,349,342 parameters on CIFAR-10 without the
auxiliary head); ``genotype=`` takes any string form of :mod:`nas.arch.darts`. Feature levels
(``features_only=True``, :meth:`DartsNetwork.forward_intermediates`) are the outputs of the cells
before each reduction cell and of the last cell, at reductions 1, 2 and 4; a cell takes two
inputs, so the feature wrappers are timm's ``getter`` (the default) or ``hook``.
"""

# No `from __future__ import annotations`: torch.fx copies forward's annotations into the code it
# generates, and TorchScript cannot resolve them as strings.
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn
from torch.utils.checkpoint import checkpoint

from nas.arch.darts import DARTS_V2, DartsGenotype, parse
from nas.models._ops import ReLUConvBN
from nas.models._timm import (
    TimmNet,
    build_timm,
    check_args,
    check_num_classes,
    cifar_cfg,
    networks_unpretrained,
    resolve_arch,
)

#: DARTS's evaluation network on CIFAR-10 (``cnn/train.py``: ``--init_channels 36 --layers 20``).
TRAIN_CHANNELS = 36
TRAIN_LAYERS = 20
STEM_MULTIPLIER = 3


def check_size(channels: int, layers: int) -> None:
    """Refuse a width or depth the DARTS network cannot have (``ValueError`` naming it)."""
    if layers < 3:
        raise ValueError(
            f"layers must be >= 3 (reduction cells at layers//3 and 2*layers//3), got {layers}"
        )
    if channels < 2 or channels % 2:
        raise ValueError(
            f"channels must be an even number >= 2 (FactorizedReduce halves it), got {channels}"
        )


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convs (the second shifted by one pixel) concatenated, BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(
                f"FactorizedReduce needs an even number of output channels, got {c_out}"
            )
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def _relu_dw_pw_bn(
    c: int, kernel: int, stride: int, padding: int, dilation: int
) -> list[nn.Module]:
    return [
        nn.ReLU(inplace=False),
        nn.Conv2d(
            c, c, kernel, stride=stride, padding=padding, dilation=dilation, groups=c, bias=False
        ),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
    ]


class DilConv(nn.Sequential):
    """ReLU, depthwise conv with dilation 2, 1x1 conv, BN."""

    def __init__(self, c: int, kernel: int, stride: int) -> None:
        super().__init__(*_relu_dw_pw_bn(c, kernel, stride, kernel - 1, 2))


class SepConv(nn.Sequential):
    """DARTS's separable conv: (ReLU, depthwise conv, 1x1 conv, BN) twice, the stride in the first."""

    def __init__(self, c: int, kernel: int, stride: int) -> None:
        super().__init__(
            *_relu_dw_pw_bn(c, kernel, stride, kernel // 2, 1),
            *_relu_dw_pw_bn(c, kernel, 1, kernel // 2, 1),
        )


def make_op(name: str, channels: int, stride: int) -> nn.Module:
    """The DARTS op ``name`` at width ``channels`` and ``stride``."""
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return SepConv(channels, k, stride)
    if name.startswith("dil_conv_"):
        k = int(name[-1])
        return DilConv(channels, k, stride)
    raise ValueError(f"unknown DARTS op {name!r}")


def drop_path(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Zero whole samples with probability ``rate`` and rescale the rest (DARTS's ``drop_path``)."""
    keep = 1.0 - rate
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class Cell(nn.Module):
    """A DARTS cell: two preprocessed inputs, 4 nodes of two summed edges, the nodes concatenated."""

    family = "darts"

    def __init__(
        self,
        genotype: DartsGenotype,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        #: Per edge: the position of its input among the cell's states.
        self.inputs = [src for node in genotype.cell(reduction) for src, _ in node]
        self.edges = nn.ModuleList(
            make_op(op, channels, 2 if reduction and src < 2 else 1)
            for node in genotype.cell(reduction)
            for src, op in node
        )
        #: Per edge: whether drop path applies (every op but the identity).
        self.dropped = [not isinstance(op, nn.Identity) for op in self.edges]
        self.out_channels = len(genotype.cell(reduction)) * channels

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, drop_path_rate: float = 0.0
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_path_rate > 0
        first = states[0]  # a node's first edge, summed with its second
        for e, op in enumerate(self.edges):
            h = op(states[self.inputs[e]])
            if drop and self.dropped[e]:
                h = drop_path(h, drop_path_rate)
            if e % 2 == 0:
                first = h
            else:
                states.append(first + h)
        return torch.cat(states[2:], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary head (for an 8x8 input): pool 5/3, 1x1 conv 128, 2x2 conv 768, linear."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(TimmNet):
    """DARTS's CIFAR network for one genotype, with timm's model interface.

    Args:
        genotype: the cells.
        num_classes: classifier outputs; 0 gives pooled features.
        channels: the first cells' width ``C`` (stem: ``3 * C``).
        layers: number of cells (at least 3, so that both reductions exist).
        auxiliary: build DARTS's auxiliary head (read with :meth:`forward_train`).
        in_chans: input channels.
        drop_rate: dropout before the classifier.
        drop_path_rate: DARTS's drop-path probability on every non-identity edge (training only).
        global_pool: timm pooling type (``"avg"``, DARTS's, ``"max"``, ``"avgmax"``,
            ``"catavgmax"``, or ``""`` for none, which needs ``num_classes=0``).

    Raises:
        ValueError: ``layers`` < 3, ``channels`` < 1 or odd (FactorizedReduce halves it), or
            ``num_classes`` < 0.
    """

    family = "darts"

    def __init__(
        self,
        genotype: DartsGenotype,
        num_classes: int = 10,
        channels: int = TRAIN_CHANNELS,
        layers: int = TRAIN_LAYERS,
        auxiliary: bool = False,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        check_args(self.family, kwargs, "genotype", genotype, DartsGenotype, "a DartsGenotype")
        check_num_classes(num_classes)
        check_size(channels, layers)
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.genotype = genotype
        self._init_timm(num_classes, in_chans, drop_rate, drop_path_rate)
        self.reductions = (layers // 3, 2 * layers // 3)
        c_stem = STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
        )
        c_prev_prev, c_prev, c = c_stem, c_stem, channels
        cells: list[Cell] = []
        reduction_prev = False
        c_aux = c_prev
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                c *= 2
            cell = Cell(genotype, c_prev_prev, c_prev, c, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.out_channels
            if i == self.reductions[1]:
                c_aux = c_prev
        self.cells = nn.ModuleList(cells)
        #: Index in ``cells`` of each feature level: the cells before the reductions, the last.
        self.stage_ends = (self.reductions[0] - 1, self.reductions[1] - 1, layers - 1)
        self.feature_info = [
            dict(num_chs=cells[i].out_channels, reduction=2**s, module=f"cells.{i}")
            for s, i in enumerate(self.stage_ends)
        ]
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self._init_head(c_prev, num_classes, global_pool, drop_rate)
        # networks built directly (not through timm) still describe their input
        self.pretrained_cfg = self.default_cfg = cifar_cfg(
            input_size=(in_chans, 32, 32), num_classes=num_classes
        )

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the stem, then each cell (its preprocessing included)."""
        return [self.stem, *self.cells]

    def _features(
        self, x: torch.Tensor, take: list[int], last: int, with_aux: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """Run the cells up to index ``last``: the output, the auxiliary logits (with ``with_aux``,
        in training) and the outputs of the cells in ``take``."""
        s0 = s1 = self.stem(x)
        aux: torch.Tensor | None = None
        intermediates: list[torch.Tensor] = []
        for i, cell in enumerate(self.cells):
            # a condition, not a break: TorchScript unrolls the loop over a ModuleList
            if i <= last:
                # written out (no helper taking the cell) so TorchScript compiles it
                if self.grad_checkpointing and not torch.jit.is_scripting():
                    s0, s1 = s1, checkpoint(cell, s0, s1, self.drop_path_rate, use_reentrant=False)
                else:
                    s0, s1 = s1, cell(s0, s1, self.drop_path_rate)
                at_aux = with_aux and i == self.reductions[1] and self.training
                if at_aux and self.auxiliary_head is not None:
                    aux = self.auxiliary_head(s1)
                if i in take:
                    intermediates.append(s1)
        return s1, aux, intermediates

    def _forward_levels(
        self, x: torch.Tensor, take: list[int], stop: int | None, norm: bool, only: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        last = len(self.cells) - 1 if stop is None else stop
        s1, _, intermediates = self._features(x, take, last, False)
        return s1, intermediates

    def _prune(self, end: int, prune_norm: bool, prune_head: bool) -> bool:
        """Later cells go, the auxiliary head with its cell (there is no final norm to prune)."""
        truncated = end < len(self.cells) - 1
        self.cells = self.cells[: end + 1]
        if end < self.reductions[1]:
            self.auxiliary_head = None
        return truncated

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        no_levels: list[int] = []
        return self._features(x, no_levels, len(self.cells) - 1, True)[0]

    @torch.jit.ignore
    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, auxiliary logits)``; the latter is ``None`` without the head or in eval mode."""
        no_levels: list[int] = []
        features, aux, _ = self._features(x, no_levels, len(self.cells) - 1, True)
        return self.forward_head(features), aux


#: timm's pretrained configurations (CIFAR-10 input and normalization; no weights).
default_cfgs = generate_default_cfgs({"darts": cifar_cfg()})


def build(
    genotype: DartsGenotype, variant: str = "darts", pretrained: bool = False, **kwargs: Any
) -> DartsNetwork:
    """The network of ``genotype`` through timm's ``build_model_with_cfg`` (the pretrained config
    of ``variant``; ``features_only`` and the other timm creation options in ``kwargs``).

    Raises:
        ValueError: ``pretrained``, or a feature wrapper that chains modules on one tensor
            (``feature_cls`` ``"list"`` or ``"dict"``: a cell takes two inputs).
    """
    if pretrained:
        raise ValueError(networks_unpretrained(variant))
    feature_cfg = dict(out_indices=(0, 1, 2), feature_cls="getter")
    feature_cfg.update(kwargs.pop("feature_cfg", None) or {})
    feature_cls = kwargs.get("feature_cls", feature_cfg["feature_cls"])
    if isinstance(feature_cls, str) and feature_cls.lower() in ("list", "dict"):
        raise ValueError(
            f"{variant} cells take two inputs, so feature_cls={feature_cls!r} cannot chain them; "
            "use 'getter' or 'hook'"
        )
    return build_timm(DartsNetwork, variant, pretrained, feature_cfg, genotype=genotype, **kwargs)


@register_model
def darts(
    pretrained: bool = False, genotype: str | DartsGenotype | None = None, **kwargs: Any
) -> DartsNetwork:
    """DARTS's CIFAR network; default DARTS V2 at 36 channels and 20 cells (DARTS's evaluation network).

    Args:
        pretrained: unsupported (no weights are published in timm's format).
        genotype: a :class:`~nas.arch.darts.DartsGenotype` or any of its string forms (canonical,
            DARTS's ``Genotype(...)``, NASLib's compact list); ``None`` is DARTS V2.
        **kwargs: :class:`DartsNetwork` arguments (``channels``, ``layers``, ``auxiliary``, ...)
            and timm's creation options (``features_only``, ...).
    """
    value = DARTS_V2 if genotype is None else genotype
    expected = "a genotype string or a DartsGenotype"
    cells = resolve_arch(value, DartsGenotype, parse, "genotype", expected)
    return build(cells, "darts", pretrained, **kwargs)
