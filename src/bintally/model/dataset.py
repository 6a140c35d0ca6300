"""Manifest rows as a torch Dataset (training, validation, evaluation), the same photos streamed from tar shards,
and choosing rows."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from bintally import storage
from bintally.counts import CountClasses
from bintally.data.images import decode_image
from bintally.data.manifest import Manifest, ManifestRow
from bintally.data.shards import ShardEntry, read_index, read_shard
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
        img = model_input(storage.read_bytes(uri), self.transform, self.pp)
        return (img, count) if self.extras is None else (img, count, self.extras[i])


def model_input(photo: bytes, transform: Callable[[Image.Image], Image.Image], pp: Preprocess) -> torch.Tensor:
    """A photo's bytes -> the model's input tensor: the one path from files and from shards."""
    return torch.from_numpy(normalise(transform(decode_image(photo)), pp))


@dataclass(frozen=True)
class ShardSource:
    root: str  # the folder or prefix the shards and their indexes are in
    shards: tuple[ShardEntry, ...]


def shard_source(root: str, manifest: Manifest, splits: Sequence[str]) -> ShardSource:
    """The splits' shards, refused unless written from this manifest (the source of truth for splits and labels)."""
    indexes = [read_index(root, split) for split in splits]
    stale = [i.split for i in indexes if i.manifest_digest != manifest.digest()]
    if stale:
        raise ValueError(f"the {', '.join(stale)} shards in {root} were written from another manifest: rerun `bintally data shards`")
    return ShardSource(root, tuple(e for i in indexes for e in i.shards))


T = TypeVar("T")


def shuffled(items: Iterable[T], buffer: int, rng: random.Random) -> Iterator[T]:
    """The items in a random order drawn from a window of `buffer` items (a stream never needs to fit in memory)."""
    pool: list[T] = []
    for item in items:
        pool.append(item)
        if len(pool) >= buffer:
            i = rng.randrange(len(pool))
            pool[i], pool[-1] = pool[-1], pool[i]
            yield pool.pop()
    rng.shuffle(pool)
    yield from pool


def worker_shards(shards: Sequence[ShardEntry], worker: int, workers: int) -> Sequence[ShardEntry]:
    """Loader worker `worker`'s share of a rank's shards: fixed, so every epoch's batch count is known in advance."""
    return shards[worker::workers]


def stream_batches(shards: Sequence[ShardEntry], keep: Collection[str], workers: int, batch_size: int) -> int:
    """Full batches a rank's loader yields: each worker batches its own photos and drops its last partial batch."""
    per_worker = [sum(1 for e in worker_shards(shards, w, workers) for i in e.ids if i in keep) for w in range(workers)]
    return sum(n // batch_size for n in per_worker)


class ShardStream(IterableDataset):
    """(image tensor, recorded count) per photo of `keep` in `shards` (and `extras[id]` third where given), read the
    way `BinDataset` reads files (`transform` None: the plain resize): each loader worker reads its own shards, in
    an order and through a shuffle buffer seeded by `seed` and the worker, so a resumed epoch draws the same photos
    in the same order."""

    def __init__(
        self,
        source: ShardSource,
        keep: Collection[str],
        pp: Preprocess,
        transform: Callable[[Image.Image], Image.Image] | None,
        buffer: int,
        seed: str,
        extras: Mapping[str, float] | None = None,
    ):
        self.source, self.keep, self.pp = source, keep, pp
        self.transform = transform or partial(resize, pp=pp)  # as `BinDataset`: the plain resize evaluation uses
        self.buffer, self.seed, self.extras = buffer, seed, extras

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"{self.seed}:{worker}")
        mine = list(worker_shards(self.source.shards, worker, workers))
        rng.shuffle(mine)
        samples = (s for entry in mine for s in read_shard(self.source.root, entry) if s.key in self.keep)
        for s in shuffled(samples, self.buffer, rng):
            img = model_input(s.image, self.transform, self.pp)
            yield (img, s.count) if self.extras is None else (img, s.count, self.extras[s.key])


def scoring_stream(source: ShardSource, rows: Iterable[ManifestRow], pp: Preprocess) -> ShardStream:
    """The photos of `rows` in `source`'s shards, each once, plainly resized and with no shuffle buffer: what
    validation and calibration score, as `BinDataset` gives them from files."""
    return ShardStream(source, {r.id for r in rows}, pp, None, buffer=1, seed="scoring")


def with_counts(rows: Sequence[ManifestRow], classes: CountClasses) -> list[ManifestRow]:
    return [r for r in rows if classes.contains(r.count)]


def sample_rows(rows: Sequence[ManifestRow], limit: int | None, seed: int) -> list[ManifestRow]:
    """At most `limit` rows, a seeded random choice, in manifest order."""
    if limit is None or limit >= len(rows):
        return list(rows)
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [r for i, r in enumerate(rows) if i in keep]
