"""Pieces shared by the datamodules: normalization constants, batch-size bookkeeping, the
arguments of the ImageNet-style datamodules, DataLoader construction, and the signal handling of
DataLoader worker processes."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datamodules.augment import batch_augment

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# The signals SLURM sends to every process of a job step and Lightning's SLURM support handles
# in the main process during fit: SIGUSR1 (``--signal``: save an HPC checkpoint and requeue) and
# SIGTERM (cancellation, time limit, the requeue itself: stop at the next batch).
MAIN_PROCESS_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGTERM") if hasattr(signal, name))


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of the datamodules' DataLoaders: SLURM's signals are the main process's.

    slurmstepd signals every process of a job step, DataLoader workers included. A worker killed
    by SIGUSR1 or SIGTERM makes the main process raise "DataLoader worker (pid ...) is killed by
    signal" in the middle of Lightning's checkpoint and requeue (Lightning issue #20280); a forked
    worker that kept Lightning's handlers would run them itself. So a worker ignores these signals
    while its main process catches them (Lightning during fit), which then shuts its workers down
    as usual. Otherwise (the main process would die of the signal too, or it has gone, or
    ``/proc`` cannot tell) the worker dies of the signal as it would by default: a worker that
    ignored SIGTERM then would block ``multiprocessing``'s terminate-and-join at exit.

    Args:
        worker_id: index of the worker (unused; the DataLoader passes it).
    """
    handler = functools.partial(_leave_to_main_process, os.getppid())
    for signum in MAIN_PROCESS_SIGNALS:
        signal.signal(signum, handler)


def _leave_to_main_process(parent: int, signum: int, frame: FrameType | None) -> None:
    if _catches(parent, signum):
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _catches(parent: int, signum: int) -> bool:
    """Whether ``parent`` is still this process's parent and has a handler for ``signum``."""
    if os.getppid() != parent:
        return False
    try:
        status = Path(f"/proc/{parent}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def world_size(trainer: Trainer | None) -> int:
    """Number of processes training together (1 without a trainer)."""
    return 1 if trainer is None else int(trainer.world_size)


def per_device_batch_size(
    batch_size: int | None, global_batch_size: int | None, devices: int
) -> int:
    """The batch one process loads.

    Args:
        batch_size: images per device, or None to derive it from ``global_batch_size``.
        global_batch_size: images per optimizer step over all devices, or None.
        devices: number of processes (``trainer.world_size``).

    Raises:
        ValueError: a size is not positive, the global batch does not split evenly over the
            devices, or both sizes are given and disagree.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if global_batch_size is None:
        return 256 if batch_size is None else batch_size
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    if global_batch_size % devices:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by the {devices} devices "
            f"(world size); use a multiple of {devices}"
        )
    derived = global_batch_size // devices
    if batch_size is not None and batch_size != derived:
        raise ValueError(
            f"batch_size={batch_size} per device and global_batch_size={global_batch_size} over "
            f"{devices} devices disagree ({derived} per device); set only one of them"
        )
    return derived


def check_batch_args(batch_size: int | None, global_batch_size: int | None) -> None:
    """Argument checks that need no trainer (run in ``__init__``)."""
    for name, value in (("batch_size", batch_size), ("global_batch_size", global_batch_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def check_image_args(
    image_size: int,
    val_image_size: int | None,
    val_crop_ratio: float,
    scale: Sequence[float],
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """Checks of the image-pipeline arguments the ImageNet-style datamodules share.

    Raises:
        ValueError: naming the bad value and what was expected.
    """
    for name, value in (("image_size", image_size), ("val_image_size", val_image_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not 0.0 < val_crop_ratio <= 1.0:
        raise ValueError(f"val_crop_ratio must be in (0, 1], got {val_crop_ratio}")
    if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(
            f"scale is the area range (low, high) of the random-resized crop, with "
            f"0 < low <= high <= 1; got {tuple(scale)}"
        )
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values each, got {tuple(mean)} and {tuple(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be > 0, got {tuple(std)}")


def require_file(path: str | Path | None, what: str) -> Path:
    """``path`` as a Path, or a FileNotFoundError naming it."""
    if path is None:
        raise ValueError(f"{what} is not set")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist (or is not a file)")
    return p


def check_image_folder(folder: str | Path) -> Path:
    """Check that ``folder`` is an ImageFolder split (``<class>/<image>``) holding images.

    Raises:
        FileNotFoundError: the folder does not exist, has no class sub-folders, or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    classes = sorted(d for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(
            f"image folder {str(folder)!r} has no class sub-folders; expected {folder}/<class>/<image>"
        )
    for d in classes:
        if any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()):
            return folder
    raise FileNotFoundError(
        f"image folder {str(folder)!r} holds no images (looked for {', '.join(IMAGE_SUFFIXES)} "
        f"in {len(classes)} class folder(s))"
    )


class BatchedDataModule(LightningDataModule):
    """A datamodule whose processes each load ``batch_size_per_device`` images a step.

    Subclasses keep the batch arguments in their own ``__init__`` signature (LightningCLI reads
    it) and hand them to :meth:`_init_batches`; their ``setup`` calls :meth:`_setup_batches`.
    """

    def _init_batches(
        self, batch_size: int | None, global_batch_size: int | None, num_workers: int, drop_last: bool
    ) -> None:
        """Check and keep the batch arguments; the per-device batch of a single process."""
        check_batch_args(batch_size, global_batch_size)
        self.batch_size = batch_size
        self.global_batch_size = global_batch_size
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.batch_size_per_device = per_device_batch_size(batch_size, global_batch_size, 1)

    def _setup_batches(self) -> int:
        """Split the batch over the trainer's processes (in ``setup``); returns their number."""
        devices = world_size(self.trainer)
        self.batch_size_per_device = per_device_batch_size(
            self.batch_size, self.global_batch_size, devices
        )
        return devices


class TorchDataModule(BatchedDataModule):
    """A :class:`BatchedDataModule` whose splits are torch Datasets read by DataLoader workers.

    ``setup`` sets ``train_set`` and ``val_set``; ``test`` uses the validation split unless a
    subclass says otherwise. Host memory is pinned when ``pin_memory`` is true and CUDA is there.
    """

    pin_memory: bool = True
    train_set: Dataset | None = None
    val_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size_per_device,
            shuffle=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            drop_last=self.drop_last and train,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=worker_init,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)


class ImageArgs:
    """The image-pipeline arguments of the ImageNet-style datamodules (FFCV and ImageFolder).

    Each datamodule lists them in its own ``__init__`` signature and docstring (LightningCLI reads
    both) and hands them to :meth:`_init_image`.
    """

    def _init_image(
        self,
        image_size: int,
        val_image_size: int | None,
        scale: Sequence[float],
        val_crop_ratio: float,
        mean: Sequence[float],
        std: Sequence[float],
        color_jitter: Sequence[float] | None,
        auto_augment: bool,
        random_erasing: float,
    ) -> tuple[list[nn.Module], list[nn.Module]]:
        """Check and keep the arguments; returns :func:`datamodules.augment.batch_augment`'s
        modules for the augmentation options (those on uint8 images, those after normalization).

        Raises:
            ValueError: naming the bad value and what was expected.
        """
        check_image_args(image_size, val_image_size, val_crop_ratio, scale, mean, std)
        augment = batch_augment(color_jitter, auto_augment, random_erasing)
        self.image_size = image_size
        self.val_image_size = val_image_size or image_size
        self.scale = (float(scale[0]), float(scale[1]))
        self.val_crop_ratio = val_crop_ratio
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        return augment
