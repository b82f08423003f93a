"""Convert one ImageFolder split (``SRC/SPLIT/<class>/<image>``) into an FFCV ``.beton`` file.

Fields: ``image`` (:class:`ffcv.fields.RGBImageField`) and ``label`` (:class:`ffcv.fields.IntField`,
the class index in sorted folder order, as torchvision's ImageFolder assigns it).

Example:
    python -m datamodules.ffcv_writer --src /data/imagenet --split train \\
        --out /data/ffcv/train.beton --max-resolution 256 --jpeg-quality 90 \\
        --compress-probability 0.5 --workers 16
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ffcv.fields import IntField, RGBImageField
from ffcv.writer import DatasetWriter
from torchvision.datasets import ImageFolder

from datamodules._common import check_image_folder

WriteMode = Literal["proportion", "jpg", "raw", "smart"]


def write_beton(
    src: str | Path,
    split: str,
    out: str | Path,
    *,
    max_resolution: int | None = 256,
    jpeg_quality: int = 90,
    compress_probability: float = 0.5,
    write_mode: WriteMode = "proportion",
    workers: int = 8,
    chunksize: int = 100,
) -> int:
    """Write ``src/split`` to ``out`` and return the number of images written.

    The file is written next to ``out`` under a temporary name and renamed at the end, so an
    interrupted conversion never leaves a truncated ``.beton`` behind.

    Args:
        src: dataset root holding the split folders.
        split: split folder name (``train``, ``val``).
        out: output ``.beton`` path (parent folders are created).
        max_resolution: longest side after resizing (images are only shrunk); None keeps sizes.
        jpeg_quality: JPEG quality of compressed images.
        compress_probability: share of images stored as JPEG when ``write_mode='proportion'``.
        write_mode: ffcv's RGBImageField mode: ``proportion`` (a random share as JPEG, the rest
            raw), ``jpg`` (all JPEG), ``raw`` (all raw pixels), ``smart``.
        workers: writer processes.
        chunksize: images handed to a worker at a time.

    Raises:
        FileNotFoundError: the split folder is missing or holds no images.
        ValueError: an argument is out of range.
    """
    folder = check_image_folder(Path(src) / split)
    if write_mode not in ("proportion", "jpg", "raw", "smart"):
        raise ValueError(f"write_mode must be proportion, jpg, raw or smart, got {write_mode!r}")
    if not 0.0 <= compress_probability <= 1.0:
        raise ValueError(f"compress_probability must be in [0, 1], got {compress_probability}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if max_resolution is not None and max_resolution < 1:
        raise ValueError(f"max_resolution must be >= 1 or None, got {max_resolution}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    dataset = ImageFolder(str(folder))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    fields = {
        "image": RGBImageField(
            write_mode=write_mode,
            max_resolution=max_resolution,
            jpeg_quality=jpeg_quality,
            compress_probability=compress_probability,
        ),
        "label": IntField(),
    }
    writer = DatasetWriter(str(tmp), fields, num_workers=workers)
    writer.from_indexed_dataset(dataset, chunksize=chunksize)
    os.replace(tmp, out)
    return len(dataset)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the number of images written."""
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.ffcv_writer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--src", required=True, help="dataset root holding SPLIT/<class>/<image>")
    parser.add_argument(
        "--split", required=True, help="split folder under --src, e.g. train or val"
    )
    parser.add_argument("--out", required=True, help="output .beton path")
    parser.add_argument(
        "--max-resolution", type=int, default=256, help="longest side; 0 keeps sizes"
    )
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--compress-probability", type=float, default=0.5)
    parser.add_argument(
        "--write-mode", choices=("proportion", "jpg", "raw", "smart"), default="proportion"
    )
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--chunksize", type=int, default=100)
    args = parser.parse_args(argv)
    n = write_beton(
        args.src,
        args.split,
        args.out,
        max_resolution=args.max_resolution or None,
        jpeg_quality=args.jpeg_quality,
        compress_probability=args.compress_probability,
        write_mode=args.write_mode,
        workers=args.workers,
        chunksize=args.chunksize,
    )
    print(f"wrote {n} images from {Path(args.src) / args.split} to {args.out}")
    return n


if __name__ == "__main__":
    main()
