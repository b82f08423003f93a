"""Every registered model follows timm's model interface (the essentials of timm's own model tests).

Created with defaults as timm creates every registered name; features through the
``features_only`` wrappers and ``forward_intermediates`` agree with ``feature_info``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
from torch import nn

import nas
from nas.arch.mbv2 import ARCH_600M, NAMED_ARCHS
from nas.arch.nb201 import ARCH_RESNET
from nas.spaces.mbv2 import MBV2Space

NAMES = ("nb201", "wrcor_mbv2", *NAMED_ARCHS)
# small inputs keep the ImageNet networks fast: every reduction still leaves >= 2 pixels
SIDE = {"nb201": 32, "wrcor_mbv2": 64, "wrcor_600m": 64, "wrcor_600m_nose": 64}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _input(name: str) -> torch.Tensor:
    return torch.randn(2, 3, SIDE[name], SIDE[name])


def test_every_registered_name_is_covered():
    assert set(timm.list_models(module=["nb201", "mbv2"])) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_cfg_is_registered(name):
    cfg = timm.get_pretrained_cfg(name)
    assert cfg is not None, f"{name} has no default_cfgs entry"
    assert cfg.num_classes == (10 if name == "nb201" else 1000)
    assert cfg.input_size == ((3, 32, 32) if name == "nb201" else (3, 224, 224))
    assert cfg.pool_size == tuple(s // (4 if name == "nb201" else 32) for s in cfg.input_size[1:])
    assert len(cfg.mean) == len(cfg.std) == 3 and 0 < cfg.crop_pct <= 1
    model = timm.create_model(name)
    assert model.pretrained_cfg["architecture"] == name
    state = model.state_dict()
    assert f"{cfg.first_conv}.weight" in state and f"{cfg.classifier}.weight" in state
    assert model.get_submodule(cfg.classifier) is model.get_classifier()


def test_default_architectures():
    assert timm.create_model("nb201").ops == ARCH_RESNET.ops, "nb201 defaults to the ResNet-like cell"
    assert timm.create_model("wrcor_mbv2").arch == ARCH_600M, "wrcor_mbv2 defaults to the 600M net"


def test_each_network_reports_its_own_input_size():
    space = nas.spaces.get("mbv2")
    arch = space.decode(ARCH_600M.encode().replace("r224", "r192"))
    name, kwargs = space.timm_spec(arch)
    model = timm.create_model(name, **kwargs)
    assert model.pretrained_cfg["input_size"] == (3, 192, 192)
    assert model.pretrained_cfg["pool_size"] == (6, 6)
    built = space.build(arch)
    assert built.pretrained_cfg["input_size"] == (3, 192, 192), "space.build uses timm's builder too"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("feature_cls", ["list", "getter"])
def test_features_only_matches_feature_info(name, feature_cls):
    model = timm.create_model(name)
    info = model.feature_info
    features = timm.create_model(name, features_only=True, feature_cls=feature_cls).eval()
    assert features.feature_info.channels() == [f["num_chs"] for f in info]
    assert features.feature_info.reduction() == [f["reduction"] for f in info]
    assert len(info) >= 3
    x = _input(name)
    with torch.no_grad():
        outs = features(x)
    assert len(outs) == len(info)
    for out, f in zip(outs, info, strict=True):
        side = math.ceil(x.shape[-1] / f["reduction"])
        assert out.shape == (2, f["num_chs"], side, side), (f, out.shape)


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates(name):
    model = timm.create_model(name).eval()
    x = _input(name)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [t.shape[1] for t in inter] == [f["num_chs"] for f in model.feature_info]
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(last_two, inter[-2:], strict=True))
        first, early = model.forward_intermediates(x, indices=[0, 1], stop_early=True)
        assert torch.equal(early[1], inter[1]) and torch.equal(first, inter[1])
        kept = model.prune_intermediate_layers([0, 1])
        assert kept == [0, 1]
        pruned = model.forward_intermediates(x, indices=kept, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(pruned, inter[:2], strict=True))
        assert model(x).shape == (2, model.feature_info[1]["num_chs"], *inter[1].shape[2:])
    with pytest.raises(ValueError, match="NCHW only"):
        model.forward_intermediates(x, output_fmt="NHWC")


@pytest.mark.parametrize("name", NAMES)
def test_head_and_reset_classifier(name):
    model = timm.create_model(name, num_classes=7).eval()
    x = _input(name)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pooled.shape == (2, model.head_hidden_size) and model.head_hidden_size > 0
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
        assert torch.allclose(model(x), pooled)
        model.reset_classifier(0, "")
        assert model(x).shape == (2, model.num_features, *model.forward_features(x).shape[2:])
        model.reset_classifier(3, "avg")
        assert model(x).shape == (2, 3) and model.num_classes == 3


@pytest.mark.parametrize("name", ["nb201", "wrcor_mbv2"])
def test_grad_checkpointing_gives_the_same_output(name):
    model = timm.create_model(name).eval()
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
        model.set_grad_checkpointing()
        assert torch.allclose(model(x), expected, rtol=1e-4, atol=1e-5)


def test_feature_levels_follow_the_strides():
    space = MBV2Space(strides=(1, 2, 2, 2, 2, 1, 1))
    arch = space.sample(np.random.default_rng(0))
    name, kwargs = space.timm_spec(arch)
    model = timm.create_model(name, **kwargs)
    assert [f["module"] for f in model.feature_info] == [f"blocks.{i}" for i in (0, 1, 2, 3, 6)]
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert [f["num_chs"] for f in model.feature_info] == [
        arch.stages[i].out_channels for i in (0, 1, 2, 3, 6)
    ]
