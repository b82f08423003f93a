"""The paper's training augmentation for whole batches on their device, drawn per sample.

The published recipe augments every ImageNet image with colour jitter, AutoAugment (the ImageNet
policy) and random erasing, one PIL image at a time. FFCV decodes and crops on the CPU and hands
the training loop whole uint8 batches on the GPU, where per-image transforms have no place to
run. These modules draw each sample's parameters independently, as the per-image transforms
would, and apply them to the batch where it is:

- :class:`BatchColorJitter`: brightness, contrast, saturation and hue factors per sample, applied
  in a random order per sample, with torchvision's uint8 arithmetic.
- :class:`BatchAutoAugment`: each sample draws one of the 25 ImageNet sub-policies (Cubuk et al.,
  "AutoAugment", 2019) and, for each of its two operations, whether it applies and its sign.
  Samples that drew the same operation and magnitude are transformed together by torchvision's
  functional op, so a batch costs a few dozen op calls whatever its size.
- :class:`BatchRandomErasing`: with probability ``p`` per sample, a rectangle of random area and
  aspect ratio is set to ``value`` (after normalization 0 is the mean colour), with
  torchvision's ten attempts to fit one.

Each module's ``sample`` returns its draws for a batch and ``apply(images, draws)`` uses them, so
a test can replay the same draws through torchvision's per-image functions (on real CIFAR-10
images they give the same images, bit for bit). Draws come from torch's global generator on the
CPU; the images stay where they are. The ImageFolder datamodule uses torchvision's own per-image
transforms for the same options.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

# ------------------------------------------------------------------------------------ colour jitter


def _gray(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma as torchvision computes it for uint8 (floored), shape (n, 1, h, w)."""
    r, g, b = images.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(-3)


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """``ratio * images + (1 - ratio) * other`` clamped and truncated to uint8, ratio per sample.

    ``addcmul`` rounds as torchvision's ``mul(ratio).add_(other, alpha=1 - ratio)`` does.
    """
    return torch.addcmul(images * ratio, other, 1.0 - ratio).clamp_(0, 255).to(torch.uint8)


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] to HSV, (n, 3, h, w), in the order of operations torchvision rounds with."""
    r, g, _ = rgb.unbind(dim=-3)
    minc, maxc = torch.aminmax(rgb, dim=-3)
    flat = maxc == minc
    ones = torch.ones_like(maxc)
    delta = maxc - minc
    s = delta / torch.where(flat, ones, maxc)
    rc, gc, bc = ((maxc.unsqueeze(-3) - rgb) / torch.where(flat, ones, delta).unsqueeze(-3)).unbind(dim=-3)
    red, green = maxc == r, (maxc == g) & (maxc != r)
    blue = ~(red | green)
    h = (bc - gc) * red + (rc + 2.0 - bc) * green + (gc + 4.0 - rc) * blue
    h = h.mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv.unbind(dim=-3)
    h6 = h * 6
    i = torch.floor(h6)
    f = h6 - i
    i = i.to(torch.int64).remainder_(6)
    sf = s * f
    one_minus_s = 1.0 - s
    q = ((1.0 - sf) * v).clamp_(0.0, 1.0)
    t = ((sf + one_minus_s) * v).clamp_(0.0, 1.0)
    p = (one_minus_s * v).clamp_(0.0, 1.0)
    table = torch.stack((v, p, q, t), dim=-3)  # each hue sector takes (r, g, b) from these rows
    select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=hsv.device)
    return table.gather(-3, select[:, i].movedim(0, -3))


def _adjust(images: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    """Colour op ``op`` (0 brightness, 1 contrast, 2 saturation, 3 hue) on uint8 (n, 3, h, w)."""
    f = factor.view(-1, 1, 1, 1)
    if op == 0:
        return (images * f).clamp_(0, 255).to(torch.uint8)
    if op == 1:
        mean = _gray(images).mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(images, mean, f)
    if op == 2:
        return _blend(images, _gray(images), f)
    hsv = _rgb_to_hsv(F.to_dtype(images, torch.float32, scale=True))
    hsv[:, 0] = (hsv[:, 0] + factor.view(-1, 1, 1)).remainder_(1.0)
    return F.to_dtype(_hsv_to_rgb(hsv), torch.uint8, scale=True)


_CHUNK_PIXELS = 1 << 21


@dataclass(frozen=True)
class JitterDraws:
    """Per-sample factors (``None`` for an op that is off) and the order of the four ops."""

    factors: tuple[torch.Tensor | None, ...]
    order: torch.Tensor  # (n, 4): op applied at each position, per sample


class BatchColorJitter(nn.Module):
    """Colour jitter drawn per sample (torchvision's ``ColorJitter`` semantics) on uint8 batches.

    Factors: brightness, contrast and saturation uniform in ``[max(0, 1 - x), 1 + x]``, hue uniform
    in ``[-hue, hue]``; the four are applied in a random order per sample; an argument of 0
    leaves its op out.

    Args:
        brightness, contrast, saturation: jitter amounts, >= 0.
        hue: hue jitter in [0, 0.5].

    Raises:
        ValueError: a negative amount or a hue above 0.5.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0) -> None:
        super().__init__()
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not value >= 0:
                raise ValueError(f"color jitter {name} must be >= 0, got {value!r}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"color jitter hue must be in [0, 0.5], got {hue!r}")
        self.amounts = (float(brightness), float(contrast), float(saturation), float(hue))

    def sample(self, n: int) -> JitterDraws:
        factors: list[torch.Tensor | None] = []
        for op, amount in enumerate(self.amounts):
            if amount == 0:
                factors.append(None)
                continue
            low, high = (-amount, amount) if op == 3 else (max(0.0, 1.0 - amount), 1.0 + amount)
            factors.append(torch.empty(n).uniform_(low, high))
        order = torch.rand(n, 4).argsort(dim=1)  # a uniform random permutation per sample
        return JitterDraws(tuple(factors), order)

    def apply(self, images: torch.Tensor, draws: JitterDraws) -> torch.Tensor:
        _check_uint8_batch(images, type(self).__name__)
        n = len(images)
        if n == 0:
            return images.clone()
        # Samples are sorted by their order of ops, so that each order is one contiguous slice
        # (two copies in all, instead of a gather and a scatter per op), and cut into chunks of
        # about 2M pixels, which bound the float temporaries of the hue conversion (a dozen copies
        # of the chunk) and keep them in cache on a CPU.
        key = draws.order @ torch.tensor([64, 16, 4, 1])
        key, perm = key.sort(stable=True)
        x = images[perm.to(images.device)]
        factors = [None if f is None else f[perm].to(images.device) for f in draws.factors]
        step = max(1, _CHUNK_PIXELS // (images.shape[-2] * images.shape[-1]))
        start = 0
        for count in torch.unique_consecutive(key, return_counts=True)[1].tolist():
            ops = draws.order[perm[start]].tolist()
            for a in range(start, start + count, step):
                b = min(a + step, start + count)
                for op in ops:
                    if factors[op] is not None:
                        x[a:b] = _adjust(x[a:b], op, factors[op][a:b])
            start += count
        out = torch.empty_like(images)
        out[perm.to(images.device)] = x
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images, self.sample(len(images)))

    def extra_repr(self) -> str:
        b, c, s, h = self.amounts
        return f"brightness={b}, contrast={c}, saturation={s}, hue={h}"


# ------------------------------------------------------------------------------------ AutoAugment

#: The ImageNet policy (Cubuk et al. 2019): 25 sub-policies of two (operation, probability,
#: magnitude bin out of 10) each; a sample draws one sub-policy.
IMAGENET_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)

_BINS = 10
#: Value of the pixels a rotation or shear uncovers: the mid-grey of the AutoAugment paper's and the
#: published code's implementation (torchvision's default is 0).
AUTOAUGMENT_FILL = 128.0
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def magnitude(op: str, bin_: int | None, height: int, width: int) -> float:
    """The magnitude of ``op`` at ``bin_`` (of 10) for an image of ``height`` x ``width`` (unsigned)."""
    if bin_ is None:
        return 0.0
    ranges = {
        "ShearX": (0.0, 0.3), "ShearY": (0.0, 0.3), "Rotate": (0.0, 30.0),
        "TranslateX": (0.0, 150.0 / 331.0 * width), "TranslateY": (0.0, 150.0 / 331.0 * height),
        "Brightness": (0.0, 0.9), "Color": (0.0, 0.9), "Contrast": (0.0, 0.9), "Sharpness": (0.0, 0.9),
        "Solarize": (1.0, 0.0),
    }  # fmt: skip
    if op == "Posterize":
        return float((8 - (torch.arange(_BINS) / ((_BINS - 1) / 4))).round().int()[bin_])
    if op not in ranges:
        raise ValueError(f"unknown AutoAugment operation {op!r}")
    return float(torch.linspace(*ranges[op], _BINS)[bin_])


def apply_op(images: torch.Tensor, op: str, value: float, fill: float) -> torch.Tensor:
    """One AutoAugment operation with a signed magnitude on a uint8 batch (the same for every image)."""
    nearest = InterpolationMode.NEAREST
    if op in ("ShearX", "ShearY"):
        shear = [math.degrees(math.atan(value)), 0.0] if op == "ShearX" else [0.0, math.degrees(math.atan(value))]
        return F.affine(images, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=nearest, fill=fill, center=[0, 0])
    if op in ("TranslateX", "TranslateY"):
        shift = [int(value), 0] if op == "TranslateX" else [0, int(value)]
        return F.affine(images, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=nearest, fill=fill)
    if op == "Rotate":
        return F.rotate(images, angle=value, interpolation=nearest, fill=fill)
    if op == "Brightness":
        return F.adjust_brightness(images, 1.0 + value)
    if op == "Color":
        return F.adjust_saturation(images, 1.0 + value)
    if op == "Contrast":
        return F.adjust_contrast(images, 1.0 + value)
    if op == "Sharpness":
        return F.adjust_sharpness(images, 1.0 + value)
    if op == "Posterize":
        return F.posterize(images, bits=int(value))
    if op == "Solarize":
        return F.solarize(images, threshold=255.0 * value)
    if op == "AutoContrast":
        return F.autocontrast(images)
    if op == "Equalize":
        return F.equalize(images)
    if op == "Invert":
        return F.invert(images)
    raise ValueError(f"unknown AutoAugment operation {op!r}")


#: One sample's draw for one step: (operation, signed magnitude), or None when it does not apply.
Step = tuple[str, float] | None


class BatchAutoAugment(nn.Module):
    """AutoAugment with the ImageNet policy, drawn per sample, on uint8 batches.

    Per sample: a sub-policy uniformly among the 25; for each of its two operations, apply it
    with its probability, with a random sign for the signed ones. Geometric operations fill
    uncovered pixels with ``fill`` (default :data:`AUTOAUGMENT_FILL`).

    Args:
        fill: value of pixels a rotation or shear uncovers.
    """

    def __init__(self, fill: float = AUTOAUGMENT_FILL) -> None:
        super().__init__()
        if not 0 <= fill <= 255:
            raise ValueError(f"AutoAugment fill must be in [0, 255], got {fill!r}")
        self.fill = float(fill)

    def sample(self, n: int, height: int, width: int) -> list[list[Step]]:
        """Two steps (lists of ``n`` draws): what each sample's first and second operation is."""
        # the magnitude of every (sub-policy, step) for this image size, once per batch
        values = [[magnitude(op, bin_, height, width) for op, _, bin_ in sub] for sub in IMAGENET_POLICY]
        probs = torch.tensor([[prob for _, prob, _ in sub] for sub in IMAGENET_POLICY])
        policy = torch.randint(len(IMAGENET_POLICY), (n,))
        steps: list[list[Step]] = []
        for k in range(2):
            applies = (torch.rand(n) <= probs[policy, k]).tolist()
            negative = (torch.rand(n) <= 0.5).tolist()
            step: list[Step] = []
            for p, on, neg in zip(policy.tolist(), applies, negative, strict=True):
                op, value = IMAGENET_POLICY[p][k][0], values[p][k]
                step.append((op, -value if neg and op in _SIGNED else value) if on else None)
            steps.append(step)
        return steps

    def apply(self, images: torch.Tensor, steps: Sequence[Sequence[Step]]) -> torch.Tensor:
        _check_uint8_batch(images, type(self).__name__)
        out = images.clone()
        for step in steps:
            groups: dict[tuple[str, float], list[int]] = defaultdict(list)
            for i, draw in enumerate(step):
                if draw is not None:
                    groups[draw].append(i)
            for (op, value), members in groups.items():
                idx = torch.tensor(members, device=out.device)
                out[idx] = apply_op(out[idx], op, value, self.fill)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images, self.sample(len(images), images.shape[-2], images.shape[-1]))

    def extra_repr(self) -> str:
        return f"policy=imagenet, fill={self.fill}"


# ------------------------------------------------------------------------------------ random erasing


class BatchRandomErasing(nn.Module):
    """Random erasing (Zhong et al. 2020) drawn per sample, torchvision's ``RandomErasing`` rule.

    With probability ``p`` a sample gets one rectangle of area ``scale`` x (its area) and aspect
    ratio log-uniform in ``ratio``, placed uniformly, set to ``value``; of ten attempts the first
    that fits is used, and none fitting leaves the sample as it is.

    Args:
        p: probability per sample.
        scale: area range, as fractions of the image.
        ratio: aspect-ratio range (height / width).
        value: the erased pixels' value (0 after normalization: the mean colour).
    """

    def __init__(self, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"random erasing probability must be in [0, 1], got {p!r}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"random erasing scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"random erasing ratio must satisfy 0 < low <= high, got {tuple(ratio)}")
        self.p, self.scale, self.ratio, self.value = float(p), tuple(scale), tuple(ratio), float(value)

    def sample(self, n: int, height: int, width: int) -> torch.Tensor:
        """(n, 4) integer boxes ``top, left, height, width``; height 0 for a sample left as it is."""
        tries = 10
        area = height * width * torch.empty(n, tries, dtype=torch.float64).uniform_(*self.scale)
        log_r = torch.empty(n, tries, dtype=torch.float64).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = log_r.exp()
        h = (area * aspect).sqrt().round().long()
        w = (area / aspect).sqrt().round().long()
        fits = (h < height) & (w < width)
        first = fits.int().argmax(dim=1, keepdim=True)
        h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
        erase = fits.any(dim=1) & (torch.rand(n) < self.p)
        top = (torch.rand(n, dtype=torch.float64) * (height - h + 1)).floor().long()
        left = (torch.rand(n, dtype=torch.float64) * (width - w + 1)).floor().long()
        boxes = torch.stack((top, left, h, w), dim=1)
        boxes[~erase] = 0
        return boxes

    def apply(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects a batch (n, c, h, w), got shape {tuple(images.shape)}")
        b = boxes.to(images.device)
        rows = torch.arange(images.shape[-2], device=images.device).view(1, -1, 1)
        cols = torch.arange(images.shape[-1], device=images.device).view(1, 1, -1)
        top, left, h, w = (b[:, k].view(-1, 1, 1) for k in range(4))
        mask = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        return images.clone().masked_fill_(mask.unsqueeze(1), self.value)  # keeps the memory format

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images, self.sample(len(images), images.shape[-2], images.shape[-1]))

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value}"


def _check_uint8_batch(images: torch.Tensor, who: str) -> None:
    if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(
            f"{who} expects a uint8 RGB batch (n, 3, h, w), got {images.dtype} of shape {tuple(images.shape)}"
        )


def batch_augment(
    color_jitter: Sequence[float] | None, auto_augment: bool, random_erasing: float
) -> tuple[list[nn.Module], list[nn.Module]]:
    """The modules for these datamodule options: those on uint8 images, those after normalization.

    Args:
        color_jitter: ``(brightness, contrast, saturation[, hue])`` or None.
        auto_augment: AutoAugment with the ImageNet policy.
        random_erasing: probability of erasing per sample (0: off).

    Raises:
        ValueError: naming the bad option and what it takes.
    """
    on_uint8: list[nn.Module] = []
    if color_jitter is not None:
        if len(color_jitter) not in (3, 4):
            raise ValueError(
                f"color_jitter takes (brightness, contrast, saturation[, hue]), got {tuple(color_jitter)}"
            )
        on_uint8.append(BatchColorJitter(*(float(v) for v in color_jitter)))
    if auto_augment:
        on_uint8.append(BatchAutoAugment())
    if not 0 <= random_erasing <= 1:
        raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing!r}")
    after_normalize: list[nn.Module] = [BatchRandomErasing(random_erasing)] if random_erasing else []
    return on_uint8, after_normalize
