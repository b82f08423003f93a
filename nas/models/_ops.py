"""Layers shared by the CIFAR cell networks (NAS-Bench-201 and DARTS build them alike)."""

from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv -> BN: NAS-Bench-201's convolution op, DARTS's preprocessing of a cell input."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )
