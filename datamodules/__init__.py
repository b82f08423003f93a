"""LightningDataModules over :mod:`nas`: FFCV (plus the ``.beton`` writer), ImageFolder, CIFAR."""

from datamodules.cifar import CIFARDataModule
from datamodules.ffcv_image import FFCVDataModule
from datamodules.image_folder import ImageFolderDataModule

__all__ = ["CIFARDataModule", "FFCVDataModule", "ImageFolderDataModule"]
