"""Fixtures for the model tests: real bin photos (the small artifact is the shared one in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from bintally.data.images import decode_image


@pytest.fixture(scope="session")
def bin_photos(abid_root: Path) -> list[Image.Image]:
    """Eight real ABID photos, decoded as every stage decodes them."""
    paths = sorted((abid_root / "bin-images").glob("*.jpg"))[:8]
    return [decode_image(p.read_bytes()) for p in paths]
