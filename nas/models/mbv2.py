"""The MobileNetV2-like (Zen-NAS) ImageNet networks, as a timm model family.

A network of :class:`nas.arch.mbv2.MBV2Arch` (string form documented in
:mod:`nas.arch.mbv2`): 3x3 stride-2 stem conv-BN-ReLU; seven super-blocks of sub-layers
1x1 conv -> BN -> ReLU -> kxk depthwise conv -> BN -> ReLU -> [SE] -> 1x1 conv -> BN, added to
the shortcut and followed by a ReLU (sub-layer 0 has the block's stride and a 1x1 conv + BN
shortcut, the others an identity); 1x1 head conv-BN-ReLU; global average pooling; linear
classifier. BatchNorm eps is 1e-3 throughout. Every activation is an ``nn.ReLU`` module (not
in-place, so hooks see the pre-activation intact), SE gates are ``nn.Sigmoid``.

Registered with timm: ``timm.create_model("wrcor_mbv2", arch="r224_s48_...")`` for any
architecture (without ``arch``: the paper's 600M network, :data:`nas.arch.mbv2.ARCH_600M`), and
the named networks of :data:`nas.arch.mbv2.NAMED_ARCHS` (``wrcor_600m``: the paper's 600M
network with SE; ``wrcor_600m_nose``: the same without SE). Feature levels
(``features_only=True``, :meth:`MBV2Net.forward_intermediates`) are the outputs at reductions
2, 4, 8, 16 and 32: the stem or the last super-block at each reduction.
"""

# No `from __future__ import annotations`: torch.fx copies forward's annotations into the code it
# generates, and TorchScript cannot resolve them as strings.
from collections import OrderedDict
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from torch import nn

from nas.arch.mbv2 import ARCH_600M, NAMED_ARCHS, MBV2Arch
from nas.models._timm import TimmNet, build_timm, check_args, check_num_classes, resolve_arch

BN_EPS = 1e-3


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class ConvBnAct(nn.Sequential):
    """kxk conv (no bias) -> BN -> ReLU: the stem and the head."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                bn=_bn(c_out),
                act=nn.ReLU(),
            )
        )


class SqueezeExcite(nn.Module):
    """avgpool -> 1x1 conv to max(1, round(c/4)) -> BN -> ReLU -> 1x1 conv to c -> BN -> sigmoid, times input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = max(1, round(channels / 4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=False)
        self.bn1 = _bn(reduced)
        self.act = nn.ReLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=False)
        self.bn2 = _bn(channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act(self.bn1(self.conv_reduce(self.pool(x))))
        return x * self.gate(self.bn2(self.conv_expand(s)))


class SubLayer(nn.Module):
    """One inverted-residual sub-layer; ``project`` gives the 1x1 conv (with bias) + BN shortcut."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        mid: int,
        kernel: int,
        stride: int,
        se: bool,
        project: bool,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv_pw = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = _bn(mid)
        self.act1 = nn.ReLU()
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = _bn(mid)
        self.act2 = nn.ReLU()
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = _bn(c_out)
        if project:
            self.shortcut: nn.Module = nn.Sequential(
                OrderedDict(conv=nn.Conv2d(c_in, c_out, 1, stride, bias=True), bn=_bn(c_out))
            )
        else:
            assert c_in == c_out and stride == 1, "an identity shortcut needs equal shapes"
            self.shortcut = nn.Identity()
        # stochastic depth only where the shortcut carries the input unchanged
        self.drop_path = DropPath(drop_path) if drop_path > 0 and not project else nn.Identity()
        self.act_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        x = self.bn3(self.conv_pwl(self.se(x)))
        return self.act_out(shortcut + self.drop_path(x))


class MBV2Net(TimmNet):
    """A network of the MobileNetV2-like space, with timm's model interface.

    Args:
        arch: the architecture.
        num_classes: classifier outputs; 0 gives pooled features.
        in_chans: input channels.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the identity-shortcut sub-layers, rising linearly
            from 0 at the first sub-layer to ``drop_path_rate`` at the last.
        global_pool: timm pooling type (``"avg"``, ``"max"``, ``"avgmax"``, ``"catavgmax"``,
            or ``""`` for none, which needs ``num_classes=0``).
        device, dtype: where and in what type to create the parameters.
    """

    family = "mbv2"

    def __init__(
        self,
        arch: MBV2Arch,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_args(self.family, {}, "arch", arch, MBV2Arch, "an MBV2Arch")
        check_num_classes(num_classes)
        if not 0.0 <= drop_rate < 1.0 or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(
                f"drop_rate and drop_path_rate must be in [0, 1), got {drop_rate}, {drop_path_rate}"
            )
        self.arch = arch
        self._init_timm(num_classes, in_chans, drop_rate, drop_path_rate)
        self.stem = ConvBnAct(in_chans, arch.stem, 3, 2)
        total = sum(s.sub_layers for s in arch.stages)
        blocks, c, k = [], arch.stem, 0
        # feature levels: the last of [stem, blocks...] at each reduction (the stem is position 0)
        levels = {2: dict(num_chs=arch.stem, reduction=2, module="stem.act")}
        reduction, ends = 2, {2: 0}
        for i, stage in enumerate(arch.stages):
            layers = []
            for j in range(stage.sub_layers):
                layers.append(
                    SubLayer(
                        c if j == 0 else stage.out_channels,
                        stage.out_channels,
                        stage.mid,
                        stage.kernel,
                        stage.stride if j == 0 else 1,
                        arch.se,
                        project=j == 0,
                        drop_path=drop_path_rate * k / total,
                    )
                )
                k += 1
            blocks.append(nn.Sequential(*layers))
            c = stage.out_channels
            reduction *= stage.stride
            levels[reduction] = dict(num_chs=c, reduction=reduction, module=f"blocks.{i}")
            ends[reduction] = i + 1
        self.blocks = nn.Sequential(*blocks)
        self.feature_info = list(levels.values())
        #: Position in ``[stem, *blocks]`` of each feature level.
        self.stage_ends = tuple(ends.values())
        self.conv_head = ConvBnAct(c, arch.head, 1)
        self._init_head(arch.head, num_classes, global_pool, drop_rate)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the stem, the seven super-blocks, the head conv block."""
        return [self.stem, *self.blocks, self.conv_head]

    def feature_blocks(self) -> list[nn.Module]:
        """Sequential blocks whose outputs are the successive feature maps: stem, every sub-layer, head conv block."""
        return [self.stem, *(layer for stage in self.blocks for layer in stage), self.conv_head]

    def _classifier_kwargs(self) -> dict[str, Any]:
        """A new classifier is made where the parameters are, in their dtype."""
        ref = self.stem.conv.weight
        return dict(device=ref.device, dtype=ref.dtype)

    def _forward_levels(
        self, x: torch.Tensor, take: list[int], stop: int | None, norm: bool, only: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # the stem is position 0; the head conv is applied to the final features only
        return self._sequential_levels(
            x, self.blocks, take, stop, only, first=1, final=self.conv_head
        )

    def _prune(self, end: int, prune_norm: bool, prune_head: bool) -> bool:
        """Later super-blocks go; the head conv with them or with ``prune_head`` (it is sized for
        the last one); ``prune_norm`` has nothing to remove."""
        resized = end < len(self.blocks) or prune_head
        self.blocks = self.blocks[:end]
        if resized:
            self.conv_head = nn.Identity()
        return resized

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x, flatten=True)
        else:
            x = self.blocks(x)
        return self.conv_head(x)


def _cfg(arch: MBV2Arch, **kwargs: Any) -> dict[str, Any]:
    return dict(
        url="",
        num_classes=1000,
        input_size=(3, arch.resolution, arch.resolution),
        pool_size=(arch.resolution // 32, arch.resolution // 32),
        crop_pct=0.875,
        interpolation="bilinear",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="stem.conv",
        classifier="classifier",
        **kwargs,
    )


#: timm's pretrained configurations (ImageNet input and normalization; no weights). The input
#: size of ``wrcor_mbv2`` is its default architecture's; :func:`build` sets each network's own.
default_cfgs = generate_default_cfgs(
    {"wrcor_mbv2": _cfg(ARCH_600M), **{name: _cfg(arch) for name, arch in NAMED_ARCHS.items()}}
)


def build(
    arch: MBV2Arch, variant: str = "wrcor_mbv2", pretrained: bool = False, **kwargs: Any
) -> MBV2Net:
    """The network of ``arch`` through timm's ``build_model_with_cfg`` (the pretrained config of
    ``variant`` at the architecture's resolution; ``features_only`` and the other timm creation
    options in ``kwargs``)."""
    r = arch.resolution
    overlay = dict(input_size=(3, r, r), pool_size=(r // 32, r // 32))
    overlay.update(kwargs.pop("pretrained_cfg_overlay", None) or {})
    feature_cfg = dict(flatten_sequential=True)
    return build_timm(
        MBV2Net,
        variant,
        pretrained,
        feature_cfg,
        no_weights=f"{variant} has no pretrained weights; use pretrained=False",
        arch=arch,
        pretrained_cfg_overlay=overlay,
        **kwargs,
    )


@register_model
def wrcor_mbv2(pretrained: bool = False, arch: str | MBV2Arch | None = None, **kwargs: Any) -> MBV2Net:
    """Any network of the space, from its string ``arch`` (see :mod:`nas.arch.mbv2`) or value;
    without one, the paper's 600M network."""
    value = ARCH_600M if arch is None else arch
    expected = "an architecture string or an MBV2Arch"
    net = resolve_arch(value, MBV2Arch, MBV2Arch.decode, "arch", expected)
    return build(net, "wrcor_mbv2", pretrained, **kwargs)


@register_model
def wrcor_600m(pretrained: bool = False, **kwargs: Any) -> MBV2Net:
    """The paper's 600M-MACs network (224x224, SE): 10.8M params, 588M MACs."""
    return build(NAMED_ARCHS["wrcor_600m"], "wrcor_600m", pretrained, **kwargs)


@register_model
def wrcor_600m_nose(pretrained: bool = False, **kwargs: Any) -> MBV2Net:
    """The paper's 600M network without squeeze-excitation: 5.6M params."""
    return build(NAMED_ARCHS["wrcor_600m_nose"], "wrcor_600m_nose", pretrained, **kwargs)
