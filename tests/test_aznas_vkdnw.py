"""AZ-NAS measures and VKDNW: analytic values, shared passes, untouched models, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nas
from nas.arch.nb201 import parse_cell
from nas.data import cifar10_batch
from nas.models.mbv2 import MBV2Net
from nas.models.nb201 import NB201Network
from nas.proxies import aznas, vkdnw
from nas.spaces.mbv2 import MBV2Arch

CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
SMALL_MBV2 = "r192_s16_e1k3c16s2b16n1_e2k5c24s2b16n2_e1k3c24s1b24n2_e4k7c32s2b32n2_e1k3c32s1b32n2_e2k3c48s2b48n2_e1k5c64s1b64n1_h128_se"


def small_nb201(cell: str = CELL) -> NB201Network:
    return NB201Network(parse_cell(cell), num_classes=10, channels=4, cells_per_stage=1)


class Scale(nn.Module):
    """Multiplies channel c by ``factors[c]`` (a fixed linear block)."""

    def __init__(self, factors: list[float]) -> None:
        super().__init__()
        self.register_buffer("factors", torch.tensor(factors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.factors.view(shape)


class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class Blocks(nn.Module):
    """A chain of blocks that declares them (``feature_blocks``), then a linear head."""

    def __init__(self, *blocks: nn.Module, channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, 3)

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(2).mean(-1) if x.dim() > 2 else self.body(x))


def snapshot(model: nn.Module) -> tuple[dict, dict, dict, list]:
    return ({k: p.detach().clone() for k, p in model.named_parameters()},
            {k: b.clone() for k, b in model.named_buffers()},
            {k: p.grad for k, p in model.named_parameters()}, [m.training for m in model.modules()])  # fmt: skip


def assert_unchanged(model: nn.Module, before: tuple[dict, dict, dict, list]) -> None:
    params, buffers, grads, modes = before
    for k, p in model.named_parameters():
        assert torch.equal(p, params[k]), f"parameter {k} changed"
        assert p.grad is None and grads[k] is None, f"a gradient was written to {k}"
    for k, b in model.named_buffers():
        assert torch.equal(b, buffers[k]), f"buffer {k} changed"
    assert [m.training for m in model.modules()] == modes, "train/eval flags changed"


def entropy(values: list[float]) -> float:
    total = sum(values)
    return -sum(v / total * math.log(v / total) for v in values if v > 0)


# --------------------------------------------------------------------------- AZ-NAS, analytic
def test_expressivity_and_progressivity_of_known_covariances() -> None:
    # centered, uncorrelated columns with variances 0.5 and 2; the second block scales them by 1 and 3
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    model = Blocks(Scale([1.0, 1.0]), Scale([1.0, 3.0]), channels=2)
    out = aznas.az_nas_family(model, x, None, ("az_expressivity", "az_progressivity"))
    h0, h1 = entropy([0.5, 2.0]), entropy([0.5, 18.0])
    assert out["az_expressivity"].score == pytest.approx(h0 + h1, abs=1e-9), out["az_expressivity"].diagnostics
    assert out["az_progressivity"].score == pytest.approx(h1 - h0, abs=1e-9)


@pytest.mark.parametrize("w", [0.5, 2.0, -3.0])
def test_trainability_of_a_linear_block_is_exact(w: float) -> None:
    # one channel: g_in = w g_out, so M = w mean(g_out^2) = w exactly and s = |w|
    block = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        block.weight.fill_(w)
    model = Blocks(Scale([1.0]), block)
    r = nas.proxies.score("az_trainability", model, torch.randn(32, 1))
    assert r.score == pytest.approx(-abs(w) - 1 / abs(w) + 2, abs=1e-9)


def test_trainability_aligns_a_downsampling_block_by_pixel_unshuffle() -> None:
    # 2x2 average pooling: each input pixel gets g_out / 4; unshuffled, M is 4 x 1 of 1/4, s = 1/2
    model = Blocks(Scale([1.0]), nn.AvgPool2d(2))
    r = nas.proxies.score("az_trainability", model, torch.randn(4, 1, 8, 8))
    assert r.score == pytest.approx(-0.5 - 2 + 2, abs=1e-9)


def test_identity_and_dead_blocks_are_worst_with_the_reason() -> None:
    r = nas.proxies.score("az_trainability", Blocks(Scale([1.0]), nn.Identity()), torch.randn(8, 1))
    assert r.score == float("-inf") and r.diagnostics["identity_blocks"] == [1], r.diagnostics
    dead = nas.proxies.score("az_expressivity", Blocks(Scale([1.0]), Scale([0.0])), torch.randn(8, 1))
    assert dead.score == float("-inf") and dead.diagnostics["constant_features"] == [1], dead.diagnostics


def test_non_finite_features_are_reported() -> None:
    x = torch.randn(8, 2)
    x[0, 0] = float("inf")
    out = aznas.az_nas_family(Blocks(Scale([1.0, 1.0]), Square(), channels=2), x)
    for name in ("az_expressivity", "az_progressivity"):
        assert out[name].score == float("-inf") and out[name].diagnostics["nonfinite_features"] == [0, 1], out[name]
    # d(x^2)/dx = 2x is infinite where x is
    train = out["az_trainability"]
    assert train.score == float("-inf") and train.diagnostics["nonfinite_blocks"] == [1], train.diagnostics


# --------------------------------------------------------------------------- AZ-NAS, real networks
def test_family_equals_each_member_and_leaves_the_model_untouched() -> None:
    model = small_nb201()
    model.eval()  # a caller's mode must come back as it was
    x, y = cifar10_batch(16)
    before = snapshot(model)
    family = aznas.az_nas_family(model, x, y)
    assert set(family) == set(aznas.AZ_NAS_MEMBERS)
    for name in aznas.AZ_NAS_MEMBERS:
        alone = nas.proxies.score(name, model, x, y)
        assert isinstance(family[name], nas.proxies.ProxyResult), family[name]
        assert alone.score == family[name].score, (name, alone.score, family[name].score)
        assert math.isfinite(alone.score), (name, alone)
    assert family["az_expressivity"].diagnostics["features"] == 6  # the stem, 3 cells, 2 reduction blocks
    assert family["az_complexity"].score == nas.proxies.score("flops", model, x).score
    assert_unchanged(model, before)


def test_mobilenet_blocks_are_its_sub_layers() -> None:
    model = MBV2Net(MBV2Arch.decode(SMALL_MBV2), num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(model)
    out = aznas.az_nas_family(model, x)
    sub_layers = sum(len(stage) for stage in model.blocks)
    assert out["az_trainability"].diagnostics["features"] == sub_layers + 2
    assert all(math.isfinite(r.score) for r in out.values()), out
    assert_unchanged(model, before)


def test_az_nas_needs_declared_blocks() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(ValueError, match=r"az_expressivity: model Sequential declares no blocks.*feature_blocks"):
        nas.proxies.score("az_expressivity", plain, torch.randn(2, 3, 8, 8))
    r = nas.proxies.score("az_expressivity", plain, torch.randn(4, 3, 8, 8), blocks=[plain[0], plain[1]])
    assert r.diagnostics["block_source"] == "blocks"
    with pytest.raises(ValueError, match="at least two"):
        nas.proxies.score("az_trainability", plain, torch.randn(4, 3, 8, 8), blocks=[plain[0]])
    with pytest.raises(ValueError, match="not members"):
        aznas.az_nas_family(small_nb201(), torch.randn(2, 3, 32, 32), None, ("az_nope",))


# --------------------------------------------------------------------------- VKDNW
def test_cholesky_factor_reproduces_the_categorical_covariance() -> None:
    p = torch.softmax(torch.randn(6, 10, dtype=torch.float64), dim=1)
    low = vkdnw.cholesky_factor(p)
    cov = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    assert torch.allclose(low @ low.transpose(1, 2), cov, atol=1e-12)
    assert torch.equal(low, torch.tril(low))


@pytest.mark.parametrize("form", ["code", "paper"])
def test_fisher_matrix_equals_a_per_sample_brute_force(form: str) -> None:
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)  # eval mode must use these statistics
    x = torch.randn(6, 5)
    f, diag = vkdnw.fisher_matrix(model, x, fisher=form)
    picks = vkdnw.sampled_weights(model, 128, 0.0)
    assert diag["weights"] == len(picks) == 6  # one weight of each of the six tensors
    params = dict(model.named_parameters())
    model.eval()
    expected = torch.zeros(6, 6, dtype=torch.float64)
    for n in range(6):
        z = model(x[n : n + 1])[0]
        rows = []
        for k in range(3):
            grads = torch.autograd.grad(z[k], [params[name] for name, _ in picks], retain_graph=True)
            rows.append(torch.stack([g.reshape(-1)[i] for g, (_, i) in zip(grads, picks, strict=True)]))
        jac = torch.stack(rows).double()
        p = torch.softmax(z.detach().double(), 0) * 0.95 + 0.05 / 3
        cov = torch.diag(p) - torch.outer(p, p)
        low = vkdnw.cholesky_factor(p[None])[0]
        middle = low.T @ low if form == "code" else cov
        expected += jac.T @ middle @ jac / 6
    assert torch.allclose(f, expected, rtol=1e-5, atol=1e-12), (f, expected)


def test_vkdnw_members_on_nb201_and_an_unmodified_model() -> None:
    model = small_nb201()
    x, y = cifar10_batch(4)
    before = snapshot(model)
    out = vkdnw.vkdnw_family(model, x, y, tensors=24)
    assert_unchanged(model, before)
    dim = len(list(model.parameters()))
    assert out["vkdnw_dim"].score == dim
    value = out["vkdnw"].score
    assert 0.0 <= value <= math.log(9) + 1e-12, out["vkdnw"].diagnostics
    assert out["vkdnw_single"].score == pytest.approx(dim + value / (2 * math.log(9)))
    assert out["vkdnw"].diagnostics["weights"] == 24
    assert nas.proxies.score("vkdnw", model, x, tensors=24).score == value
    # the size term dominates: a network with one more tensor ranks above whatever its entropy
    assert dim + 1 + 0.0 > out["vkdnw_single"].score


def test_vkdnw_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="no trainable parameters"):
        nas.proxies.score("vkdnw", nn.Sequential(nn.Flatten()), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"position must be in \[0, 1\] or .random."):
        nas.proxies.score("vkdnw", nn.Linear(3, 2), torch.randn(2, 3), position=2.0)
    with pytest.raises(ValueError, match="fisher='exact' is not allowed"):
        nas.proxies.score("vkdnw", nn.Linear(3, 2), torch.randn(2, 3), fisher="exact")
    with pytest.raises(ValueError, match="logits of shape"):
        nas.proxies.score("vkdnw", nn.Conv2d(3, 2, 1), torch.randn(2, 3, 4, 4))
    x = torch.randn(4, 3)
    x[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="logits of model Linear are not finite"):
        nas.proxies.score("vkdnw", nn.Linear(3, 2), x)


def test_random_position_is_the_authors_seeded_draw() -> None:
    import random

    model = small_nb201()
    picks = vkdnw.sampled_weights(model, 10, "random")
    draw = random.Random(12)
    expected = [(k, draw.randint(0, p.numel() - 1)) for k, p in model.named_parameters()][:10]
    assert picks == expected
    assert vkdnw.sampled_weights(model, 3, 1.0) == [(k, p.numel() - 1) for k, p in list(model.named_parameters())[:3]]


class AddInPlace(nn.Module):
    """Two blocks, the second's output changed in place afterwards (a residual written as ``+=``)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = Scale([1.0, 1.0]), Scale([1.0, 3.0])

    def feature_blocks(self) -> list[nn.Module]:
        return [self.a, self.b]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.a(x))
        y += 100.0 * x.detach()
        return y


def test_expressivity_reads_block_outputs_before_later_in_place_ops() -> None:
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    r = nas.proxies.score("az_expressivity", AddInPlace(), x)
    assert r.score == pytest.approx(entropy([0.5, 2.0]) + entropy([0.5, 18.0]), abs=1e-9)


def test_vkdnw_kaiming_init_works_on_a_copy() -> None:
    model = small_nb201()
    net = vkdnw.kaiming_copy(model, seed=3)
    conv = net.cells[0].edges[0][1]
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.2)
    assert torch.equal(net.stem[1].weight, torch.ones(4)) and not torch.equal(conv.weight, model.cells[0].edges[0][1].weight)
    x, y = cifar10_batch(4)
    before = snapshot(model)
    own = nas.proxies.score("vkdnw", model, x, tensors=8).score
    kaiming = nas.proxies.score("vkdnw", model, x, tensors=8, init="kaiming", seed=3)
    assert_unchanged(model, before)
    assert kaiming.diagnostics["init"] == "kaiming" and kaiming.score != own
    with pytest.raises(ValueError, match="init='xavier' is not allowed"):
        nas.proxies.score("vkdnw", model, x, init="xavier")
