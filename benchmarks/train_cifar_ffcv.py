"""End-to-end training check on real images, on CPU: JPEG tree -> .beton -> train.py -> accuracy.

Extracts the 12,000-image CIFAR-10 JPEG tree (train: 1,000 per class, val: 200 per class) to a
temporary folder, writes ``train.beton``/``val.beton`` with ``python -m datamodules.ffcv_writer``,
trains a NAS-Bench-201 network with ``python train.py fit --config configs/train/cifar10_ffcv.yaml``
(FFCV datamodule, 32x32) and prints the validation top-1 of every epoch from the CSV log, the wall
time of each stage, and whether the final top-1 reaches ``--target``.

    python benchmarks/train_cifar_ffcv.py --epochs 10
    python benchmarks/train_cifar_ffcv.py --epochs 1 --channels 8     # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAR = REPO.parent / "shared" / "data" / "cifar10" / "cifar10_jpeg_12k.tar.gz"
CELLS = {
    "resnet": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "best": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
}


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` from the repository root, appending its output to ``log``; returns seconds."""
    start = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cell", choices=sorted(CELLS), default="resnet")
    parser.add_argument(
        "--channels", type=int, default=16, help="NB201 width C (16 is the benchmark's)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.60, help="validation top-1 to reach")
    parser.add_argument("--tar", type=Path, default=TAR)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep everything here (default: temporary)"
    )
    args = parser.parse_args()
    if not args.tar.is_file():
        sys.exit(f"{args.tar} not found")

    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        log = work / "train.log"
        t0 = time.perf_counter()
        with tarfile.open(args.tar, "r:gz") as tar:
            tar.extractall(work / "jpeg", filter="data")
        t_extract = time.perf_counter() - t0
        t_write = 0.0
        for split in ("train", "val"):
            t_write += run(
                [
                    sys.executable,
                    "-m",
                    "datamodules.ffcv_writer",
                    "--src",
                    str(work / "jpeg"),
                    "--split",
                    split,
                    "--out",
                    str(work / f"{split}.beton"),
                    "--max-resolution",
                    "256",
                    "--jpeg-quality",
                    "90",
                    "--compress-probability",
                    "0.5",
                    "--workers",
                    str(args.workers),
                ],
                log,
            )
        cmd = [
            sys.executable,
            "train.py",
            "fit",
            "--config",
            "configs/train/cifar10_ffcv.yaml",
            "--data.init_args.train_path",
            str(work / "train.beton"),
            "--data.init_args.val_path",
            str(work / "val.beton"),
            "--data.init_args.num_workers",
            str(args.workers),
            "--model.model_kwargs",
            json.dumps({"arch": CELLS[args.cell], "channels": args.channels, "cells_per_stage": 5}),
            "--trainer.max_epochs",
            str(args.epochs),
            "--trainer.default_root_dir",
            str(work / "run"),
            "--trainer.enable_progress_bar",
            "false",
        ]
        t_train = run(cmd, log)

        rows = list(csv.DictReader((work / "run" / "csv" / "version_0" / "metrics.csv").open()))
        val = {int(r["epoch"]): float(r["val/acc1"]) for r in rows if r.get("val/acc1")}
        train_loss = {
            int(r["epoch"]): float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")
        }
        print(f"command: {' '.join(cmd[1:])}")
        print(
            f"cell {args.cell} (C={args.channels}, N=5), {args.epochs} epochs, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"extract {t_extract:.0f} s, write .beton {t_write:.0f} s, train.py {t_train:.0f} s "
            f"({t_train / 60:.1f} min, {t_train / args.epochs:.0f} s/epoch incl. start-up)"
        )
        print("epoch  train_loss  val_top1")
        for e in sorted(val):
            print(f"{e:5d}  {train_loss.get(e, float('nan')):10.3f}  {val[e]:8.4f}")
        final = val[max(val)]
        print(
            f"final val top-1 {final:.4f} on 2,000 images: {'reached' if final >= args.target else 'BELOW'} "
            f"the target {args.target:.2f}"
        )


if __name__ == "__main__":
    main()
