"""Datamodules on real CIFAR-10 images: FFCV (writer, loaders, progressive resizing, DDP sharding),
ImageFolder and CIFAR. The FFCV tests share one tiny pair of .beton files per session, since every
new FFCV pipeline spends seconds in numba compilation."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from ffcv.fields import IntField, RGBImageField
from ffcv.writer import DatasetWriter
from lightning.pytorch import Callback, Trainer
from PIL import Image

from callbacks.progressive_resize import ProgressiveResize, resolution
from datamodules import CIFARDataModule, FFCVDataModule, ImageFolderDataModule
from datamodules._common import CIFAR10_MEAN, CIFAR10_STD, per_device_batch_size
from datamodules.ffcv_writer import main as writer_main
from nas.data import cifar10_sample
from tests.conftest import RESNET_CELL, SHARED_DATA
from training import ClassificationModule

REPO = Path(__file__).resolve().parents[1]
TAR = SHARED_DATA / "cifar10" / "cifar10_jpeg_12k.tar.gz"
TRAIN_PER_CLASS, VAL_PER_CLASS = 8, 4
CIFAR_NORM = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD}


def _tiny_module(num_classes: int = 10) -> ClassificationModule:
    return ClassificationModule(
        "nb201",
        {"arch": RESNET_CELL, "channels": 4, "cells_per_stage": 1},
        num_classes=num_classes,
        lr=0.05,
        lr_reference_batch=None,
        label_smoothing=0.0,
    )


@pytest.fixture(scope="session")
def jpeg_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ImageFolder tree (train: 8/class, val: 4/class) extracted from the real JPEG tar."""
    root = tmp_path_factory.mktemp("cifar10_jpeg")
    keep = {"train": TRAIN_PER_CLASS, "val": VAL_PER_CLASS}
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(TAR, "r:gz") as tar:
        members = []
        for m in tar:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) != 3:
                continue
            key = (parts[0], parts[1])
            if taken.get(key, 0) < keep[parts[0]]:
                taken[key] = taken.get(key, 0) + 1
                members.append(m)
        tar.extractall(root, members=members, filter="data")
    assert len(members) == 10 * (TRAIN_PER_CLASS + VAL_PER_CLASS)
    return root


@pytest.fixture(scope="session")
def betons(jpeg_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train.beton (JPEG/raw mix, through the writer's command line) and val.beton (raw pixels)."""
    out = tmp_path_factory.mktemp("betons")
    common = ["--src", str(jpeg_tree), "--max-resolution", "256", "--workers", "1"]
    n_train = writer_main(
        [
            *common,
            "--split",
            "train",
            "--out",
            str(out / "train.beton"),
            "--jpeg-quality",
            "90",
            "--compress-probability",
            "0.5",
        ]
    )
    n_val = writer_main(
        [*common, "--split", "val", "--out", str(out / "val.beton"), "--write-mode", "raw"]
    )
    assert (n_train, n_val) == (10 * TRAIN_PER_CLASS, 10 * VAL_PER_CLASS)
    return {"train": out / "train.beton", "val": out / "val.beton"}


@pytest.fixture(scope="session")
def indexed_betons(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """64 real CIFAR-10 images whose label is their index, to see which samples a rank loads."""
    images, _ = cifar10_sample()
    out = tmp_path_factory.mktemp("indexed")
    data = [(images[i], i) for i in range(64)]
    for split in ("train", "val"):
        writer = DatasetWriter(
            str(out / f"{split}.beton"),
            {"image": RGBImageField(write_mode="raw"), "label": IntField()},
            num_workers=1,
        )
        writer.from_indexed_dataset(data)
    return {"train": out / "train.beton", "val": out / "val.beton"}


def _ffcv(
    betons: dict[str, Path], train: Path | None = None, val: Path | None = None, **kwargs: Any
) -> FFCVDataModule:
    """An FFCVDataModule with one decoding thread on the session's ``.beton`` files (or others)."""
    return FFCVDataModule(str(train or betons["train"]), str(val or betons["val"]), num_workers=1, **kwargs)


def test_ffcv_loaders_give_normalized_channels_last_batches(
    betons: dict[str, Path], jpeg_tree: Path
) -> None:
    dm = _ffcv(betons, image_size=32, batch_size=16, val_crop_ratio=1.0, **CIFAR_NORM)
    dm.setup("fit")
    assert dm.num_classes == 10
    assert not dm._distributed, "a single process must not shard"
    train = dm.train_dataloader()
    assert len(train) == 10 * TRAIN_PER_CLASS // 16
    x, y = next(iter(train))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert y.shape == (16,) and y.dtype == torch.int64 and 0 <= y.min() and y.max() < 10
    assert abs(float(x.mean())) < 0.6 and 0.5 < float(x.std()) < 1.6, (
        "train images are not normalized"
    )

    # val: raw pixels, center crop of the whole image: equal to the JPEG decoded by PIL
    val = dm.val_dataloader()
    xs, ys = zip(*[(xb.clone(), yb.clone()) for xb, yb in val], strict=True)
    xv, yv = torch.cat(xs), torch.cat(ys)
    assert len(xv) == 10 * VAL_PER_CLASS, "validation must keep every image (no drop_last)"
    classes = sorted(p.name for p in (jpeg_tree / "val").iterdir())
    files = sorted((jpeg_tree / "val" / classes[0]).iterdir())
    ref = (
        torch.from_numpy(np.array(Image.open(files[0]).convert("RGB"))).permute(2, 0, 1).float()
        / 255
    )
    ref = (ref - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert yv[0] == 0
    assert (xv[0] - ref).abs().max() < 1e-4, (
        "val image differs from the source JPEG (channel order?)"
    )

    half = _ffcv(betons, image_size=32, batch_size=8, image_dtype="float16")
    half.setup("validate")
    xh, _ = next(iter(half.val_dataloader()))
    assert xh.dtype == torch.float16 and xh.is_contiguous(memory_format=torch.channels_last)


PAPER_AUGMENT = {"color_jitter": (0.4, 0.4, 0.4, 0.2), "auto_augment": True}


def test_train_pipelines_apply_the_paper_augmentation(betons: dict[str, Path], jpeg_tree: Path) -> None:
    common = {"image_size": 32, "batch_size": 16, **CIFAR_NORM}
    plain = _ffcv(betons, **common)
    aug = _ffcv(betons, random_erasing=1.0, **PAPER_AUGMENT, **common)
    batches = []
    for dm in (plain, aug):
        dm.setup("fit")
        torch.manual_seed(0)
        batches.append(next(iter(dm.train_dataloader())))
    (xp, yp), (xa, ya) = batches
    assert xa.shape == xp.shape and xa.dtype == torch.float32
    assert xa.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(ya, yp), "augmentation must not change FFCV's sample order"
    erased = (xa == 0).all(dim=1).flatten(1).sum(dim=1)
    assert int((erased > 0).sum()) >= 14, "random erasing with p=1 should erase (almost) every image"
    assert int((xp == 0).all(dim=1).sum()) == 0, "without augmentation no pixel is exactly the mean colour"
    val_plain, val_aug = (next(iter(dm.val_dataloader()))[0] for dm in (plain, aug))
    assert torch.equal(val_plain, val_aug), "validation images must not be augmented"

    folder = ImageFolderDataModule(str(jpeg_tree), num_workers=0, random_erasing=1.0, **PAPER_AUGMENT, **common)
    folder.setup("fit")
    xf, _ = next(iter(folder.train_dataloader()))
    assert xf.shape == (16, 3, 32, 32) and int(((xf == 0).all(dim=1).flatten(1).sum(dim=1) > 0).sum()) >= 14


def test_resolution_schedule_is_a_pure_function() -> None:
    got = [resolution(e, start_ramp=2, end_ramp=6, min_res=160, max_res=256) for e in range(9)]
    assert got == [160, 160, 160, 192, 192, 224, 256, 256, 256]  # 208 -> 192: half to even
    assert all(r % 32 == 0 for r in got)
    assert resolution(5, 0, 0, 192, 192) == 192
    with pytest.raises(ValueError, match="min_res=256 must be <= max_res=160"):
        resolution(0, 0, 1, 256, 160)
    with pytest.raises(ValueError, match="start_ramp=5 must be <= end_ramp=1"):
        ProgressiveResize(160, 192, start_ramp=5, end_ramp=1)


class _RecordShapes(Callback):
    def __init__(self) -> None:
        self.train: dict[int, set[tuple[int, ...]]] = {}
        self.val: set[tuple[int, ...]] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.train.setdefault(trainer.current_epoch, set()).add(tuple(batch[0].shape[-2:]))

    def on_validation_batch_start(
        self, trainer, pl_module, batch, batch_idx, dataloader_idx=0
    ) -> None:  # type: ignore[no-untyped-def]
        self.val.add(tuple(batch[0].shape[-2:]))


def test_progressive_resize_changes_the_train_resolution_per_epoch(
    betons: dict[str, Path], tmp_path: Path
) -> None:
    dm = _ffcv(betons, image_size=64, batch_size=16)
    shapes = _RecordShapes()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[ProgressiveResize(min_res=32, max_res=96, start_ramp=0, end_ramp=2), shapes],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(_tiny_module(), dm)
    assert shapes.train == {0: {(32, 32)}, 1: {(64, 64)}, 2: {(96, 96)}}, shapes.train
    assert shapes.val == {(64, 64)}, "validation keeps its own resolution"

    with pytest.raises(TypeError, match="ProgressiveResize needs a datamodule .*CIFARDataModule"):
        Trainer(
            accelerator="cpu",
            max_epochs=1,
            callbacks=[ProgressiveResize(32, 32)],
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        ).fit(_tiny_module(), CIFARDataModule(batch_size=32, num_workers=0))


def test_ffcv_errors_name_the_file(betons: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope.beton"
    dm = _ffcv(betons, train=missing, image_size=32, batch_size=8)
    with pytest.raises(FileNotFoundError, match="train .beton '.*nope.beton' does not exist"):
        dm.setup("fit")

    garbage = tmp_path / "garbage.beton"
    garbage.write_bytes(b"this is not an ffcv file" * 100)
    empty = tmp_path / "empty.beton"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.beton"
    truncated.write_bytes(betons["val"].read_bytes()[: betons["val"].stat().st_size // 2])
    for bad in (garbage, empty, truncated):
        dm = _ffcv(betons, val=bad, image_size=32, batch_size=8)
        with pytest.raises(ValueError, match=f"val .beton '.*{bad.name}'"):
            dm.setup("fit")


def test_batch_size_errors_and_global_batch() -> None:
    assert per_device_batch_size(None, 1024, 8) == 128
    assert per_device_batch_size(64, None, 8) == 64
    with pytest.raises(
        ValueError, match="global_batch_size=1000 is not divisible by the 3 devices"
    ):
        per_device_batch_size(None, 1000, 3)
    with pytest.raises(
        ValueError, match="batch_size=64 per device and global_batch_size=1024 over 8"
    ):
        per_device_batch_size(64, 1024, 8)
    dm = CIFARDataModule(batch_size=None, global_batch_size=250, num_workers=0)
    dm.trainer = SimpleNamespace(world_size=4)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="global_batch_size=250 is not divisible by the 4 devices"):
        dm.setup("fit")
    dm.trainer = SimpleNamespace(world_size=5)  # type: ignore[assignment]
    dm.setup("fit")
    assert dm.batch_size_per_device == 50


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"image_size": 0}, "image_size must be a positive int, got 0"),
        ({"val_image_size": -1}, "val_image_size must be a positive int, got -1"),
        ({"val_crop_ratio": 1.5}, r"val_crop_ratio must be in \(0, 1\], got 1.5"),
        ({"scale": (0.9, 0.1)}, r"0 < low <= high <= 1; got \(0.9, 0.1\)"),
        ({"scale": (0.0, 1.0)}, r"got \(0.0, 1.0\)"),
        ({"mean": (0.5, 0.5)}, "mean and std need 3 values each"),
        ({"std": (0.2, 0.0, 0.2)}, r"std values must be > 0, got \(0.2, 0.0, 0.2\)"),
        ({"color_jitter": (0.4, 0.4)}, r"color_jitter takes \(brightness, contrast, saturation\[, hue\]\)"),
        ({"color_jitter": (0.4, 0.4, 0.4, 0.6)}, r"color jitter hue must be in \[0, 0.5\], got 0.6"),
        ({"random_erasing": -0.5}, r"random_erasing is a probability in \[0, 1\], got -0.5"),
    ],
)
def test_image_datamodules_refuse_bad_image_args(bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FFCVDataModule("train.beton", "val.beton", num_workers=1, **bad)
    with pytest.raises(ValueError, match=match):
        ImageFolderDataModule("root", num_workers=0, **bad)


def test_image_folder_matches_the_ffcv_interface(jpeg_tree: Path, tmp_path: Path) -> None:
    ffcv_args = inspect.signature(FFCVDataModule).parameters
    folder_args = inspect.signature(ImageFolderDataModule).parameters
    shared = (
        "image_size",
        "val_image_size",
        "batch_size",
        "global_batch_size",
        "num_workers",
        "drop_last",
        "scale",
        "val_crop_ratio",
        "mean",
        "std",
        "color_jitter",
        "auto_augment",
        "random_erasing",
    )
    for name in shared:
        assert name in ffcv_args and name in folder_args, name
        assert ffcv_args[name].default == folder_args[name].default, name

    dm = ImageFolderDataModule(
        str(jpeg_tree), image_size=32, batch_size=16, num_workers=0, **CIFAR_NORM
    )
    dm.setup("fit")
    assert dm.num_classes == 10
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 10 * TRAIN_PER_CLASS // 16
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 10 * VAL_PER_CLASS

    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "val" / "cat").mkdir(parents=True)
    (empty / "val" / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=r"image folder '.*empty/val' holds no images"):
        ImageFolderDataModule(str(empty), num_workers=0).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"image folder '.*nowhere/val' does not exist"):
        ImageFolderDataModule(str(tmp_path / "nowhere"), num_workers=0).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"'.*empty/train' holds no images"):
        writer_main(["--src", str(empty), "--split", "train", "--out", str(tmp_path / "x.beton")])


def test_cifar_sample_and_errors(tmp_path: Path) -> None:
    dm = CIFARDataModule(batch_size=32, num_workers=0, val_fraction=0.25)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (192, 64, 256)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 0.5
    val_labels = torch.cat([b[1] for b in dm.val_dataloader()])
    _, labels = cifar10_sample()
    order = np.random.default_rng(0).permutation(256)[:64]
    assert val_labels.tolist() == labels[order].tolist(), (
        "the held-out split must be fixed by split_seed"
    )

    with pytest.raises(ValueError, match="cifar100 needs data_dir"):
        CIFARDataModule("cifar100")
    with pytest.raises(FileNotFoundError, match=f"no cifar10 data in '{tmp_path}'.*download=True"):
        CIFARDataModule(data_dir=str(tmp_path), num_workers=0).setup("fit")
    assert not any(tmp_path.iterdir()), "nothing may be downloaded without download=True"


DDP_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import torch
from lightning.pytorch import Callback, Trainer
from datamodules import FFCVDataModule
from training import ClassificationModule

train, val, out = sys.argv[1:4]

class Record(Callback):
    def __init__(self):
        self.seen = {{}}
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, []).extend(batch[1].tolist())

dm = FFCVDataModule(train, val, image_size=32, batch_size=8, num_workers=1, val_crop_ratio=1.0)
model = ClassificationModule("nb201", {{"arch": {cell!r}, "channels": 4, "cells_per_stage": 1}},
                             num_classes=64, lr=0.05, lr_reference_batch=None, label_smoothing=0.0)
record = Record()
trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  num_sanity_val_steps=0, callbacks=[record], default_root_dir=out)
trainer.fit(model, dm)
torch.save({{
    "seen": record.seen,
    "params": {{k: v.detach().clone() for k, v in model.network.named_parameters()}},
    "metrics": {{k: float(v) for k, v in trainer.callback_metrics.items()}},
    "distributed": dm._distributed,
    "world_size": trainer.world_size,
    "batch_size": dm.batch_size_per_device,
}}, f"{{out}}/rank{{trainer.global_rank}}.pt")
"""


@pytest.mark.slow  # two processes, each importing and compiling FFCV pipelines: 60-90 s on 2 cores
def test_ddp_two_processes_shard_ffcv_data(indexed_betons: dict[str, Path], tmp_path: Path) -> None:
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(repo=str(REPO), cell=RESNET_CELL)))
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(indexed_betons["train"]),
            str(indexed_betons["val"]),
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["distributed"] and r1["distributed"]
    for epoch in (0, 1):
        a, b = r0["seen"][epoch], r1["seen"][epoch]
        assert len(a) == len(b) == 32, (len(a), len(b))
        assert not set(a) & set(b), (
            f"epoch {epoch}: ranks loaded the same samples {sorted(set(a) & set(b))}"
        )
        assert sorted(a + b) == list(range(64)), f"epoch {epoch}: the shards do not cover the data"
    assert r0["seen"][0] != r0["seen"][1], "the order must change between epochs"
    # torchmetrics accuracies and the sync_dist losses are reduced over both ranks
    for key in ("val/acc1", "val/acc5", "val/loss", "train/acc1", "train/loss_epoch"):
        assert r0["metrics"][key] == r1["metrics"][key], (
            key,
            r0["metrics"][key],
            r1["metrics"][key],
        )
    assert r0["params"].keys() == r1["params"].keys()
    for name, p in r0["params"].items():
        assert torch.equal(p, r1["params"][name]), f"{name} differs between ranks"
    json.dumps(r0["metrics"])  # plain floats
