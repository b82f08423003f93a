from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas.arch.nb201 import parse_cell
from nas.data import cifar10_batch
from nas.models.nb201 import NB201Network
from nas.proxies.aznas import AZ_NAS_MEMBERS
from tests.conftest import RESNET_CELL

BASELINES = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "naswot", "zen", "zico", "l2_norm")
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def small_nb201(cell: str = RESNET_CELL) -> NB201Network:
    """The NAS-Bench-201 network at a test-friendly size (same code path, 1 cell per stage, width 4)."""
    return NB201Network(parse_cell(cell), num_classes=10, channels=4, cells_per_stage=1)


def small_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Real CIFAR-10 images, cropped to 16 x 16 to keep the suite fast."""
    x, y = cifar10_batch(n)
    return x[..., 8:24, 8:24].contiguous(), y


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the suite runs beside other jobs on a small shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def plain_sequential() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    )  # fmt: skip


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "grads": [p.grad for p in model.parameters()],
        "dtypes": [p.dtype for p in model.parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict, proxy: str) -> None:
    now = model.state_dict()
    changed = [k for k, v in before["state"].items() if not torch.equal(v, now[k])]
    assert not changed, f"{proxy} changed weights/buffers {changed[:3]}"
    assert [m.training for m in model.modules()] == before["modes"], f"{proxy} changed train/eval flags"
    assert all(p.grad is None for p in model.parameters()), f"{proxy} left .grad on parameters"
    assert [p.dtype for p in model.parameters()] == before["dtypes"], f"{proxy} changed dtypes"
    for m in model.modules():
        assert not (m._forward_pre_hooks or m._forward_hooks or m._backward_hooks), f"{proxy} left a hook on {m}"


@pytest.mark.parametrize("name", nas.proxies.available("single"))
def test_every_proxy_runs_on_nb201_and_leaves_the_model_alone(name: str) -> None:
    model = small_nb201()
    model.cells[1].eval()  # mixed modes must come back exactly as they were
    before = snapshot(model)
    x, y = small_batch()
    if name == "flops":  # cost.flops restores the top-level mode only (not part of this suite's proxies)
        model.train()
        before = snapshot(model)
    r = nas.proxies.score(name, model, x, y)
    assert r.proxy == name and math.isfinite(r.score), (name, r)
    assert_unchanged(model, before, name)


@pytest.mark.parametrize("name", nas.proxies.available("single"))
def test_every_proxy_on_a_plain_sequential(name: str) -> None:
    model = plain_sequential()
    before = snapshot(model)
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 10, (6,))
    if name == "zen":
        with pytest.raises(ValueError, match=r"zen .*BatchNorm.*Sequential"):
            nas.proxies.score(name, model, x, y)
    elif name in AZ_NAS_MEMBERS:  # AZ-NAS reads block outputs; a plain Sequential declares no blocks
        with pytest.raises(ValueError, match=rf"{name}: model Sequential declares no blocks"):
            nas.proxies.score(name, model, x, y)
    else:
        r = nas.proxies.score(name, model, x, y)
        assert math.isfinite(r.score), (name, r)
    assert_unchanged(model, before, name)


@pytest.mark.parametrize("name", BASELINES)
def test_docstring_names_paper_and_sign(name: str) -> None:
    doc = " ".join((nas.proxies.get(name).fn.__doc__ or "").split()).lower()
    assert "larger is better" in doc, f"{name} must document its sign"
    assert any(ch.isdigit() for ch in doc), f"{name} must cite its paper (authors, venue, year)"


def test_degenerate_network_scores_are_worst_not_nan() -> None:
    model = small_nb201(ALL_NONE)
    x, y = small_batch()
    for name in ("synflow", "jacob_cov", "naswot", "zen"):
        r = nas.proxies.score(name, model, x, y)
        assert r.score == float("-inf") and "reason" in r.diagnostics, (name, r)
    for name in ("grad_norm", "snip", "grasp"):  # no weight gradient reaches any Conv/Linear
        assert nas.proxies.score(name, model, x, y).score == 0.0, name


# ----------------------------------------------------------------- signs on easy cases
def test_l2_norm_is_the_sum_of_weight_norms() -> None:
    model = plain_sequential()
    x = torch.randn(4, 3, 16, 16)
    expected = sum(float(m.weight.detach().double().norm()) for m in model if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert nas.proxies.score("l2_norm", model, x).score == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    assert nas.proxies.score("l2_norm", model, x).score == pytest.approx(2 * expected, rel=1e-12)


def test_synflow_prefers_more_paths() -> None:
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(0)
    thin = small_nb201("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    torch.manual_seed(0)
    rich = small_nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    assert nas.proxies.score("synflow", rich, x).score > nas.proxies.score("synflow", thin, x).score
    d = nas.proxies.score("synflow", rich, x).diagnostics
    assert d["batchnorm_bypassed"] > 0 and d["log_of_sum"]


def test_synflow_never_overflows_a_deep_float32_network() -> None:
    torch.manual_seed(0)
    depth, width = 48, 32
    layers = [nn.Linear(width, width, bias=False) for _ in range(depth)]
    with torch.no_grad():
        for lin in layers:
            lin.weight.normal_(0.0, 1.0)
    model = nn.Sequential(*[m for lin in layers for m in (lin, nn.ReLU())])
    ws = [lin.weight.detach().abs() for lin in layers]
    naive = torch.ones(width)
    for w in ws:
        naive = w @ naive
    assert not torch.isfinite(naive.sum()), "the test network must overflow a float32 product"
    # log R in float64 with per-layer renormalization; every layer lies on every path, so
    # sum_l sum_w w dR/dw = depth * R and log synflow = log(depth) + log R
    v, log_r = np.ones(width), 0.0
    for w in ws:
        v = w.double().numpy() @ v
        log_r += math.log(v.sum())
        v /= v.sum()
    r = nas.proxies.score("synflow", model, torch.randn(2, width))
    assert math.isfinite(r.score)
    assert r.score == pytest.approx(math.log(depth) + log_r, rel=1e-9)
    assert next(model.parameters()).dtype == torch.float32


def test_naswot_singular_kernel_is_worst() -> None:
    model = plain_sequential()
    x = torch.randn(6, 3, 16, 16)
    ok = nas.proxies.score("naswot", model, x)
    assert math.isfinite(ok.score) and ok.diagnostics["units"] == 2
    dead = copy.deepcopy(model)
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.fill_(-1.0)  # no unit of the first ReLU ever fires: codes carry no sample identity
        dead[2].weight.zero_()
    assert nas.proxies.score("naswot", dead, x).score == float("-inf")


def test_naswot_matches_the_hamming_definition() -> None:
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(5, 5)
    codes = []
    h = x
    for m in model:
        if isinstance(m, nn.ReLU):
            codes.append((h > 0).numpy().astype(int))
        h = m(h).detach()
    c = np.concatenate(codes, axis=1)
    hamming = (c[:, None, :] != c[None, :, :]).sum(-1)
    expected = np.linalg.slogdet(c.shape[1] - hamming)[1]
    assert nas.proxies.score("naswot", model, x).score == pytest.approx(expected, rel=1e-9)


def test_jacob_cov_prefers_decorrelated_jacobians() -> None:
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(20, 30), nn.Linear(30, 4))  # same Jacobian for every sample
    relu = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))
    x = torch.randn(8, 20)
    lin = nas.proxies.score("jacob_cov", linear, x)
    rel = nas.proxies.score("jacob_cov", relu, x)
    assert rel.score > lin.score
    # all-ones correlation: eigenvalues (N, 0, ..., 0)
    k, n = 1e-5, 8
    expected = -(math.log(n + k) + 1 / (n + k) + (n - 1) * (math.log(k) + 1 / k))
    assert lin.score == pytest.approx(expected, rel=1e-6)


def test_jacob_cov_matches_numpy_definition() -> None:
    model = nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9), nn.Tanh(), nn.Linear(9, 3)).double()
    x = torch.randn(7, 6, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    model.train()
    ref_model = copy.deepcopy(model)
    ref_model(xr).backward(torch.ones(7, 3, dtype=torch.float64))
    v = np.linalg.eigvalsh(np.corrcoef(xr.grad.numpy()))
    expected = -np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5))
    assert nas.proxies.score("jacob_cov", model, x).score == pytest.approx(expected, rel=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_zen_does_not_depend_on_the_device() -> None:
    """Its re-initialization and Gaussian inputs are drawn on the CPU wherever the model runs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))
    x = torch.randn(4, 3, 16, 16)
    cpu = nas.proxies.score("zen", model, x).score
    gpu = nas.proxies.score("zen", model.cuda(), x.cuda()).score
    assert gpu == pytest.approx(cpu, rel=1e-4)


def test_zen_is_worst_when_features_ignore_the_input_and_needs_bn() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) * 0.0

    r = nas.proxies.score("zen", Constant(), torch.randn(4, 3, 8, 8))
    assert r.score == float("-inf") and "do not depend on the input" in r.diagnostics["reason"]
    model = small_nb201()
    x = torch.randn(4, 3, 16, 16)
    a, b = nas.proxies.score("zen", model, x), nas.proxies.score("zen", model, x)
    assert a.score == b.score, "zen draws its inputs and weights from its own seeded generator"
    assert nas.proxies.score("zen", model, x, seed=1).score != a.score
    running = nas.proxies.score("zen", model, x, bn_stats="running")
    assert math.isfinite(running.score) and running.score != a.score
    # a convolution fed only by a 'none' edge: its BatchNorm sees zeros and is left out, counted
    dead_branch = small_nb201("|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    r = nas.proxies.score("zen", dead_branch, x)
    assert math.isfinite(r.score) and r.diagnostics["bn_constant_input"] > 0, r


# ----------------------------------------------------------------- the gradient family vs references
class TinyBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn, self.fc2, self.fc3 = nn.Linear(6, 10), nn.BatchNorm1d(10), nn.Linear(10, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.bn(self.fc1(x))))))


def reference_gradient_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Independent computation on a copy with ordinary .backward(), as the zero-cost-NAS code does."""
    net = copy.deepcopy(model).train()
    layers = [net.fc1, net.fc2, net.fc3]
    acts = []
    h1 = net.fc1(x)
    h2 = net.fc2(torch.relu(net.bn(h1)))
    out = net.fc3(torch.relu(h2))
    for a in (h1, h2, out):
        a.retain_grad()
        acts.append(a)
    nn.functional.cross_entropy(out, y).backward()
    g = [m.weight.grad.clone() for m in layers]
    res = {
        "grad_norm": sum(float(t.norm()) for t in g),
        "snip": sum(float((m.weight.detach() * t).abs().sum()) for m, t in zip(layers, g, strict=True)),
        # each channel's saliency broadcast to its weights (fan-in each), then summed
        "fisher": sum(float((a.detach() * a.grad).pow(2).mean(0).mul(0.5).sum()) * m.weight.shape[1]
                      for a, m in zip(acts, layers, strict=True)),
    }
    net.zero_grad()
    loss = nn.functional.cross_entropy(net(x), y)
    gf = torch.autograd.grad(loss, [m.weight for m in layers], create_graph=True)
    sum((a.detach() * b).sum() for a, b in zip(g, gf, strict=True)).backward()
    res["grasp"] = sum(float((-m.weight.detach() * m.weight.grad).sum()) for m in layers)
    return res


def test_gradient_family_matches_reference() -> None:
    torch.manual_seed(3)
    model = TinyBN().double()
    x, y = torch.randn(10, 6, dtype=torch.float64), torch.randint(0, 4, (10,))
    ref = reference_gradient_proxies(model, x, y)
    for name, value in ref.items():
        assert nas.proxies.score(name, model, x, y).score == pytest.approx(value, rel=1e-8), name


def test_fisher_counts_each_channel_once_per_weight() -> None:
    """Conv channels carry (in_channels / groups) x kernel area weights: the score weighs by that."""
    torch.manual_seed(5)
    conv, depthwise, fc = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 5, groups=4, padding=2), nn.Linear(4, 3)
    model = nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), depthwise, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).double()
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (6,))
    net = copy.deepcopy(model).train()
    acts = []
    h = x
    for m in net:
        h = m(h)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            h.retain_grad()
            acts.append((h, m.weight[0].numel()))
    nn.functional.cross_entropy(h, y).backward()
    g_nk = [(a.detach() * a.grad).flatten(2).sum(2) if a.dim() > 2 else a.detach() * a.grad for a, _ in acts]
    saliency = [float(g.pow(2).mean(0).mul(0.5).sum()) for g in g_nk]
    assert [n for _, n in acts] == [27, 25, 4]
    result = nas.proxies.score("fisher", model, x, y)
    assert result.score == pytest.approx(sum(s * n for s, (_, n) in zip(saliency, acts, strict=True)), rel=1e-8)
    assert result.diagnostics["channel_sum"] == pytest.approx(sum(saliency), rel=1e-8)


def test_zico_matches_reference() -> None:
    torch.manual_seed(4)
    model = TinyBN().double()
    x, y = torch.randn(12, 6, dtype=torch.float64), torch.randint(0, 4, (12,))
    grads = []
    for cx, cy in ((x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])):
        net = copy.deepcopy(model).train()
        nn.functional.cross_entropy(net(cx), cy).backward()
        grads.append([m.weight.grad.flatten().numpy() for m in (net.fc1, net.fc2, net.fc3)])
    expected = 0.0
    for layer in range(3):
        g = np.stack([gr[layer] for gr in grads])
        std, mean_abs = g.std(0), np.abs(g).mean(0)
        nz = std > 0
        expected += math.log((mean_abs[nz] / std[nz]).sum())
    assert nas.proxies.score("zico", model, x, y, splits=3).score == pytest.approx(expected, rel=1e-8)
    with pytest.raises(ValueError, match="splits=1"):
        nas.proxies.score("zico", model, x, y, splits=1)


def test_nonfinite_values_raise_naming_proxy_and_model() -> None:
    class Blowup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.head = nn.Linear(4, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.fc(x) * 1e30 * 1e30)

    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    for name in ("grad_norm", "snip"):
        with pytest.raises(FloatingPointError, match=rf"{name}.*Blowup"):
            nas.proxies.score(name, Blowup(), x, y)


def test_proxies_without_scoreable_layers_raise_clearly() -> None:
    class NoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x[:, :3] * self.scale

    x, y = torch.randn(4, 5), torch.randint(0, 3, (4,))
    for name in ("grad_norm", "synflow", "zico", "l2_norm"):
        with pytest.raises(ValueError, match=rf"{name}.*NoLayers has no Conv/Linear"):
            nas.proxies.score(name, NoLayers(), x, y)
    with pytest.raises(ValueError, match="naswot: model NoLayers has no ReLU"):
        nas.proxies.score("naswot", NoLayers(), x)
