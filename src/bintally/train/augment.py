"""Training augmentations: PIL image in, size x size PIL image out (then `normalise`).

`count_safe` (default) keeps every object in view, so the label stays true:
mild crops (at least 75% of the area), mild aspect changes, flips, colour
jitter. `original` is the original system's RandomResizedCrop (area down to
8%, which can cut objects out of the bin) plus a horizontal flip, kept for
comparison. `none` only resizes, exactly as evaluation does.
"""

from __future__ import annotations

from PIL import Image
from torchvision.transforms import v2

from bintally.data.images import enhance
from bintally.model.preprocess import Preprocess, resize
from bintally.train.config import Augment


def count_safe(size: int, strength: float) -> v2.Compose:
    jitter = 0.2 * strength
    stretch = 1 + 0.15 * strength
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(1 - 0.25 * min(strength, 1), 1.0), ratio=(1 / stretch, stretch), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=jitter / 10),
        ]
    )


def original(size: int) -> v2.Compose:
    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


class Augmentation:
    """The training transform (a class, not a closure, so DataLoader workers can pickle it)."""

    def __init__(self, kind: Augment, pp: Preprocess, strength: float = 1.0):
        self.pp = pp
        self.transform: v2.Compose | None = None
        if kind == "count_safe":
            self.transform = count_safe(pp.size, strength)
        elif kind == "original":
            self.transform = original(pp.size)

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.transform is None:
            return resize(img, self.pp)
        return self.transform(enhance(img, self.pp.enhance))  # enhancement first, as in `preprocess.resize`
