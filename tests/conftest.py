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
