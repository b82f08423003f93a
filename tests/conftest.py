from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas.arch.nb201 import ARCH_RESNET

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"

#: The benchmark's ResNet-like cell, as a string.
RESNET_CELL = ARCH_RESNET.encode()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; the project expects ../shared beside it")
    return SHARED_DATA
