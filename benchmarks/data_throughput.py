"""Training-loader throughput: FFCV .beton versus torchvision ImageFolder, same pipeline.

Generates ``--n`` JPEGs of synthetic content (smooth colour fields, shapes and noise, 400-500 px
a side) as an ImageFolder tree in a temporary folder, writes them to a .beton with the project's
writer, and reads one training epoch through :class:`datamodules.FFCVDataModule` and
:class:`datamodules.ImageFolderDataModule` with the same random-resized crop to ``--image-size``,
flip, normalization, batch size and worker count. Each loader first runs one untimed warm-up
epoch (FFCV compiles its pipeline with numba then; the DataLoader starts its workers), then one
timed epoch. Prints images/s for each and the ratio.

    python benchmarks/data_throughput.py --n 2000 --workers 2 --batch-size 64
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules import FFCVDataModule, ImageFolderDataModule  # noqa: E402
from datamodules.ffcv_writer import write_beton  # noqa: E402


def make_images(root: Path, n: int, classes: int, size_range: tuple[int, int], seed: int) -> None:
    """``n`` JPEGs (quality 90) under ``root/train/<class>/`` with random sizes in ``size_range``."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / "train" / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(0, 255, size=3)
        slope = rng.uniform(-0.3, 0.3, size=(3, 2))
        img = base[:, None, None] + slope[:, 0, None, None] * xx + slope[:, 1, None, None] * yy
        img = img.transpose(1, 2, 0) + rng.normal(0, 12, size=(h, w, 3))
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        pil.save(root / "train" / f"class{i % classes:02d}" / f"{i:05d}.jpg", quality=90)


def timed_epoch(loader: Iterable) -> tuple[int, float]:
    """Images and seconds for one pass over ``loader``."""
    start, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += len(x)
    return seen, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of images")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--min-side", type=int, default=400)
    parser.add_argument("--max-side", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=224, help="training crop side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=2, help="FFCV threads / DataLoader processes"
    )
    parser.add_argument(
        "--max-resolution",
        type=int,
        default=512,
        help="writer's longest side (512 keeps the 400-500 px originals)",
    )
    parser.add_argument("--write-mode", default="jpg", choices=("jpg", "proportion", "raw"))
    parser.add_argument(
        "--dir", type=Path, default=None, help="work folder (default: a temporary one)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_images(root, args.n, args.classes, (args.min_side, args.max_side), args.seed)
        t1 = time.perf_counter()
        beton = root / "train.beton"
        write_beton(
            root,
            "train",
            beton,
            max_resolution=args.max_resolution,
            write_mode=args.write_mode,
            jpeg_quality=90,
            workers=args.workers,
        )
        t2 = time.perf_counter()
        jpeg_mb = sum(f.stat().st_size for f in (root / "train").rglob("*.jpg")) / 2**20
        print(
            f"{args.n} JPEGs ({jpeg_mb:.0f} MiB) in {t1 - t0:.1f} s; .beton "
            f"({beton.stat().st_size / 2**20:.0f} MiB, {args.write_mode}) in {t2 - t1:.1f} s"
        )

        common = dict(
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=args.workers,
            drop_last=True,
        )
        ffcv_dm = FFCVDataModule(str(beton), str(beton), **common)
        ffcv_dm.setup("fit")
        folder_dm = ImageFolderDataModule(str(root), val_split="train", **common)
        folder_dm.setup("fit")
        results = {}
        for name, loader in (
            ("ffcv", ffcv_dm.train_dataloader()),
            ("imagefolder", folder_dm.train_dataloader()),
        ):
            warm_n, warm_s = timed_epoch(loader)
            n, s = timed_epoch(loader)
            results[name] = n / s
            print(
                f"{name:12s} warm-up epoch {warm_n} images in {warm_s:6.1f} s; "
                f"timed epoch {n} images in {s:6.1f} s = {n / s:7.1f} images/s"
            )
        print(
            f"ffcv / imagefolder = {results['ffcv'] / results['imagefolder']:.2f}x "
            f"(crop {args.image_size}, batch {args.batch_size}, {args.workers} workers, "
            f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
            f"load average {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()
