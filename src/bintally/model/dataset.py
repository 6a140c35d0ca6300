"""Manifest rows as a torch Dataset (training, validation, evaluation), and choosing rows."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial

import torch
from PIL import Image
from torch.utils.data import Dataset

from bintally import storage
from bintally.counts import CountClasses
from bintally.data.images import decode_image
from bintally.data.manifest import ManifestRow
from bintally.model.preprocess import Preprocess, normalise, resize


class BinDataset(Dataset):
    """(image tensor, recorded count) per row, and `extras[i]` third where given (an auxiliary target);
    `transform` maps the decoded photo to a size x size image (default: the plain resize evaluation uses)."""

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        pp: Preprocess,
        transform: Callable[[Image.Image], Image.Image] | None = None,
        extras: Sequence[float] | None = None,
    ):
        if extras is not None and len(extras) != len(rows):
            raise ValueError(f"{len(extras)} extra targets for {len(rows)} rows")
        self.items = [(r.uri, r.count) for r in rows]
        self.extras = extras
        self.pp = pp
        self.transform = transform or partial(resize, pp=pp)  # a partial, not a lambda: workers pickle it

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple:
        uri, count = self.items[i]
        img = torch.from_numpy(normalise(self.transform(decode_image(storage.read_bytes(uri))), self.pp))
        return (img, count) if self.extras is None else (img, count, self.extras[i])


def with_counts(rows: Sequence[ManifestRow], classes: CountClasses) -> list[ManifestRow]:
    return [r for r in rows if classes.contains(r.count)]


def sample_rows(rows: Sequence[ManifestRow], limit: int | None, seed: int) -> list[ManifestRow]:
    """At most `limit` rows, a seeded random choice, in manifest order."""
    if limit is None or limit >= len(rows):
        return list(rows)
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [r for i, r in enumerate(rows) if i in keep]
