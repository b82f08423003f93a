"""The MobileNetV2-like ImageNet space and its timm model family."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import nas
from nas.arch.mbv2 import ARCH_600M, NAMED_ARCHS, MBV2Arch, MBV2Stage
from nas.models.mbv2 import MBV2Net
from nas.spaces.mbv2 import MBV2Space
from tests.test_timm_models import _one_thread  # noqa: F401  (autouse fixture)

SMALL = "r192_s16_e1k3c16s2b16n1_e2k5c24s2b16n2_e1k3c24s1b24n2_e4k7c32s2b32n2_e1k3c32s1b32n2_e2k3c48s2b48n2_e1k5c64s1b64n1_h128_se"
TEXT_600M = ARCH_600M.encode()
MODELS = timm.list_models(module="mbv2")
# the generic entry point takes any architecture (a small one keeps these tests fast)
MODEL_KWARGS = {"wrcor_mbv2": {"arch": SMALL}}


def _create(name: str, **kwargs) -> MBV2Net:
    return timm.create_model(name, **MODEL_KWARGS.get(name, {}), **kwargs)


def _measure(model: nn.Module, resolution: int) -> tuple[int, int]:
    """(MACs by FlopCounterMode, parameter count) of ``model`` on one image (shapes only, on meta)."""
    model = model.to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, model.in_chans, resolution, resolution, device="meta"))
    return counter.get_total_flops() // 2, sum(p.numel() for p in model.parameters())


def test_family_is_registered():
    assert set(MODELS) == {"wrcor_mbv2", *NAMED_ARCHS}, MODELS
    assert isinstance(nas.spaces.get("mbv2"), MBV2Space)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_honours_num_classes_and_in_chans(name):
    torch.manual_seed(0)
    model = _create(name, num_classes=7, in_chans=1)
    assert (model.num_classes, model.in_chans) == (7, 1)
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", MODELS)
def test_features_head_and_reset_classifier(name):
    model = _create(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, 1, 1)
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        assert isinstance(model.get_classifier(), nn.Linear)
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), nn.Identity)
        assert torch.allclose(model(x), pooled), "reset_classifier(0) must give the pooled features"
        model.reset_classifier(5)
        assert model(x).shape == (2, 5) and model.num_classes == 5


@pytest.mark.parametrize("name", MODELS)
def test_layer_units_cover_every_activation(name):
    model = _create(name)
    units = model.layer_units()
    assert len(units) == 9
    assert units[0] is model.stem and units[-1] is model.conv_head
    in_units = [id(m) for u in units for m in u.modules() if isinstance(m, nn.ReLU)]
    everywhere = [id(m) for m in model.modules() if isinstance(m, nn.ReLU)]
    assert sorted(in_units) == sorted(everywhere), (
        "every ReLU must belong to exactly one layer unit"
    )
    assert all(not m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_weights_are_refused(name):
    with pytest.raises(ValueError, match="no pretrained weights"):
        _create(name, pretrained=True)


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_cfg(name):
    model = _create(name)
    cfg = model.pretrained_cfg
    r = model.arch.resolution
    assert cfg["input_size"] == (3, r, r) and cfg["crop_pct"] == 0.875
    assert cfg["num_classes"] == 1000 and cfg["architecture"] == name
    assert isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()


def test_drop_path_only_on_identity_shortcuts():
    model = timm.create_model("wrcor_600m", drop_path_rate=0.2, drop_rate=0.1)
    layers = [layer for block in model.blocks for layer in block]
    dropped = [layer for layer in layers if isinstance(layer.drop_path, timm.layers.DropPath)]
    assert len(dropped) == len(layers) - 7, "every sub-layer but the 7 projection ones"
    assert all(isinstance(layer.shortcut, nn.Identity) for layer in dropped)
    assert dropped[-1].drop_path.drop_prob == pytest.approx(0.2 * (len(layers) - 1) / len(layers))
    assert model.head_drop.p == 0.1
    model = timm.create_model("wrcor_mbv2", arch=SMALL, drop_path_rate=0.2, drop_rate=0.1).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x)), "eval mode must be deterministic"


@pytest.mark.parametrize(
    ("name", "params"), [("wrcor_600m", 10_807_432), ("wrcor_600m_nose", 5_568_032)]
)
def test_paper_600m_network_cost(name, params):
    model = timm.create_model(name)
    macs, built_params = _measure(model, 224)
    space = nas.spaces.get("mbv2")
    assert built_params == params == space.params(model.arch)
    assert macs == space.flops(model.arch)
    assert 575e6 < macs < 600e6, macs


def test_analytic_cost_equals_built_model():
    space = MBV2Space(max_flops=120e6)
    rng = np.random.default_rng(3)
    cases = [(space.sample(rng), 1000), (space.sample(rng), 10)]
    cases.append((MBV2Arch.decode(SMALL.removesuffix("_se") + "_nose"), 0))
    for arch, num_classes in cases:
        macs, params = _measure(space.build(arch, num_classes=num_classes), arch.resolution)
        assert (macs, params) == space.cost(arch, num_classes), arch.encode()


def test_round_trip():
    space = nas.spaces.get("mbv2")
    assert space.encode(space.decode(TEXT_600M)) == TEXT_600M
    rng = np.random.default_rng(0)
    for _ in range(50):
        arch = space.sample(rng)
        assert space.decode(space.encode(arch)) == arch
        assert space.from_decisions(space.decisions(arch)) == arch
        assert hash(arch) == hash(space.decode(str(arch)))
    name, kwargs = space.timm_spec(arch)
    assert timm.create_model(name, **kwargs).arch == arch


def test_paper_600m_network_is_in_the_space():
    arch = MBV2Arch.decode(TEXT_600M)
    assert arch.strides == (2, 2, 1, 2, 1, 2, 1) and arch.se
    assert [s.mid for s in arch.stages] == [80, 96, 240, 240, 336, 1152, 816]
    assert len(nas.spaces.get("mbv2").decisions(arch)) == len(
        nas.spaces.get("mbv2").decision_sizes()
    )


def _edit(old: str, new: str, count: int = 1) -> str:
    assert old in TEXT_600M
    return TEXT_600M.replace(old, new, count)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_edit("e2k7", "e2k4"), r"stage 0 .*kernel=4 not allowed; expected one of 3, 5, 7"),
        (_edit("e2k7", "e3k7"), r"stage 0 .*expansion=3 not allowed; expected one of 1, 2, 4, 6"),
        (_edit("c32s2", "c32s3"), r"stride=3 not allowed; expected one of 1, 2"),
        (
            _edit("c32s2", "c36s2"),
            r"out_channels=36 not allowed; expected a positive multiple of 8",
        ),
        (_edit("b40n2", "b44n2"), r"bottleneck=44 not allowed"),
        (_edit("b40n2", "b40n3"), r"stages\[0\].sub_layers=3 outside stage 0's range 1-2"),
        (_edit("b56n6", "b56n7"), r"stages\[4\].sub_layers=7 outside stage 4's range 2-6"),
        (
            _edit("c240s1", "c640s1"),
            r"stages\[6\].out_channels=640 not allowed; expected a multiple of 8 in 64-512",
        ),
        (
            _edit("r224", "r225"),
            r"resolution=225 not allowed; expected a positive multiple of 32 \(the network's total stride\)",
        ),
        (_edit("s48", "s56"), r"stem=56 not allowed; expected a multiple of 8 in 16-48"),
        (_edit("h1264", "h1260"), r"head=1260 not allowed; expected a multiple of 8 in 128-1536"),
        (_edit("c64s1", "c64s2"), r"exactly 4 stages must have stride 2"),
        (_edit("_se", "_nope"), r"bad SE token 'nope'"),
        (_edit("s48", "x48"), r"bad stem token 'x48'"),
        (_edit("e2k7c32s2b40n2", "e2k7c32s2b40"), r"bad stage token 'e2k7c32s2b40' \(stage 0\)"),
        (_edit("c32s2", "c032s2"), r"bad stage token"),
        ("r224_s48", r"malformed architecture .* expected 11 '_'-separated tokens"),
        ("", r"malformed architecture"),
    ],
)
def test_decode_errors(text, match):
    with pytest.raises(ValueError, match=match):
        MBV2Arch.decode(text)


def test_value_errors():
    with pytest.raises(ValueError, match="kernel=4 not allowed"):
        MBV2Stage(expansion=2, kernel=4, out_channels=32, stride=2, bottleneck=40, sub_layers=2)
    with pytest.raises(TypeError, match="kernel must be an int"):
        MBV2Stage(expansion=2, kernel=3.0, out_channels=32, stride=2, bottleneck=40, sub_layers=2)
    with pytest.raises(TypeError, match="must be str"):
        MBV2Arch.decode(224)
    arch = MBV2Arch.decode(TEXT_600M)
    with pytest.raises(ValueError, match="7 stages, got 6"):
        MBV2Arch(224, 48, arch.stages[:6], 1264)
    with pytest.raises(ValueError, match="decision 0 = 5 out of range"):
        nas.spaces.get("mbv2").from_decisions([5] + [0] * 37)
    with pytest.raises(ValueError, match="this space's decisions fix"):
        MBV2Space(strides=(2, 1, 2, 1, 2, 1, 2)).decisions(arch)
    with pytest.raises(TypeError, match="arch must be an architecture string or an MBV2Arch"):
        timm.create_model("wrcor_mbv2", arch=224)
    with pytest.raises(ValueError, match="exactly 4 stages must have stride 2|strides must be"):
        MBV2Space(strides=(2, 2, 2, 2, 2, 1, 1))


def test_budget_sampling_and_mutation_respect_the_budget():
    space = nas.spaces.get("mbv2").with_budget(max_flops=300e6, max_params=3e6)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(200)]
    assert all(space.fits(a) for a in archs)
    assert max(space.flops(a) for a in archs) <= 300e6
    assert max(space.params(a) for a in archs) <= 3e6
    assert len(set(archs)) == len(archs)
    for arch in archs:
        child = space.mutate(arch, rng)
        assert child != arch and space.fits(child)
        changed = np.flatnonzero(np.subtract(space.decisions(child), space.decisions(arch)))
        assert len(changed) == 1, "a mutation changes exactly one decision"


def test_tight_budget_still_samples():
    smallest = MBV2Space().from_decisions([0] * 38)
    budget = 2 * MBV2Space().flops(smallest)  # rejection almost never succeeds: the shrink path
    space = MBV2Space(max_flops=budget, max_tries=5)
    rng = np.random.default_rng(0)
    assert all(space.flops(space.sample(rng)) <= budget for _ in range(20))


def test_unreachable_budget_raises():
    smallest = MBV2Space().from_decisions([0] * 38)
    macs, params = MBV2Space().cost(smallest)
    with pytest.raises(ValueError, match=f"no architecture fits the budget.*{macs} MACs"):
        MBV2Space(max_flops=macs - 1)
    with pytest.raises(ValueError, match="no architecture fits the budget"):
        nas.spaces.get("mbv2").with_budget(max_params=params - 1)
    exact = MBV2Space(max_flops=macs)
    assert exact.sample(np.random.default_rng(0)) == smallest
    with pytest.raises(ValueError, match="no mutation of"):
        exact.mutate(smallest, np.random.default_rng(0))


@pytest.mark.parametrize("budget", [None, 600e6])
def test_seeded_reproducibility(budget):
    space = MBV2Space(max_flops=budget)

    def run(seed: int) -> list[MBV2Arch]:
        rng = np.random.default_rng(seed)
        archs = [space.sample(rng) for _ in range(20)]
        return archs + [space.mutate(a, rng) for a in archs]

    assert run(1) == run(1)
    assert run(1) != run(2)
