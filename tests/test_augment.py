"""The batched, per-sample training augmentation against torchvision's per-image transforms, on
real CIFAR-10 images: the same draws must give the same images, bit for bit, and the draws must
follow torchvision's distributions."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from datamodules.augment import (
    AUTOAUGMENT_FILL,
    IMAGENET_POLICY,
    BatchAutoAugment,
    BatchColorJitter,
    BatchRandomErasing,
    batch_augment,
    magnitude,
)
from nas.data import cifar10_sample


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """64 real CIFAR-10 test images, uint8 (n, 3, 32, 32), channels-last as FFCV hands them over."""
    x, _ = cifar10_sample()
    return torch.from_numpy(x[:64]).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def test_color_jitter_matches_torchvision_per_sample(images: torch.Tensor) -> None:
    jitter = BatchColorJitter(0.4, 0.4, 0.4, 0.2)
    draws = jitter.sample(len(images))
    out = jitter.apply(images, draws)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    ref = []
    for i in range(len(images)):
        y = images[i].contiguous()
        for op in draws.order[i].tolist():
            y = ops[op](y, float(draws.factors[op][i]))
        ref.append(y)
    ref = torch.stack(ref)
    assert torch.equal(out, ref), (
        f"{int((out != ref).sum())} pixels differ from torchvision's per-image result "
        f"(by up to {int((out.int() - ref.int()).abs().max())})"
    )
    assert not torch.equal(out, images)

    f = jitter.sample(20_000).factors
    assert 0.6 <= float(f[0].min()) and float(f[0].max()) <= 1.4 and abs(float(f[0].mean()) - 1.0) < 0.01
    assert -0.2 <= float(f[3].min()) and float(f[3].max()) <= 0.2 and abs(float(f[3].mean())) < 0.005
    orders = jitter.sample(24_000).order
    first = torch.bincount(orders[:, 0], minlength=4).float() / len(orders)
    assert (first - 0.25).abs().max() < 0.02, f"the first op is not uniform over the four: {first.tolist()}"
    only = BatchColorJitter(brightness=0.5)
    assert only.sample(3).factors[1:] == (None, None, None), "an amount of 0 leaves its op out"


def test_autoaugment_policy_and_magnitudes_are_torchvision_s() -> None:
    tv = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
    assert tuple(tuple(step) for step in tv._policies) == IMAGENET_POLICY
    for op, (fn, _signed) in tv._AUGMENTATION_SPACE.items():
        values = fn(10, 160, 224)
        for b in range(10):
            want = 0.0 if values is None else float(values[b])
            assert magnitude(op, None if values is None else b, 160, 224) == want, (op, b)


def test_autoaugment_matches_torchvision_per_sample(images: torch.Tensor) -> None:
    aug = BatchAutoAugment()
    tv = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, fill=AUTOAUGMENT_FILL)
    torch.manual_seed(3)
    steps = aug.sample(len(images), 32, 32)
    out = aug.apply(images, steps)
    changed = 0
    for i in range(len(images)):
        y = images[i].contiguous()
        for step in steps:
            if step[i] is not None:
                op, value = step[i]
                y = tv._apply_image_or_video_transform(y, op, value, interpolation=InterpolationMode.NEAREST, fill=tv._fill)
        assert torch.equal(out[i], y), f"sample {i} ({[s[i] for s in steps]}) differs from torchvision's per-image op"
        changed += not torch.equal(out[i], images[i])
    assert changed > len(images) // 2, "AutoAugment changed too few images"
    rotated = BatchAutoAugment(fill=0.0).apply(images[:1], [[("Rotate", 30.0)]])
    assert int(rotated[0, :, 0, 0].max()) == 0 and int(aug.apply(images[:1], [[("Rotate", 30.0)]])[0, 0, 0, 0]) == 128


def test_autoaugment_draws_follow_the_policy() -> None:
    torch.manual_seed(0)
    n = 25_000
    steps = BatchAutoAugment().sample(n, 224, 224)
    for k in range(2):
        rate = sum(d is not None for d in steps[k]) / n
        want = sum(p[k][1] for p in IMAGENET_POLICY) / len(IMAGENET_POLICY)
        assert abs(rate - want) < 0.015, f"step {k + 1} applies with rate {rate:.3f}, expected {want:.3f}"
    rotations = [d[1] for d in steps[0] if d is not None and d[0] == "Rotate"]
    assert abs(sum(r < 0 for r in rotations) / len(rotations) - 0.5) < 0.05, "signed ops take each sign half the time"


def test_random_erasing_follows_torchvision_s_rule(images: torch.Tensor) -> None:
    erase = BatchRandomErasing(p=0.5)
    torch.manual_seed(1)
    boxes = erase.sample(6000, 32, 32)
    top, left, h, w = boxes.unbind(1)
    on = h > 0
    assert bool(((top + h <= 32) & (left + w <= 32) & (h < 32) & (w < 32))[on].all()), "a box leaves the image"
    frac = (h * w).double() / 1024
    tv = v2.RandomErasing(p=0.5)
    tv_frac = torch.tensor([float((tv(torch.ones(1, 32, 32)) == 0).double().mean()) for _ in range(6000)])
    assert abs(float(on.double().mean()) - float((tv_frac > 0).double().mean())) < 0.03
    assert abs(float(frac[on].mean()) - float(tv_frac[tv_frac > 0].mean())) < 0.01, "erased areas differ from torchvision's"

    x = images.float().sub(128).div(64)
    out = erase.apply(x, torch.tensor([[2, 3, 5, 7]] + [[0, 0, 0, 0]] * (len(x) - 1)))
    assert bool((out[0, :, 2:7, 3:10] == 0).all()), "the box is not erased in every channel"
    untouched = torch.ones_like(out, dtype=torch.bool)
    untouched[0, :, 2:7, 3:10] = False
    assert torch.equal(out[untouched], x[untouched]), "pixels outside the box changed"


def test_batch_augment_options_and_errors(images: torch.Tensor) -> None:
    uint8_ops, float_ops = batch_augment((0.4, 0.4, 0.4, 0.2), True, 0.5)
    assert [type(m) for m in uint8_ops] == [BatchColorJitter, BatchAutoAugment]
    assert [type(m) for m in float_ops] == [BatchRandomErasing]
    assert batch_augment(None, False, 0.0) == ([], [])
    assert batch_augment((0.4, 0.4, 0.4), False, 0.0)[0][0].amounts[3] == 0.0, "hue is optional"
    for args, match in (
        (((0.4, 0.4), False, 0.0), r"color_jitter takes \(brightness, contrast, saturation\[, hue\]\), got \(0.4, 0.4\)"),
        (((-0.1, 0.0, 0.0), False, 0.0), "color jitter brightness must be >= 0, got -0.1"),
        (((0.0, 0.0, 0.0, 0.7), False, 0.0), r"color jitter hue must be in \[0, 0.5\], got 0.7"),
        ((None, False, 1.5), r"random_erasing is a probability in \[0, 1\], got 1.5"),
    ):
        with pytest.raises(ValueError, match=match):
            batch_augment(*args)
    with pytest.raises(ValueError, match=r"expects a uint8 RGB batch \(n, 3, h, w\), got torch.float32"):
        BatchAutoAugment()(images.float())
