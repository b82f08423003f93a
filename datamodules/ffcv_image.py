"""FFCV ImageNet-style datamodule: ``train.beton`` / ``val.beton`` written by :mod:`datamodules.ffcv_writer`.

Images are decoded (with the random-resized crop fused into the JPEG decode) by FFCV's
compiled pipeline, moved to this rank's device and normalized there. Under DDP the loader
shards the data itself (``distributed=True``), so Lightning's sampler injection does not apply.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.reader import Reader
from ffcv.transforms import (
    Convert,
    NormalizeImage,
    RandomHorizontalFlip,
    Squeeze,
    ToDevice,
    ToTensor,
    ToTorchImage,
)
from torchvision.transforms import Normalize

from datamodules._common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchedDataModule,
    ImageArgs,
    require_file,
)

ImageDType = Literal["float32", "float16"]
_FIELDS = ("image", "label")


def read_beton(path: str | Path, what: str = ".beton file") -> Reader:
    """Open a ``.beton`` file, with errors that name it.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable FFCV dataset or lacks the ``image``/``label`` fields.
    """
    path = require_file(path, what)
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {str(path)!r} is empty; rewrite it with datamodules.ffcv_writer")
    try:
        reader = Reader(str(path))
    except (AssertionError, ValueError, IndexError, KeyError, TypeError, OSError) as err:
        raise ValueError(
            f"{what} {str(path)!r} is not a readable FFCV dataset ({type(err).__name__}: {err}); "
            "rewrite it with datamodules.ffcv_writer"
        ) from err
    missing = [f for f in _FIELDS if f not in reader.handlers]
    if missing:
        raise ValueError(
            f"{what} {str(path)!r} has fields {list(reader.handlers)}, missing {missing}; "
            "expected the image/label fields written by datamodules.ffcv_writer"
        )
    table = reader.alloc_table
    if reader.num_samples == 0 or len(table) == 0:
        raise ValueError(f"{what} {str(path)!r} holds no samples")
    if int((table["ptr"] + table["size"]).max()) > path.stat().st_size:
        raise ValueError(
            f"{what} {str(path)!r} is truncated; rewrite it with datamodules.ffcv_writer"
        )
    return reader


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collection inside the block (restored as it was)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class EpochLoader:
    """An FFCV training Loader whose epoch begins at the first batch taken, not at ``iter()``.

    FFCV fixes an epoch's sample order and buffer sizes, and starts decoding, as soon as the
    loader is iterated; Lightning creates the first epoch's iterator early (while estimating the
    number of steps, before a checkpoint is restored and before ``on_train_epoch_start``). Deferring
    the start lets epoch hooks change the decoder's output size and lets a resumed run continue
    the sequence of per-epoch shuffles (``epoch()`` gives the trainer's current epoch).

    Args:
        loader: the FFCV loader.
        epoch: returns the epoch about to start, or None to keep FFCV's own count.
    """

    def __init__(self, loader: Loader, epoch: Callable[[], int | None]) -> None:
        self.loader = loader
        self.epoch = epoch

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch()
        if epoch is not None:
            self.loader.next_epoch = epoch
        yield from self.loader


class FFCVDataModule(ImageArgs, BatchedDataModule):
    """ImageNet-style classification data from FFCV ``.beton`` files.

    Train: random-resized crop (decoded by FFCV), horizontal flip, to the rank's device,
    channels-last, optionally the recipe's colour jitter and AutoAugment on the uint8 images,
    normalized on the device, optionally random erasing (the augmentation drawn per sample, on
    the device: :mod:`datamodules.augment`). Val: center crop of ``val_crop_ratio`` of the short
    side, resized to ``val_image_size``. The train decoder is exposed as :attr:`train_decoder`
    whose ``output_size`` :class:`callbacks.progressive_resize.ProgressiveResize` sets per epoch.

    Args:
        train_path: the training ``.beton``.
        val_path: the validation ``.beton`` (also used by ``test``).
        image_size: train crop side.
        val_image_size: validation side (default: ``image_size``).
        batch_size: images per device per step (default 256 when ``global_batch_size`` is unset).
        global_batch_size: images per step over all devices; divided by the world size.
        num_workers: FFCV decoding threads per process.
        drop_last: drop the last incomplete training batch.
        scale: area range of the random-resized crop.
        val_crop_ratio: center-crop side / short image side (224/256 as in the ImageNet recipe).
        mean: per-channel mean in [0, 1] units.
        std: per-channel std in [0, 1] units.
        image_dtype: dtype of the images handed to the model (``float16`` halves the transfer).
        os_cache: let the OS page cache hold the file (best when it fits in RAM or is shared by
            all ranks of a node); otherwise FFCV's process cache reads pages on demand.
        distributed: shard over ranks; None detects it (``trainer.world_size > 1``) in ``setup``.
        seed: traversal-order seed (the same on every rank, so shards stay disjoint).
        batches_ahead: batches prepared in advance.
        color_jitter: ``(brightness, contrast, saturation[, hue])`` per-sample jitter amounts
            (the paper's recipe: ``(0.4, 0.4, 0.4, 0.2)``), or None.
        auto_augment: AutoAugment with the ImageNet policy, per sample.
        random_erasing: probability per sample of erasing a random rectangle (the recipe: 0.5).

    Raises:
        FileNotFoundError: a ``.beton`` path does not exist (in ``setup``).
        ValueError: a ``.beton`` is corrupt; the global batch does not divide over the devices.

    Example:
        >>> dm = FFCVDataModule("train.beton", "val.beton", image_size=176, batch_size=128)
    """

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
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
        image_dtype: ImageDType = "float32",
        os_cache: bool = True,
        distributed: bool | None = None,
        seed: int = 0,
        batches_ahead: int = 3,
        color_jitter: Sequence[float] | None = None,
        auto_augment: bool = False,
        random_erasing: float = 0.0,
    ) -> None:
        super().__init__()
        self._init_batches(batch_size, global_batch_size, num_workers, drop_last)
        self.augment_uint8, self.augment_normalized = self._init_image(
            image_size, val_image_size, scale, val_crop_ratio, mean, std, color_jitter, auto_augment, random_erasing
        )
        if image_dtype not in ("float32", "float16"):
            raise ValueError(f"image_dtype must be float32 or float16, got {image_dtype!r}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1 for FFCV, got {num_workers}")
        self.save_hyperparameters()
        self.train_path = train_path
        self.val_path = val_path
        self.image_dtype = image_dtype
        self.os_cache = os_cache
        self.distributed = distributed
        self.seed = seed
        self.batches_ahead = batches_ahead
        self.num_classes: int | None = None
        self.train_decoder: RandomResizedCropRGBImageDecoder | None = None
        self._distributed = bool(distributed)

    def setup(self, stage: str) -> None:
        devices = self._setup_batches()
        self._distributed = devices > 1 if self.distributed is None else self.distributed
        labels = []
        if stage == "fit":
            labels.append(self._labels(read_beton(self.train_path, "train .beton")))
        labels.append(self._labels(read_beton(self.val_path, "val .beton")))
        self.num_classes = int(max(lab.max() for lab in labels)) + 1

    @staticmethod
    def _labels(reader: Reader) -> np.ndarray:
        index = list(reader.handlers).index("label")
        return np.asarray(reader.metadata[f"f{index}"])

    def _device(self) -> torch.device:
        if self.trainer is None:
            return torch.device("cpu")
        return self.trainer.strategy.root_device

    def _normalize(self, device: torch.device) -> list[Any]:
        """Normalization on ``device``: FFCV's fused uint8 lookup kernel on CUDA when CuPy is
        installed (it needs it); otherwise a dtype conversion plus torchvision's Normalize."""
        mean = np.array(self.mean) * 255
        std = np.array(self.std) * 255
        if device.type == "cuda" and importlib.util.find_spec("cupy") is not None:
            return [NormalizeImage(mean, std, np.dtype(self.image_dtype).type)]
        dtype = getattr(torch, self.image_dtype)
        return [Convert(dtype), Normalize(mean.tolist(), std.tolist())]

    def _label_pipeline(self, device: torch.device) -> list[Any]:
        return [IntDecoder(), ToTensor(), Squeeze(), ToDevice(device, non_blocking=True)]

    def _order(self, train: bool) -> OrderOption:
        if not train:
            return OrderOption.SEQUENTIAL
        # QUASI_RANDOM reads pages in a cache-friendly order but is not implemented for
        # distributed loading, where RANDOM shards like PyTorch's DistributedSampler.
        return OrderOption.RANDOM if self._distributed else OrderOption.QUASI_RANDOM

    def train_dataloader(self) -> EpochLoader:
        path = read_beton(self.train_path, "train .beton")
        device = self._device()
        side = self.image_size
        self.train_decoder = RandomResizedCropRGBImageDecoder((side, side), scale=self.scale)
        image = [
            self.train_decoder,
            RandomHorizontalFlip(),
            ToTensor(),
            ToDevice(device, non_blocking=True),
            ToTorchImage(channels_last=True),
            *self.augment_uint8,
            *self._normalize(device),
            *self.augment_normalized,
        ]
        loader = self._loader(path, image, device, train=True)
        return EpochLoader(loader, lambda: self.trainer.current_epoch if self.trainer else None)

    def val_dataloader(self) -> Loader:
        path = read_beton(self.val_path, "val .beton")
        device = self._device()
        side = self.val_image_size
        image = [
            CenterCropRGBImageDecoder((side, side), ratio=self.val_crop_ratio),
            ToTensor(),
            ToDevice(device, non_blocking=True),
            ToTorchImage(channels_last=True),
            *self._normalize(device),
        ]
        return self._loader(path, image, device, train=False)

    def test_dataloader(self) -> Loader:
        return self.val_dataloader()

    def _loader(
        self, reader: Reader, image: list[Any], device: torch.device, train: bool
    ) -> Loader:
        # FFCV builds its pipeline code with ast.parse. On CPython before 3.11.8 and 3.12.1 a garbage
        # collection inside that parse which runs finalizers (numba's dispatchers have some) can
        # fail it with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905),
        # so the collector waits until the loader is built.
        with _gc_paused():
            return Loader(
                reader.file_name,
                batch_size=self.batch_size_per_device,
                num_workers=self.num_workers,
                order=self._order(train),
                os_cache=self.os_cache,
                drop_last=self.drop_last if train else False,
                distributed=self._distributed,
                seed=self.seed,
                batches_ahead=self.batches_ahead,
                pipelines={"image": image, "label": self._label_pipeline(device)},
            )
