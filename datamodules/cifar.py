"""CIFAR-10/100 through torchvision, or the CIFAR-10 sample shipped with :mod:`nas.data`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.transforms import v2

from datamodules._common import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    TorchDataModule,
)
from nas.data import cifar10_sample

CifarName = Literal["cifar10", "cifar100"]
_DATASETS = {
    "cifar10": (CIFAR10, CIFAR10_MEAN, CIFAR10_STD, 10),
    "cifar100": (CIFAR100, CIFAR100_MEAN, CIFAR100_STD, 100),
}


class ArrayDataset(Dataset):
    """Images (uint8 NHWC array) and labels with a transform, like a torchvision dataset."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: Callable[[Any], Any]
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(self.images[index]), int(self.labels[index])


class CIFARDataModule(TorchDataModule):
    """CIFAR-10 or CIFAR-100 with the standard augmentation (4-pixel padded random crop + flip).

    Data sources:
    - ``data_dir=None``: the 256 real CIFAR-10 test images shipped with the package (CIFAR-10
      only; for smoke runs and tests). They serve as both the train and the test split.
    - ``data_dir``: a torchvision CIFAR folder (``cifar-10-batches-py`` / ``cifar-100-python``),
      fetched there first when ``download=True``.

    Validation is a held-out ``val_fraction`` of the train split (fixed by ``split_seed``), or the
    test split when ``val_fraction=0``.

    Args:
        dataset: ``cifar10`` or ``cifar100``.
        data_dir: torchvision CIFAR root, or None for the shipped sample.
        download: download into ``data_dir`` when missing (never otherwise).
        batch_size: images per device per step (default 256 when ``global_batch_size`` is unset).
        global_batch_size: images per step over all devices; divided by the world size.
        num_workers: DataLoader worker processes per rank.
        val_fraction: share of the train split held out for validation, in [0, 1).
        split_seed: seed of the held-out split.
        drop_last: drop the last incomplete training batch.
        augment: random crop + flip on the training split.

    Raises:
        ValueError: ``cifar100`` without ``data_dir``; bad fractions or batch sizes.
        FileNotFoundError: ``data_dir`` holds no CIFAR data and ``download`` is off.
    """

    def __init__(
        self,
        dataset: CifarName = "cifar10",
        data_dir: str | None = None,
        download: bool = False,
        batch_size: int | None = 128,
        global_batch_size: int | None = None,
        num_workers: int = 2,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        drop_last: bool = True,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if dataset not in _DATASETS:
            raise ValueError(f"dataset must be one of {sorted(_DATASETS)}, got {dataset!r}")
        if data_dir is None and dataset != "cifar10":
            raise ValueError(
                f"{dataset} needs data_dir (a torchvision CIFAR folder, with download=True to fetch "
                "it); only CIFAR-10 has a shipped sample"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self._init_batches(batch_size, global_batch_size, num_workers, drop_last)
        self.save_hyperparameters()
        self.dataset = dataset
        self.data_dir = data_dir
        self.download = download
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        _, mean, std, self.num_classes = _DATASETS[dataset]
        normalize = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        augmentation = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if augment else []
        self.train_transform = v2.Compose([v2.ToImage(), *augmentation, *normalize[1:]])
        self.eval_transform = v2.Compose(normalize)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def prepare_data(self) -> None:
        if self.download and self.data_dir is not None:
            cls = _DATASETS[self.dataset][0]
            cls(self.data_dir, train=True, download=True)
            cls(self.data_dir, train=False, download=True)

    def _split(self, train: bool, transform: Callable[[Any], Any]) -> Dataset:
        if self.data_dir is None:
            images, labels = cifar10_sample()
            return ArrayDataset(images, labels, transform)
        cls = _DATASETS[self.dataset][0]
        try:
            return cls(self.data_dir, train=train, transform=transform, download=False)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"no {self.dataset} data in {str(Path(self.data_dir))!r} ({err}); pass download=True "
                "to fetch it or point data_dir at a torchvision CIFAR folder"
            ) from err

    def setup(self, stage: str) -> None:
        self._setup_batches()
        self.test_set = self._split(False, self.eval_transform)
        if self.val_fraction == 0.0:
            self.train_set = self._split(True, self.train_transform)
            self.val_set = self.test_set
            return
        train_full = self._split(True, self.train_transform)
        val_full = self._split(True, self.eval_transform)
        n = len(train_full)
        n_val = max(1, round(n * self.val_fraction))
        order = np.random.default_rng(self.split_seed).permutation(n).tolist()
        self.val_set = Subset(val_full, order[:n_val])
        self.train_set = Subset(train_full, order[n_val:])

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
