from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas.data import cifar10_batch
from nas.proxies.wrcor import VARIANTS, layer_weights
from tests.conftest import RESNET_CELL

space = nas.spaces.get("nb201")


class TinyNet(nn.Module):
    """Linear -> BN -> ReLU -> Linear -> ReLU(inplace) -> Linear, with declared layers."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Linear(12, 20), nn.BatchNorm1d(20), nn.ReLU())
        self.block2 = nn.Sequential(nn.Linear(20, 16), nn.ReLU(inplace=inplace))
        self.head = nn.Linear(16, 5)

    def layer_units(self) -> list[nn.Module]:
        return [self.block1, self.block2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(x)))


def reference_wrcor(model: TinyNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Independent computation: explicit forward, autograd grads, numpy corrcoef and slogdet."""
    lin1, bn, _ = model.block1
    lin2, _ = model.block2
    w = {k: v.detach().clone().requires_grad_(False) for k, v in model.state_dict().items()}
    z1 = x @ w["block1.0.weight"].T + w["block1.0.bias"]
    mean, var = z1.mean(0), z1.var(0, unbiased=False)
    p1 = (z1 - mean) / torch.sqrt(var + bn.eps) * w["block1.1.weight"] + w["block1.1.bias"]
    p1.retain_grad()
    a1 = torch.relu(p1)
    p2 = a1 @ w["block2.0.weight"].T + w["block2.0.bias"]
    p2.retain_grad()
    a2 = torch.relu(p2)
    logits = a2 @ w["head.weight"].T + w["head.bias"]
    nn.functional.cross_entropy(logits, y).backward()
    k = np.zeros((x.shape[0], x.shape[0]))
    for layer, p in ((1, p1), (2, p2)):
        for response in (p.detach().numpy(), p.grad.numpy()):
            k += 2.0**layer * np.abs(np.corrcoef(response))
    return float(np.linalg.slogdet(k)[1])


def tiny_batch(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 12, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (n,), generator=g)
    return x, y


def test_matches_an_independent_numpy_computation() -> None:
    model = TinyNet().double()
    x, y = tiny_batch()
    ref = reference_wrcor(model, x.requires_grad_(True), y)
    result = nas.proxies.score("wrcor", model, x.detach(), y)
    assert result.score == pytest.approx(ref, abs=1e-6)
    assert result.diagnostics["units_hooked"] == 2
    assert result.diagnostics["act_used"] == result.diagnostics["grad_used"] == 2


def test_inplace_activation_gives_the_same_score() -> None:
    a, b = TinyNet(inplace=True).double(), TinyNet(inplace=False).double()
    b.load_state_dict(a.state_dict())
    x, y = tiny_batch()
    assert nas.proxies.score("wrcor", a, x, y).score == pytest.approx(nas.proxies.score("wrcor", b, x, y).score, abs=1e-9)


def test_float32_is_close_to_float64() -> None:
    model = space.build(space.decode(RESNET_CELL))
    x, y = cifar10_batch(8)
    s32 = nas.proxies.score("wrcor", model, x, y).score
    s64 = nas.proxies.score("wrcor", model.double(), x.double(), y).score
    assert s32 == pytest.approx(s64, rel=1e-4)


def test_callers_model_is_left_untouched() -> None:
    model = space.build(space.decode(RESNET_CELL)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = cifar10_batch(8)
    result = nas.proxies.score("wrcor", model, x, y)
    assert math.isfinite(result.score)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "BN statistics changed"
    assert all(p.grad is None for p in model.parameters()), "gradients left on parameters"
    assert not model.training and not any(m.training for m in model.modules()), "train/eval mode changed"
    for m in model.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks and not m._backward_hooks, m


def test_nb201_units_and_layers() -> None:
    model = space.build(space.decode(RESNET_CELL))
    x, y = cifar10_batch(8)
    d = nas.proxies.score("wrcor", model, x, y).diagnostics
    # 2 convs in each of 15 cells, 2 in each reduction block, the final BN-ReLU
    assert d["units_hooked"] == 35 and d["layers"] == 18
    assert d["act_used"] == d["grad_used"] == 35
    assert d["units_unassigned"] == 0


def test_ablations_are_options_of_the_same_code() -> None:
    model = space.build(space.decode(RESNET_CELL))
    x, y = cifar10_batch(8)
    fam = {n: r.score for n, r in nas.proxies.score_many(list(VARIANTS), model, x, y).items()}
    for name in VARIANTS:
        assert nas.proxies.score(name, model, x, y).score == pytest.approx(fam[name], rel=1e-9)
    none = nas.proxies.score("wrcor", model, x, y, weighting="none").score
    assert fam["rcor"] == pytest.approx(none, rel=1e-9), "RCor is WRCor without weights"
    lin = nas.proxies.score("wrcor", model, x, y, weighting="linear").score
    assert lin == pytest.approx(fam["wrcor_linear"], rel=1e-9)
    assert len({round(v, 6) for v in fam.values()}) == 7, fam


def test_layer_weights() -> None:
    assert layer_weights(3, "exp_bottom_up") == [1.0, 2.0, 3.0]
    assert layer_weights(3, "exp_top_down") == [3.0, 2.0, 1.0]
    assert layer_weights(4, "quadratic")[3] == pytest.approx(math.log2(16))
    with pytest.raises(ValueError, match="unknown weighting 'cubic'"):
        layer_weights(3, "cubic")  # type: ignore[arg-type]


def test_fallback_without_declared_layers_uses_call_order() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4))
    x = torch.randn(10, 12)
    y = torch.randint(0, 4, (10,))
    d = nas.proxies.score("wrcor", model, x, y).diagnostics
    assert d["layers"] == 2 and d["units_hooked"] == 2
    # the same network declared as two layers gives the same score
    declared = nas.proxies.score("wrcor", model, x, y, layers=[model[2], model[4]]).score
    assert declared == pytest.approx(nas.proxies.score("wrcor", model, x, y).score)


def test_a_reused_activation_module_counts_every_call() -> None:
    class Reuse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.head, self.act = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3), nn.ReLU()

        def forward(self, x):
            return self.head(self.act(self.b(self.act(self.a(x)))))

    d = nas.proxies.score("wrcor", Reuse(), torch.randn(6, 6), torch.randint(0, 3, (6,))).diagnostics
    assert d["units_hooked"] == 2 and d["layers"] == 2 and d["grad_used"] == 2


def test_degenerate_cells_never_nan() -> None:
    x, y = cifar10_batch(16)
    # every edge 'none': no response depends on the input
    dead = nas.proxies.score("wrcor", space.build(space.decode("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")), x, y)
    assert dead.score == float("-inf")
    assert dead.diagnostics["act_used"] == dead.diagnostics["grad_used"] == 0
    assert dead.diagnostics["act_constant"] == dead.diagnostics["units_hooked"] == 5
    # node 3 cut from the input: the first cell's convs still respond, nothing downstream does
    cut = space.decode("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")
    r = nas.proxies.score("wrcor", space.build(cut), x, y)
    assert math.isfinite(r.score)
    assert r.diagnostics["act_used"] == 3 + 3 * 0  # the first cell only
    assert r.diagnostics["grad_used"] == 0 and r.diagnostics["grad_constant"] > 0


def test_non_finite_responses_are_reported() -> None:
    class Blowup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.act, self.head = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.act(self.lin(x) * 1e38 * 1e38))

    r = nas.proxies.score("wrcor", Blowup(), torch.randn(6, 4), torch.randint(0, 2, (6,)))
    assert r.score == float("-inf")
    assert r.diagnostics["act_nonfinite"] == 1


def test_circular_padding_probe_scores_a_circular_copy_and_restores_the_model() -> None:
    torch.manual_seed(3)

    def net(mode: str) -> nn.Sequential:
        torch.manual_seed(3)
        return nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, padding_mode=mode), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 6, 1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 6, 5, padding=2, groups=6, padding_mode=mode), nn.BatchNorm2d(6), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
        )  # fmt: skip

    x, y = torch.randn(12, 3, 10, 10), torch.randint(0, 4, (12,))
    zeros, circular = net("zeros"), net("circular")
    probed = nas.proxies.score("wrcor", zeros, x, y, padding="circular")
    assert probed.diagnostics["padding"] == "circular"
    assert probed.score == pytest.approx(nas.proxies.score("wrcor", circular, x, y).score, abs=1e-9)
    assert probed.score != pytest.approx(nas.proxies.score("wrcor", zeros, x, y).score, abs=1e-3)
    assert [m.padding_mode for m in zeros if isinstance(m, nn.Conv2d)] == ["zeros"] * 3, "model restored"
    shared = nas.proxies.score_many(["wrcor", "rcor"], zeros, x, y, {"wrcor": {"padding": "circular"}, "rcor": {"padding": "circular"}})
    assert shared["wrcor"].score == pytest.approx(probed.score, abs=1e-9)
    with pytest.raises(ValueError, match="padding='reflect' is not allowed; expected one of 'model', 'circular'"):
        nas.proxies.score("wrcor", zeros, x, y, padding="reflect")
    with pytest.raises(ValueError, match="padding='reflect' is not allowed"):
        nas.proxies.score_many(["wrcor", "rcor"], zeros, x, y, {"wrcor": {"padding": "reflect"}})
    assert [m.padding_mode for m in zeros if isinstance(m, nn.Conv2d)] == ["zeros"] * 3


def test_circular_padding_probe_leaves_transposed_convolutions_alone() -> None:
    from nas.proxies.wrcor import padded_as

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(4, 4, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Flatten(), nn.Linear(4 * 36, 3))  # fmt: skip
    with padded_as(model, "circular") as switched:
        assert switched == 1 and [m.padding_mode for m in model if hasattr(m, "padding_mode")] == [
            "circular", "zeros", "zeros"
        ]
    r = nas.proxies.score("wrcor", model, torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,)), padding="circular")
    assert math.isfinite(r.score)


def test_batch_splitting() -> None:
    model = space.build(space.decode(RESNET_CELL))
    x, y = cifar10_batch(12)
    whole = nas.proxies.score("wrcor", model, x, y)
    halves = nas.proxies.score("wrcor", model, x, y, split=2)
    first = nas.proxies.score("wrcor", model, x[:6], y[:6]).score
    second = nas.proxies.score("wrcor", model, x[6:], y[6:]).score
    assert halves.score == pytest.approx(first + second, rel=1e-9)
    assert halves.diagnostics["units_hooked"] == 2 * whole.diagnostics["units_hooked"]
    with pytest.raises(ValueError, match="split=7"):
        nas.proxies.score("wrcor", model, x, y, split=7)


@pytest.mark.parametrize(
    ("inputs", "targets", "error", "match"),
    [
        (torch.randn(1, 3, 32, 32), torch.tensor([1]), ValueError, "at least 2 samples"),
        (torch.randn(4, 3, 32, 32), None, ValueError, "needs labels"),
        (torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3]), ValueError, "got 3 labels for 4 inputs"),
        (np.zeros((4, 3, 32, 32)), torch.tensor([1, 2, 3, 4]), TypeError, "must be a torch.Tensor"),
        (torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 10]), ValueError, r"class indices in \[0, 9\]"),
    ],
)
def test_bad_input(inputs, targets, error, match) -> None:
    model = space.build(space.decode(RESNET_CELL))
    with pytest.raises(error, match=match):
        nas.proxies.score("wrcor", model, inputs, targets)


def test_registry_errors() -> None:
    assert {"wrcor", "rcor", "acor", "gcor", "params", "flops"} <= set(nas.proxies.available())
    with pytest.raises(ValueError, match="unknown proxy 'wrcorr'; available: .*wrcor"):
        nas.proxies.score("wrcorr", nn.Linear(2, 2), torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no option"):
        nas.proxies.score("wrcor", nn.Linear(2, 2), torch.randn(2, 2), torch.tensor([0, 1]), bogus=1)
    with pytest.raises(ValueError, match="already registered"):
        nas.proxies.register("wrcor")(lambda *a, **k: None)
