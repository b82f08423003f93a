from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas.models.mbv2 import MBV2Net
from nas.proxies.swap import count_distinct_rows, pack_rows
from nas.spaces.mbv2 import MBV2Space
from tests.test_baselines import _one_thread, assert_unchanged, small_batch, small_nb201, snapshot  # noqa: F401
from tests.test_mbv2 import SMALL

NEW = ("meco", "meco_opt", "swap", "ntk_cond", "linear_regions", "trainable_layers")
#: A small MobileNet-like network with squeeze-excitation gates (1 x 1 BatchNorm inputs), fed 32 x 32 images.
MBV2_SMALL = SMALL


class Passthrough(nn.Module):
    """Returns its input: the feature map MeCo reads is the input itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def numpy_min_eig(fea: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(np.corrcoef(fea.reshape(fea.shape[0], -1)))[0])


# --------------------------------------------------------------------------- MeCo
def test_meco_is_the_min_eigenvalue_of_the_channel_correlation_per_hooked_module() -> None:
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    expected = numpy_min_eig(x[0].numpy())
    model = nn.Sequential(Passthrough())  # hooks: the Sequential and its child, both output x
    one = nas.proxies.score("meco", model, x, modules="leaves")
    both = nas.proxies.score("meco", model, x)
    assert one.score == pytest.approx(expected, rel=1e-10), (one.score, expected)
    assert both.score == pytest.approx(2 * expected, rel=1e-10), "modules='all' hooks containers too (authors' code)"
    other = nas.proxies.score("meco", model, x, sample=2, modules="leaves").score
    assert other == pytest.approx(numpy_min_eig(x[2].numpy()), rel=1e-10), "sample selects the input read"


def test_meco_opt_samples_channels_with_its_seed_and_scales_by_c_over_n() -> None:
    x = torch.randn(2, 12, 5, 5, dtype=torch.float64)
    model = nn.Sequential(Passthrough())
    gen = torch.Generator().manual_seed(3)
    idx = [torch.randperm(12, generator=gen)[:4] for _ in range(2)]  # hook order: child, then the Sequential
    expected = sum(12 / 4 * numpy_min_eig(x[0].numpy()[i.numpy()]) for i in idx)
    got = nas.proxies.score("meco_opt", model, x, channels=4, seed=3).score
    assert got == pytest.approx(expected, rel=1e-10), (got, expected)
    # with at least as many sampled channels as the map has, it is plain MeCo
    full = nas.proxies.score("meco_opt", model, x, channels=12)
    assert full.score == pytest.approx(nas.proxies.score("meco", model, x).score, rel=1e-12)
    assert full.diagnostics["maps_all_channels"] == 2


def test_meco_constant_channel_contributes_zero_and_is_counted() -> None:
    x = torch.randn(2, 4, 5, 5)
    x[0, 1] = 0.0  # a dead channel: no correlation is defined
    r = nas.proxies.score("meco", nn.Sequential(Passthrough()), x, modules="leaves")
    assert r.score == 0.0 and r.diagnostics["maps_degenerate"] == 1, r


def test_meco_non_finite_feature_map_raises() -> None:
    x = torch.randn(2, 4, 5, 5)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="meco"):
        nas.proxies.score("meco", nn.Sequential(Passthrough()), x)


def test_meco_family_computes_both_from_one_pass_with_the_same_values() -> None:
    model, (x, _) = small_nb201(), small_batch()
    fam = nas.proxies.meco.meco_family(model, x)
    for name in ("meco", "meco_opt"):
        assert fam[name].score == nas.proxies.score(name, model, x).score, name


def test_meco_one_sample_on_squeeze_excitation_names_the_fix() -> None:
    model = MBV2Net(MBV2Space().decode(MBV2_SMALL), num_classes=10)
    x = torch.randn(4, 3, 32, 32)
    with pytest.raises(ValueError, match="batch='all'"):
        nas.proxies.score("meco", model, x)
    r = nas.proxies.score("meco", model, x, batch="all")
    assert math.isfinite(r.score) and r.score > 0, r


# --------------------------------------------------------------------------- SWAP
def test_pack_rows_counts_distinct_rows_like_unique() -> None:
    gen = torch.Generator().manual_seed(0)
    for bits in (5, 63, 64, 130):
        codes = torch.rand((200, bits), generator=gen) < 0.5
        codes[100:150] = codes[:50]  # duplicates
        want = torch.unique(codes.long(), dim=0).shape[0]
        assert count_distinct_rows(pack_rows(codes)) == want, bits


def test_swap_counts_distinct_unit_patterns_and_regularizes_by_size() -> None:
    lin = nn.Linear(1, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [1.0], [-1.0], [2.0]]))
        lin.bias.zero_()
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 2))
    x = torch.tensor([[1.0], [-1.0], [2.0]])
    # unit patterns over the 3 samples: (1,0,1), (1,0,1), (0,1,0), (1,0,1) -> 2 distinct
    plain = nas.proxies.score("swap", model, x, regularize=False)
    assert plain.score == 2.0, plain
    params = sum(p.numel() for p in model.parameters()) / 1e6
    reg = nas.proxies.score("swap", model, x, mu=0.5, sigma=2.0)
    assert reg.score == pytest.approx(2.0 * math.exp(-((params - 0.5) ** 2) / 2.0), rel=1e-12), reg


def test_swap_uses_the_first_samples() -> None:
    model, (x, _) = small_nb201(), small_batch(8)
    assert nas.proxies.score("swap", model, x, samples=4).diagnostics["samples"] == 4
    assert nas.proxies.score("swap", model, x, samples=None).diagnostics["samples"] == 8


# --------------------------------------------------------------------------- TE-NAS
def test_ntk_cond_matches_an_explicit_jacobian_of_a_two_layer_linear_net() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    x = torch.randn(3, 3, dtype=torch.float64)  # rows of J live in span(x_i): N <= 3 keeps the kernel regular
    w1, w2 = model[0].weight.detach().numpy(), model[1].weight.detach().numpy()
    rows = []
    for xi in x.numpy():  # f_i = 1^T W2 W1 x_i
        d_w1 = np.outer(w2.sum(axis=0), xi)
        d_w2 = np.outer(np.ones(2), w1 @ xi)
        rows.append(np.concatenate([d_w1.ravel(), d_w2.ravel()]))
    lam = np.linalg.eigvalsh(np.array(rows) @ np.array(rows).T)
    r = nas.proxies.score("ntk_cond", model, x, samples=None)
    assert r.score == pytest.approx(-lam[-1] / lam[0], rel=1e-8), (r.score, lam)


def test_ntk_kernel_with_batchnorm_equals_one_backward_per_sample() -> None:
    model, (x, _) = small_nb201(), small_batch(6)
    kernel, _ = nas.proxies.tenas.ntk_matrix(model, x)
    names = [k for k, _ in model.named_parameters() if k.endswith("weight")]
    from nas.proxies._functional import detached_state, logits_of, mode

    with mode(model, train=True), torch.enable_grad():
        state, leaf = detached_state(model, names)
        out = logits_of(model, state, x, "test").sum(1)
        rows = []
        for i in range(len(x)):  # the authors' way: one backward of sample i's logits through the batch graph
            grads = torch.autograd.grad(out[i], [leaf[k] for k in names], retain_graph=True, allow_unused=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads if g is not None]).double())
    g = torch.stack(rows)
    torch.testing.assert_close(kernel, g @ g.T, rtol=1e-4, atol=1e-6)


def test_ntk_singular_kernel_is_minus_inf_with_the_reason() -> None:
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    x = torch.randn(2, 3).repeat(2, 1)  # duplicated samples: identical gradient rows
    r = nas.proxies.score("ntk_cond", model, x, samples=None)
    assert r.score == float("-inf") and "singular" in r.diagnostics["reason"], r


def test_ntk_non_finite_gradients_raise() -> None:
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="ntk_cond"):
        nas.proxies.score("ntk_cond", nn.Sequential(lin, nn.Linear(2, 2)), torch.randn(4, 3), samples=None)


def test_linear_regions_of_a_one_dimensional_relu_net() -> None:
    hidden = nn.Linear(1, 3)
    with torch.no_grad():  # kinks at 0, 1 and 2: four linear regions on the line
        hidden.weight.fill_(1.0)
        hidden.bias.copy_(torch.tensor([0.0, -1.0, -2.0]))
    model = nn.Sequential(hidden, nn.ReLU(), nn.Linear(3, 1))
    x = torch.tensor([[-3.0], [-0.5], [0.3], [0.7], [1.5], [2.5], [9.0]])
    assert nas.proxies.score("linear_regions", model, x, crop=None).score == 4.0
    assert nas.proxies.score("linear_regions", model, x[:3], crop=None).score == 2.0
    r = nas.proxies.score("linear_regions", model, x)  # vectors cannot be cropped: counted as given, recorded
    assert r.score == 4.0 and "not images" in r.diagnostics["crop_fallback"], r


def test_linear_regions_crops_are_seeded_and_sized() -> None:
    model, (x, _) = small_nb201(), small_batch(8)
    a = nas.proxies.score("linear_regions", model, x, crop=4, samples=50, chunk=20, seed=1)
    b = nas.proxies.score("linear_regions", model, x, crop=4, samples=50, chunk=20, seed=1)
    assert a.score == b.score and a.diagnostics["samples"] == 50 and 1 <= a.score <= 50, a
    distinct = nas.proxies.tenas.random_crops(x, 1000, 4, seed=0).reshape(1000, -1)
    assert torch.unique(distinct, dim=0).shape[0] == 1000, "crops are drawn without replacement"
    crops = nas.proxies.tenas.random_crops(x, 5, 4, seed=0)
    assert crops.shape == (5, 3, 4, 4)
    # every crop is a window of one of the images
    assert all(any((img.unfold(1, 4, 1).unfold(2, 4, 1) == c[:, None, None]).all(0).all(-1).all(-1).any() for img in x)
               for c in crops)  # fmt: skip


# --------------------------------------------------------------------------- trainable layers
def test_trainable_layers_counts_conv_and_linear_with_trainable_weights() -> None:
    frozen = nn.Conv2d(4, 4, 1)
    frozen.weight.requires_grad_(False)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4, bias=False), frozen,
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10),
    )  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    assert nas.proxies.score("trainable_layers", model, x).score == 3.0
    # tensors: conv w+b, bn w+b, depthwise w, frozen conv's bias, linear w+b
    assert nas.proxies.score("trainable_layers", model, x, count="tensors").score == 8.0
    # the NAS-Bench-201 network with one cell per stage: stem + 2 x 3 reduction convs + 3 cells x 2 convs + classifier
    assert nas.proxies.score("trainable_layers", small_nb201(), x).score == 14.0


# --------------------------------------------------------------------------- every new proxy
@pytest.mark.parametrize("name", NEW)
def test_new_proxies_leave_the_model_alone_and_run_on_nb201(name: str) -> None:
    model = small_nb201()
    model.cells[1].eval()
    before = snapshot(model)
    x, y = small_batch()
    r = nas.proxies.score(name, model, x, y)
    assert math.isfinite(r.score), (name, r)
    assert_unchanged(model, before, name)


@pytest.mark.parametrize("name", NEW)
def test_new_proxies_run_on_the_mobilenet_like_network(name: str) -> None:
    model = MBV2Net(MBV2Space().decode(MBV2_SMALL), num_classes=10)
    before = snapshot(model)
    x = torch.randn(4, 3, 32, 32)
    opts = {"batch": "all"} if name.startswith("meco") else {}
    if name == "linear_regions":
        opts = {"samples": 64, "chunk": 32}
    r = nas.proxies.score(name, model, x, **opts)
    assert math.isfinite(r.score), (name, r)
    assert_unchanged(model, before, name)


@pytest.mark.parametrize(
    ("name", "opts", "match"),
    [
        ("meco", {"sample": 8}, "sample=8"),
        ("meco", {"batch": "some"}, "batch='some'"),
        ("meco_opt", {"channels": 1}, "channels=1"),
        ("swap", {"samples": 1}, "samples=1"),
        ("swap", {"sigma": 0.0}, "sigma=0.0"),
        ("ntk_cond", {"samples": 1}, "samples=1"),
        ("ntk_cond", {"params": "biases"}, "params='biases'"),
        ("linear_regions", {"crop": 64}, "crop size 64"),
        ("linear_regions", {"samples": 1}, "samples=1"),
        ("trainable_layers", {"count": "modules"}, "count='modules'"),
    ],
)
def test_bad_options_are_named(name: str, opts: dict, match: str) -> None:
    x, y = small_batch()
    with pytest.raises(ValueError, match=match):
        nas.proxies.score(name, small_nb201(), x, y, **opts)


@pytest.mark.parametrize(("name", "opts"), [("swap", {}), ("linear_regions", {})])
def test_pattern_proxies_need_activation_units(name: str, opts: dict) -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())
    with pytest.raises(ValueError, match=f"{name}: model Sequential has no"):
        nas.proxies.score(name, model, torch.randn(4, 3, 8, 8), **opts)


def test_linear_regions_falls_back_to_the_batch_for_a_model_that_cannot_take_crops() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 10))
    r = nas.proxies.score("linear_regions", model, torch.randn(4, 3, 16, 16), samples=10)
    assert r.diagnostics["crop"] is None and "RuntimeError" in r.diagnostics["crop_fallback"], r.diagnostics
    assert r.score == 4.0 and r.diagnostics["samples"] == 4, r


def test_trainable_layers_needs_a_layer() -> None:
    with pytest.raises(ValueError, match="trainable_layers: model Sequential has no Conv/Linear"):
        nas.proxies.score("trainable_layers", nn.Sequential(nn.ReLU()), torch.randn(2, 3))
