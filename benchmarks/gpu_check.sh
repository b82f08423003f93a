#!/usr/bin/env bash
# GPU check of the training side (one GPU, a few minutes): trains a timm model at 224x224 with
# bf16-mixed precision and channels-last through ClassificationModule, first on synthetic batches
# already on the GPU (the model's own speed), then through the FFCV datamodule on a .beton
# generated here (the loader's ability to keep up), without and with the recipe's per-sample
# augmentation on the GPU (colour jitter, AutoAugment, random erasing). Prints images/s and peak
# GPU memory of each, then the augmentation's own rate, batched against per-image torchvision.
#
#   bash benchmarks/gpu_check.sh                 # wrcor_600m (the paper's 600M-MAC network)
#   bash benchmarks/gpu_check.sh resnet50        # any timm model name or a winner.yaml
#   STEPS=200 BATCH=256 bash benchmarks/gpu_check.sh
set -euo pipefail

MODEL=${1:-wrcor_600m}
STEPS=${STEPS:-120}          # timed steps follow WARMUP untimed ones
WARMUP=${WARMUP:-20}
BATCH=${BATCH:-192}
IMAGES=${IMAGES:-3072}       # images in the generated .beton
WORKERS=${WORKERS:-$(nproc)}
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if "$PYTHON" -c "import ffcv" 2>/dev/null; then
  HAVE_FFCV=1
  "$PYTHON" - "$WORK" "$IMAGES" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from data_throughput import make_images
make_images(Path(sys.argv[1]), int(sys.argv[2]), classes=100, size_range=(300, 400), seed=0)
EOF
  "$PYTHON" -m datamodules.ffcv_writer --src "$WORK" --split train --out "$WORK/train.beton" \
      --max-resolution 256 --jpeg-quality 90 --compress-probability 0.5 --workers "$WORKERS" | tail -n 1
else
  HAVE_FFCV=0
  echo "FFCV is not installed here: only the synthetic-batch part runs"
fi

"$PYTHON" - "$MODEL" "$STEPS" "$WARMUP" "$BATCH" "$WORK/train.beton" "$WORKERS" "$HAVE_FFCV" <<'EOF'
import itertools
import sys
import time

import torch
from lightning.pytorch import Callback, Trainer

from training import ClassificationModule

model_name, steps, warmup, batch, beton, workers = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5], int(sys.argv[6])
have_ffcv = sys.argv[7] == "1"
assert torch.cuda.is_available(), "no CUDA device"
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, model {model_name}, batch {batch}, bf16-mixed, channels_last")


class Speed(Callback):
    def __init__(self):
        self.t0 = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == warmup:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0


def run(label, **fit_kwargs):
    module = ClassificationModule(model_name, num_classes=1000, channels_last=True, lr=0.1, lr_reference_batch=None,
                                  label_smoothing=0.1)
    speed = Speed()
    trainer = Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=warmup + steps,
                      limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, gradient_clip_val=5.0, callbacks=[speed])
    trainer.fit(module, **fit_kwargs)
    rate = steps * batch / speed.seconds
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"{label:10s} {rate:8.1f} images/s   peak memory {peak:5.1f} GiB   ({steps} steps in {speed.seconds:.1f} s)")
    return rate


class Repeat:
    """The same GPU batch over and over: no data loading at all."""

    def __init__(self, batch, n):
        self.batch, self.n, self.batch_size = batch, n, len(batch[0])

    def __len__(self):
        return self.n

    def __iter__(self):
        return itertools.repeat(self.batch, self.n)


x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 1000, (batch,), device="cuda")
synthetic = run("synthetic", train_dataloaders=Repeat((x, y), warmup + steps))
if have_ffcv:
    from datamodules import FFCVDataModule

    dm = FFCVDataModule(beton, beton, image_size=224, batch_size=batch, num_workers=workers, image_dtype="float16")
    loaded = run("ffcv", datamodule=dm)
    print(f"ffcv / synthetic = {loaded / synthetic:.2f}")
    dm = FFCVDataModule(beton, beton, image_size=224, batch_size=batch, num_workers=workers, image_dtype="float16",
                        color_jitter=(0.4, 0.4, 0.4, 0.2), auto_augment=True, random_erasing=0.5)
    augmented = run("ffcv+aug", datamodule=dm)
    print(f"ffcv+aug / synthetic = {augmented / synthetic:.2f}")
EOF

"$PYTHON" benchmarks/augment_throughput.py --device cuda --batch-size "$BATCH" --size 224 --batches 10
