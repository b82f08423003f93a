"""LightningDataModules over :mod:`nas`: FFCV (plus the ``.beton`` writer), ImageFolder, CIFAR.

Where FFCV's compiled extension is not installed, the CIFAR and ImageFolder datamodules (and
``search.py`` over them) still work; asking for ``FFCVDataModule`` then raises the ImportError.
"""

from typing import Any

from datamodules.cifar import CIFARDataModule
from datamodules.image_folder import ImageFolderDataModule

try:
    from datamodules.ffcv_image import FFCVDataModule
except ImportError as _ffcv_missing:
    _FFCV_ERROR: ImportError | None = _ffcv_missing
else:
    _FFCV_ERROR = None

__all__ = ["CIFARDataModule", "FFCVDataModule", "ImageFolderDataModule"]


def __getattr__(name: str) -> Any:
    if name == "FFCVDataModule" and _FFCV_ERROR is not None:
        raise ImportError(f"FFCVDataModule needs FFCV, which failed to import: {_FFCV_ERROR}") from _FFCV_ERROR
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
