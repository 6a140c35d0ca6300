"""Training augmentations: count-safe keeps every object in view; the original crop does not."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from bintally.data.images import decode_image
from bintally.model.preprocess import Preprocess, resize
from bintally.train.augment import Augmentation

SIZE = 64


def four_objects() -> Image.Image:
    """A bright bin with four dark objects, one per quadrant, away from the edges (as items sit in a bin)."""
    img = Image.new("RGB", (380, 260), (230, 230, 230))
    draw = ImageDraw.Draw(img)
    for fx in (0.3, 0.7):
        for fy in (0.3, 0.7):
            x, y = fx * img.width, fy * img.height
            draw.ellipse((x - 10, y - 10, x + 10, y + 10), fill=(0, 0, 0))
    return img


def objects_in_view(img: Image.Image) -> int:
    """How many quadrants still show a dark object."""
    dark = np.asarray(img.convert("L")) < 100
    h, w = dark.shape
    return sum(dark[r : r + h // 2, c : c + w // 2].any() for r in (0, h // 2) for c in (0, w // 2))


def test_count_safe_keeps_all_objects_original_loses_some():
    """100 random draws each: count-safe shows all four objects every time; the original RandomResizedCrop
    (area down to 8%) cuts some out, so its label would be wrong."""
    torch.manual_seed(0)
    img, pp = four_objects(), Preprocess(size=SIZE)
    safe, original = Augmentation("count_safe", pp), Augmentation("original", pp)
    safe_views = [objects_in_view(safe(img)) for _ in range(100)]
    original_views = [objects_in_view(original(img)) for _ in range(100)]
    assert min(safe_views) == 4
    assert min(original_views) < 4


def test_outputs_are_model_sized_and_none_is_evaluation(abid_root):
    """On a real photo every kind gives size x size; 'none' is exactly evaluation's resize."""
    photo = decode_image(next((abid_root / "bin-images").glob("*.jpg")).read_bytes())
    pp = Preprocess(size=SIZE)
    for kind in ("count_safe", "original", "none"):
        assert Augmentation(kind, pp)(photo).size == (SIZE, SIZE)
    assert np.array_equal(np.asarray(Augmentation("none", pp)(photo)), np.asarray(resize(photo, pp)))
