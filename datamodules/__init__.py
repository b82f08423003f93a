"""LightningDataModules over :mod:`nas`: FFCV (plus the ``.beton`` writer), ImageFolder, CIFAR.

``FFCVDataModule`` is imported when first asked for (``class_path: datamodules.FFCVDataModule``
works as before): FFCV's compiled extension is the slowest import of the package, and the CIFAR
and ImageFolder datamodules (and ``search.py --help``) do not need it. Where FFCV is not
installed, asking for it raises the ImportError.
"""

from typing import Any

from datamodules.cifar import CIFARDataModule
from datamodules.image_folder import ImageFolderDataModule

__all__ = ["CIFARDataModule", "FFCVDataModule", "ImageFolderDataModule"]


def __getattr__(name: str) -> Any:
    if name == "FFCVDataModule":
        try:
            from datamodules.ffcv_image import FFCVDataModule
        except ImportError as e:
            raise ImportError(f"FFCVDataModule needs FFCV, which failed to import: {e}") from e
        globals()["FFCVDataModule"] = FFCVDataModule
        return FFCVDataModule
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
