"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VOC2007 = SHARED / "voc2007"


@pytest.fixture(scope="session")
def voc2007() -> Path:
    if not (VOC2007 / "Annotations").is_dir():
        pytest.skip("../shared/voc2007 not present")
    return VOC2007


@pytest.fixture
def one_thread():
    """Small tensors: one torch thread avoids thread-pool overhead on a shared, busy CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
