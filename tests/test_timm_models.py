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
from nas.arch.darts import DARTS_V2
from nas.arch.mbv2 import ARCH_600M, NAMED_ARCHS
from nas.arch.nb101 import decode
from nas.arch.nb201 import ARCH_RESNET
from nas.models.nb101 import DEFAULT_ARCH
from nas.spaces.mbv2 import MBV2Space

FAMILIES = ["nb201", "nb101", "darts", "mbv2"]
CIFAR = ("nb201", "nb101", "darts")
NAMES = (*CIFAR, "wrcor_mbv2", *NAMED_ARCHS)
# small inputs keep the ImageNet networks fast: every reduction still leaves >= 2 pixels
SIDE = {"nb201": 32, "nb101": 32, "darts": 32, "wrcor_mbv2": 64, "wrcor_600m": 64, "wrcor_600m_nose": 64}
# small CIFAR networks of the same structure keep the tests fast (the defaults are checked apart)
SMALL = {"nb101": dict(stem_channels=8), "darts": dict(channels=4, layers=5)}
# a DARTS cell takes two inputs: timm's module-chaining wrappers cannot drive it, hooks can
FEATURE_CLASSES = [
    (name, cls) for name in NAMES for cls in (["hook", "getter"] if name == "darts" else ["list", "getter"])
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: a second intra-op thread only adds contention on a shared CPU (measured 15x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _input(name: str) -> torch.Tensor:
    return torch.randn(2, 3, SIDE[name], SIDE[name])


def _create(name: str, **kwargs: object) -> nn.Module:
    return timm.create_model(name, **SMALL.get(name, {}), **kwargs)


def test_every_registered_name_is_covered():
    assert set(timm.list_models(module=FAMILIES)) == set(NAMES)
    ours = {
        n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith("nas.")
    }
    assert ours == set(NAMES), "every model the project registers is checked here"


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_cfg_is_registered(name):
    cfg = timm.get_pretrained_cfg(name)
    assert cfg is not None, f"{name} has no default_cfgs entry"
    assert cfg.num_classes == (10 if name in CIFAR else 1000)
    assert cfg.input_size == ((3, 32, 32) if name in CIFAR else (3, 224, 224))
    assert cfg.pool_size == tuple(s // (4 if name in CIFAR else 32) for s in cfg.input_size[1:])
    assert len(cfg.mean) == len(cfg.std) == 3 and 0 < cfg.crop_pct <= 1
    model = _create(name)
    assert model.pretrained_cfg["architecture"] == name
    state = model.state_dict()
    assert f"{cfg.first_conv}.weight" in state and f"{cfg.classifier}.weight" in state
    assert model.get_submodule(cfg.classifier) is model.get_classifier()


def test_default_architectures():
    assert timm.create_model("nb201").ops == ARCH_RESNET.ops, "nb201 defaults to the ResNet-like cell"
    assert timm.create_model("wrcor_mbv2").arch == ARCH_600M, "wrcor_mbv2 defaults to the 600M net"
    assert _create("nb101").arch == decode(DEFAULT_ARCH).pruned(), "nb101: the README's cell"
    assert _create("darts").genotype == DARTS_V2, "darts defaults to DARTS V2"


def test_default_cifar_networks_keep_the_benchmarks_sizes():
    def n_params(model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    nb101 = timm.create_model("nb101")
    assert n_params(nb101) == 2_694_282 and len(nb101.layer_units()) == 12
    assert [f["module"] for f in nb101.feature_info] == ["layers.2", "layers.6", "layers.10"]
    assert [f["num_chs"] for f in nb101.feature_info] == [128, 256, 512]
    darts = timm.create_model("darts")
    assert n_params(darts) == 3_349_342 and darts.auxiliary_head is None
    assert [f["module"] for f in darts.feature_info] == ["cells.5", "cells.12", "cells.19"]
    assert [f["num_chs"] for f in darts.feature_info] == [144, 288, 576]
    assert n_params(timm.create_model("darts", auxiliary=True)) > n_params(darts)


def test_darts_features_refuse_module_chaining():
    with pytest.raises(ValueError, match="two inputs"):
        timm.create_model("darts", features_only=True, feature_cls="list")
    with pytest.raises(ValueError, match="two inputs"):
        timm.create_model("darts", features_only=True, feature_cfg=dict(feature_cls="dict"))
    hooked = _create("darts", features_only=True, feature_cfg=dict(feature_cls="hook", out_indices=(1, 2)))
    assert hooked.feature_info.reduction() == [2, 4], "timm's feature_cfg reaches the wrapper"


def test_each_network_reports_its_own_input_size():
    space = nas.spaces.get("mbv2")
    arch = space.decode(ARCH_600M.encode().replace("r224", "r192"))
    name, kwargs = space.timm_spec(arch)
    model = timm.create_model(name, **kwargs)
    assert model.pretrained_cfg["input_size"] == (3, 192, 192)
    assert model.pretrained_cfg["pool_size"] == (6, 6)
    built = space.build(arch)
    assert built.pretrained_cfg["input_size"] == (3, 192, 192), "space.build uses timm's builder too"


@pytest.mark.parametrize(("name", "feature_cls"), FEATURE_CLASSES)
def test_features_only_matches_feature_info(name, feature_cls):
    model = _create(name)
    info = model.feature_info
    features = _create(name, features_only=True, feature_cls=feature_cls).eval()
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
    model = _create(name).eval()
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
    model = _create(name, num_classes=7).eval()
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


@pytest.mark.parametrize("name", [*CIFAR, "wrcor_mbv2"])
def test_grad_checkpointing_gives_the_same_output(name):
    model = _create(name).eval()
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
        model.set_grad_checkpointing()
        assert torch.allclose(model(x), expected, rtol=1e-4, atol=1e-5)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", CIFAR)
def test_torchscript_and_fx_give_the_same_output(name):
    fx = pytest.importorskip("torchvision.models.feature_extraction")
    with timm.set_scriptable(True):
        model = _create(name).eval()
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(torch.jit.script(model)(x), expected, rtol=1e-4, atol=1e-5)
        tracer = dict(leaf_modules=timm.models.get_notrace_modules())
        nodes = fx.get_graph_node_names(model, tracer_kwargs=tracer)[1]
        graph = fx.create_feature_extractor(model, return_nodes=[nodes[-1]], tracer_kwargs=tracer)
        assert torch.equal(next(iter(graph(x).values())), expected)


def test_darts_auxiliary_head_survives_pruning_only_with_its_cell():
    model = _create("darts", auxiliary=True).train()
    x = _input("darts")
    logits, aux = model.forward_train(x)
    assert logits.shape == aux.shape == (2, 10)
    model.prune_intermediate_layers([0, 1])  # the head reads the second reduction cell, now gone
    assert model.auxiliary_head is None and model.forward_train(x)[1] is None


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
