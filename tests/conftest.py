from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas.arch.nb201 import ARCH_RESNET

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"

#: The benchmark's ResNet-like cell, as a string.
RESNET_CELL = ARCH_RESNET.encode()


def image_folder(root: Path, classes: int = 2, per_class: int = 2) -> Path:
    """A tiny ImageFolder tree under ``root``: ``train/`` and ``val/``, ``classes`` folders of
    ``per_class`` random 40 x 48 JPEGs each (seeded); returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; the project expects ../shared beside it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar10_jpeg(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CIFAR-10 JPEG ImageFolder tree (train/, val/), extracted once into a temp folder."""
    import tarfile

    root = tmp_path_factory.mktemp("cifar10_jpeg")
    with tarfile.open(shared_data / "cifar10" / "cifar10_jpeg_12k.tar.gz") as tar:
        tar.extractall(root, filter="data")
    return root
