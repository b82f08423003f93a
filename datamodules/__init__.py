"""LightningDataModules over :mod:`nas`: FFCV (plus the ``.beton`` writer), ImageFolder, CIFAR.

``FFCVDataModule`` is imported on first use, so the CIFAR and ImageFolder datamodules (and
``search.py`` over them) work where FFCV's compiled extension is not installed.
"""

from typing import TYPE_CHECKING, Any

from datamodules.cifar import CIFARDataModule
from datamodules.image_folder import ImageFolderDataModule

if TYPE_CHECKING:
    from datamodules.ffcv_image import FFCVDataModule

__all__ = ["CIFARDataModule", "FFCVDataModule", "ImageFolderDataModule"]


def __getattr__(name: str) -> Any:
    if name == "FFCVDataModule":
        from datamodules.ffcv_image import FFCVDataModule

        return FFCVDataModule
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
