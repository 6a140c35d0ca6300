"""Fixtures for the model tests: real bin photos and a small artifact built from packaged weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from bintally.data.images import decode_image
from bintally.model.artifact import ModelSpec, save_artifact
from bintally.model.heads import create_model
from bintally.model.preprocess import Preprocess

CLASSES = [1, 2, 3, 4, 5]


@pytest.fixture(scope="session")
def bin_photos(abid_root: Path) -> list[Image.Image]:
    """Eight real ABID photos, decoded as every stage decodes them."""
    paths = sorted((abid_root / "bin-images").glob("*.jpg"))[:8]
    return [decode_image(p.read_bytes()) for p in paths]


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory) -> str:
    """An artifact: packaged EfficientNet-Lite0 with a fresh ordinal head, 96 px input."""
    out = str(tmp_path_factory.mktemp("artifact") / "model")
    model = create_model("tf_efficientnet_lite0", "ordinal", CLASSES)
    spec = ModelSpec(name="test", version="1", backbone="tf_efficientnet_lite0", head="ordinal", classes=CLASSES, preprocess=Preprocess(size=96))
    save_artifact(out, model, spec)
    return out
