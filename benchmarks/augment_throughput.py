"""Cost of the paper's training augmentation: batched per-sample modules against per-image torchvision.

Both sides apply colour jitter (0.4, 0.4, 0.4, 0.2), AutoAugment (ImageNet policy), normalization
and random erasing (p 0.5) to the same uint8 batches, on the same device:

- ``batched``: :mod:`datamodules.augment` on the whole batch, as the FFCV datamodule runs it;
- ``per-image tensor``: torchvision's v2 transforms called once per image tensor (what a loop
  over the batch on the device would cost);
- ``per-image PIL``: torchvision's v2 transforms on PIL images, as the ImageFolder datamodule's
  workers run them (CPU only; one worker's rate).

Images are real CIFAR-10 test images resized to ``--size`` (bilinear), so the content statistics
that Equalize and AutoContrast see are those of photographs.

    python benchmarks/augment_throughput.py --batch-size 128 --size 224 --batches 4
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from datamodules._common import IMAGENET_MEAN, IMAGENET_STD
from datamodules.augment import AUTOAUGMENT_FILL, batch_augment
from nas.data import cifar10_sample

JITTER = (0.4, 0.4, 0.4, 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per method (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images, _ = cifar10_sample()
    small = torch.from_numpy(images[: args.batch_size]).permute(0, 3, 1, 2)
    batch = F.resize(small, [args.size, args.size], antialias=True).contiguous(memory_format=torch.channels_last)
    batch = batch.to(device)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in batch.cpu()]

    uint8_ops, float_ops = batch_augment(JITTER, True, 0.5)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255

    def batched() -> None:
        x = batch
        for m in uint8_ops:
            x = m(x)
        x = (x.float() - mean) / std
        for m in float_ops:
            x = m(x)

    per_image = v2.Compose([
        v2.ColorJitter(*JITTER),
        v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, fill=AUTOAUGMENT_FILL),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
        v2.RandomErasing(p=0.5),
    ])  # fmt: skip
    pil_pipeline = v2.Compose([*per_image.transforms[:2], v2.ToImage(), *per_image.transforms[2:]])

    def per_image_tensor() -> None:
        torch.stack([per_image(img) for img in batch])

    def per_image_pil() -> None:
        torch.stack([pil_pipeline(img) for img in pil])

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    methods = {"batched": batched, "per-image tensor": per_image_tensor}
    if device.type == "cpu":
        methods["per-image PIL"] = per_image_pil
    print(f"{args.batches} batches of {args.batch_size} x 3 x {args.size}^2, device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    rates = {}
    for name, fn in methods.items():
        torch.manual_seed(0)
        fn()  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(args.batches):
            fn()
        sync()
        seconds = time.perf_counter() - start
        rates[name] = args.batches * args.batch_size / seconds
        print(f"  {name:17s} {rates[name]:9.1f} images/s  ({seconds / args.batches * 1000:.1f} ms per batch)")
    for name in methods:
        if name != "batched":
            print(f"batched / {name}: {rates['batched'] / rates[name]:.2f}x")


if __name__ == "__main__":
    main()
