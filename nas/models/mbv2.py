"""The MobileNetV2-like (Zen-NAS) ImageNet networks, as a timm model family.

A network of :class:`nas.spaces.mbv2.MBV2Arch` (string form documented in
:mod:`nas.spaces.mbv2`): 3x3 stride-2 stem conv-BN-ReLU; seven super-blocks of sub-layers
1x1 conv -> BN -> ReLU -> kxk depthwise conv -> BN -> ReLU -> [SE] -> 1x1 conv -> BN, added to
the shortcut and followed by a ReLU (sub-layer 0 has the block's stride and a 1x1 conv + BN
shortcut, the others an identity); 1x1 head conv-BN-ReLU; global average pooling; linear
classifier. BatchNorm eps is 1e-3 throughout. Every activation is an ``nn.ReLU`` module (not
in-place, so hooks see the pre-activation intact), SE gates are ``nn.Sigmoid``.

Registered with timm: ``timm.create_model("wrcor_mbv2", arch="r224_s48_...")`` for any
architecture, and the named networks of :data:`NAMED_ARCHS` (``wrcor_600m``: the paper's 600M
network with SE; ``wrcor_600m_nose``: the same without SE).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, create_classifier
from timm.models import register_model
from torch import nn

if TYPE_CHECKING:
    from nas.spaces.mbv2 import MBV2Arch

BN_EPS = 1e-3

ARCH_600M = (
    "r224_s48_e2k7c32s2b40n2_e2k7c32s2b48n3_e6k7c64s1b40n3_e6k7c88s2b40n4_e6k7c104s1b56n6"
    "_e6k5c152s2b192n6_e6k5c240s1b136n2_h1264_se"
)
#: The named networks: timm model name -> architecture string.
NAMED_ARCHS = {
    "wrcor_600m": ARCH_600M,
    "wrcor_600m_nose": ARCH_600M.removesuffix("_se") + "_nose",
}


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


class MBV2Net(nn.Module):
    """A network of the MobileNetV2-like space, with timm's model interface.

    Args:
        arch: the architecture (``nas.spaces.mbv2.MBV2Arch``).
        num_classes: classifier outputs; 0 gives pooled features.
        in_chans: input channels.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the identity-shortcut sub-layers, rising linearly
            from 0 at the first sub-layer to ``drop_path_rate`` at the last.
        global_pool: timm pooling type (``"avg"``, ``"max"``, ``"avgmax"``, ``"catavgmax"``,
            or ``""`` for none).
        device, dtype: where and in what type to create the parameters.
    """

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
        **kwargs: Any,
    ) -> None:
        super().__init__()
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"unexpected argument(s) for an mbv2 network: {sorted(kwargs)}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if not 0.0 <= drop_rate < 1.0 or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(
                f"drop_rate and drop_path_rate must be in [0, 1), got {drop_rate}, {drop_path_rate}"
            )
        self.arch = arch
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.stem = ConvBnAct(in_chans, arch.stem, 3, 2)
        total = sum(s.sub_layers for s in arch.stages)
        blocks, c, k = [], arch.stem, 0
        for stage in arch.stages:
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
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = ConvBnAct(c, arch.head, 1)
        self.num_features = self.head_hidden_size = arch.head
        self.global_pool, self.classifier = create_classifier(
            self.num_features, num_classes, global_pool
        )
        self.head_drop = nn.Dropout(drop_rate)
        self.pretrained_cfg = dict(
            url="",
            num_classes=num_classes,
            input_size=(in_chans, arch.resolution, arch.resolution),
            pool_size=(arch.resolution // 32, arch.resolution // 32),
            crop_pct=0.875,
            interpolation="bilinear",
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
            first_conv="stem.conv",
            classifier="classifier",
            arch=arch.encode(),
        )
        self.default_cfg = self.pretrained_cfg
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def layer_units(self) -> list[nn.Module]:
        """Depth-ordered layers for WRCor: the stem, the seven super-blocks, the head conv block."""
        return [self.stem, *self.blocks, self.conv_head]

    def feature_blocks(self) -> list[nn.Module]:
        """Sequential blocks whose outputs are the successive feature maps: stem, every sub-layer, head conv block."""
        return [self.stem, *(layer for stage in self.blocks for layer in stage), self.conv_head]

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier with ``num_classes`` outputs (0: none); pooling kept unless given."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        pool = self.global_pool.pool_type if global_pool is None else global_pool
        ref = self.conv_head.conv.weight
        self.global_pool, self.classifier = create_classifier(
            self.num_features, num_classes, pool, device=ref.device, dtype=ref.dtype
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(variant: str, pretrained: bool, arch: str, **kwargs: Any) -> MBV2Net:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights; use pretrained=False")
    from nas.spaces.mbv2 import MBV2Arch

    model = MBV2Net(MBV2Arch.decode(arch), **kwargs)
    model.pretrained_cfg["architecture"] = variant
    return model


@register_model
def wrcor_mbv2(pretrained: bool = False, arch: str | None = None, **kwargs: Any) -> MBV2Net:
    """Any network of the space, from its string ``arch`` (see :mod:`nas.spaces.mbv2`)."""
    if arch is None:
        raise ValueError(
            "wrcor_mbv2 needs arch='r<res>_s<stem>_<7 stage tokens>_h<head>_<se|nose>'"
        )
    if not isinstance(arch, str):
        raise TypeError(f"arch must be an architecture string, got {type(arch).__name__}")
    return _create("wrcor_mbv2", pretrained, arch, **kwargs)


@register_model
def wrcor_600m(pretrained: bool = False, **kwargs: Any) -> MBV2Net:
    """The paper's 600M-MACs network (224x224, SE): 10.8M params, 588M MACs."""
    return _create("wrcor_600m", pretrained, NAMED_ARCHS["wrcor_600m"], **kwargs)


@register_model
def wrcor_600m_nose(pretrained: bool = False, **kwargs: Any) -> MBV2Net:
    """The paper's 600M network without squeeze-excitation: 5.6M params."""
    return _create("wrcor_600m_nose", pretrained, NAMED_ARCHS["wrcor_600m_nose"], **kwargs)
