"""ImageNet-layout folders (``root/train/<class>/*.jpg``, ``root/val/<class>/*.jpg``) via torchvision.

The same constructor arguments and augmentation as :class:`datamodules.FFCVDataModule`, decoded
by PIL in DataLoader worker processes; useful without ``.beton`` files and as the reference
the FFCV loader is measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from datamodules._common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageArgs,
    TorchDataModule,
    check_image_folder,
)
from datamodules.augment import AUTOAUGMENT_FILL


class ImageFolderDataModule(ImageArgs, TorchDataModule):
    """Classification data from an ImageFolder tree.

    Train: random-resized crop of ``image_size`` (area ``scale``), horizontal flip, optionally
    torchvision's per-image ``ColorJitter`` and ``AutoAugment`` (ImageNet policy), normalize,
    optionally ``RandomErasing``.
    Val: resize the short side to ``val_image_size / val_crop_ratio``, center-crop
    ``val_image_size``. Under DDP, Lightning shards the data with a DistributedSampler.

    Args:
        root: folder holding the ``train_split`` and ``val_split`` folders.
        image_size: train crop side.
        val_image_size: validation side (default: ``image_size``).
        batch_size: images per device per step (default 256 when ``global_batch_size`` is unset).
        global_batch_size: images per step over all devices; divided by the world size.
        num_workers: DataLoader worker processes per rank.
        drop_last: drop the last incomplete training batch.
        scale: area range of the random-resized crop.
        val_crop_ratio: crop side / resized short side (0.875 = 224/256).
        mean: per-channel mean in [0, 1] units.
        std: per-channel std in [0, 1] units.
        train_split: training folder name under ``root``.
        val_split: validation folder name under ``root`` (also used by ``test``).
        pin_memory: pin host memory for faster GPU transfer.
        color_jitter: ``(brightness, contrast, saturation[, hue])`` jitter amounts, or None.
        auto_augment: AutoAugment with the ImageNet policy (mid-grey fill, as the FFCV module).
        random_erasing: probability per image of erasing a random rectangle.

    Raises:
        FileNotFoundError: a split folder is missing or holds no images (in ``setup``).
        ValueError: the global batch does not divide over the devices.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        val_image_size: int | None = None,
        batch_size: int | None = None,
        global_batch_size: int | None = None,
        num_workers: int = 8,
        drop_last: bool = True,
        scale: tuple[float, float] = (0.08, 1.0),
        val_crop_ratio: float = 224 / 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train_split: str = "train",
        val_split: str = "val",
        pin_memory: bool = True,
        color_jitter: Sequence[float] | None = None,
        auto_augment: bool = False,
        random_erasing: float = 0.0,
    ) -> None:
        super().__init__()
        self._init_batches(batch_size, global_batch_size, num_workers, drop_last)
        self._init_image(
            image_size, val_image_size, scale, val_crop_ratio, mean, std, color_jitter, auto_augment, random_erasing
        )  # the same argument checks as the FFCV datamodule (its augmentation modules are unused)
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters()
        self.root = Path(root)
        self.train_split = train_split
        self.val_split = val_split
        self.pin_memory = pin_memory
        self.num_classes: int | None = None
        to_tensor = [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
        per_image: list[v2.Transform] = []
        if color_jitter is not None:
            per_image.append(v2.ColorJitter(*color_jitter))
        if auto_augment:
            per_image.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, fill=AUTOAUGMENT_FILL))
        erasing = [v2.RandomErasing(p=random_erasing)] if random_erasing else []
        self.train_transform = v2.Compose(
            [
                v2.RandomResizedCrop(image_size, scale=tuple(scale), antialias=True),
                v2.RandomHorizontalFlip(),
                *per_image,
                *to_tensor,
                *erasing,
            ]
        )
        self.val_transform = v2.Compose(
            [
                v2.Resize(round(self.val_image_size / val_crop_ratio), antialias=True),
                v2.CenterCrop(self.val_image_size),
                *to_tensor,
            ]
        )
        self.train_set: ImageFolder | None = None
        self.val_set: ImageFolder | None = None

    def setup(self, stage: str) -> None:
        self._setup_batches()
        val_dir = check_image_folder(self.root / self.val_split)
        self.val_set = ImageFolder(str(val_dir), transform=self.val_transform)
        self.num_classes = len(self.val_set.classes)
        if stage == "fit":
            train_dir = check_image_folder(self.root / self.train_split)
            self.train_set = ImageFolder(str(train_dir), transform=self.train_transform)
            if self.train_set.classes != self.val_set.classes:
                raise ValueError(
                    f"class folders differ between {train_dir} ({len(self.train_set.classes)}) "
                    f"and {val_dir} ({len(self.val_set.classes)}); labels would not match"
                )
