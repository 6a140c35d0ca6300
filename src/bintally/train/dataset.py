"""Manifest rows as a torch Dataset, and batched prediction over rows."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from bintally import storage
from bintally.data.images import decode_image
from bintally.data.manifest import ManifestRow
from bintally.model.preprocess import Preprocess, normalise
from bintally.train.augment import Augmentation


class BinDataset(Dataset):
    """(image tensor, recorded count) per row; `transform` maps the decoded photo to a size x size image
    (default: the plain resize evaluation uses)."""

    def __init__(self, rows: Sequence[ManifestRow], pp: Preprocess, transform: Callable[[Image.Image], Image.Image] | None = None):
        self.items = [(r.uri, r.count) for r in rows]
        self.pp = pp
        self.transform = transform or Augmentation("none", pp)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        uri, count = self.items[i]
        img = self.transform(decode_image(storage.read_bytes(uri)))
        return torch.from_numpy(normalise(img, self.pp)), count


def with_counts(rows: Sequence[ManifestRow], classes: Sequence[int]) -> list[ManifestRow]:
    wanted = set(classes)
    return [r for r in rows if r.count in wanted]


def sample_rows(rows: Sequence[ManifestRow], limit: int | None, seed: int) -> list[ManifestRow]:
    """At most `limit` rows, a seeded random choice, in manifest order."""
    if limit is None or limit >= len(rows):
        return list(rows)
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [r for i, r in enumerate(rows) if i in keep]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, K] (float32) and recorded counts [N] over a loader, in its order."""
    model.eval()
    logits, counts = [], []
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits.append(model(x).float().cpu())
        counts.append(y)
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(logits).numpy(), torch.cat(counts).numpy()
