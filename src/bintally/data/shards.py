"""A manifest's photos as tar shards in WebDataset's layout, for streaming training at scale.

Each sample is three tar members sharing the bin id as key: `ID.jpg` (the photo: its original bytes, or
re-encoded once at a smaller stored size), `ID.cls` (the recorded count, a decimal integer: the raw label,
mapped to a class by training exactly as from files) and `ID.json` (the manifest row plus the stored size).
A split's photos are dealt into shards in a seeded random order, so every shard is a sample of its split,
and `SPLIT.index.json` lists the split's shards (name, photos, ids, sha256) beside the digest of the manifest
they came from: the manifest stays the source of truth for splits and labels.

Resumable: a shard is built in memory and written whole (temp file + rename locally; S3 publishes whole
objects), then its entry (`NAME.entry.json`: its ids and sha256); a rerun keeps a shard whose entry matches
the plan and whose bytes hash to it, and rewrites every other. The indexes are written last, and readers read
only shards an index names, checking each one's sha256 first.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image
from pydantic import BaseModel, Field

from bintally import storage
from bintally.data.images import decode_image
from bintally.data.manifest import SPLITS, ManifestRow, Split, read_manifest
from bintally.errors import BintallyError

SHARD_SUFFIX = ".tar"
ENTRY_SUFFIX = ".entry.json"
INDEX_SUFFIX = ".index.json"
STORED_QUALITY = 95  # JPEG quality of photos re-encoded at a stored size


class ShardError(BintallyError):
    """A shard does not match its index (corrupt, truncated or replaced)."""


class ShardsConfig(BaseModel):
    manifest: str
    out: str  # a local folder or a URL prefix (s3://bucket/prefix)
    photos_per_shard: int = Field(1000, ge=1)
    image_size: int | None = Field(None, ge=32, le=4096)  # store photos with the shorter side at most this
    seed: int = 0  # the order photos are dealt into shards
    workers: int = Field(8, ge=1)  # shards built at once (reading photos is mostly waiting on storage)
    endpoint_url: str | None = None


class ShardEntry(BaseModel):
    name: str
    ids: list[str]
    image_size: int | None
    sha256: str = ""

    @property
    def photos(self) -> int:
        return len(self.ids)


class ShardIndex(BaseModel):
    split: Split
    manifest_digest: str
    image_size: int | None
    shards: list[ShardEntry]


class ShardsResult(BaseModel):
    indexes: dict[str, str]  # split -> its index's URL
    photos: int
    written: int  # shards written by this run
    kept: int  # shards a previous run had completed


@dataclass(frozen=True)
class Sample:
    key: str
    image: bytes
    count: int


def index_url(out: str, split: str) -> str:
    return storage.join(out, f"{split}{INDEX_SUFFIX}")


def plan(rows: list[ManifestRow], split: Split, cfg: ShardsConfig) -> list[tuple[ShardEntry, list[ManifestRow]]]:
    """The split's rows in a seeded random order, dealt into shards of `photos_per_shard`."""
    rows = sorted((r for r in rows if r.split == split), key=lambda r: r.id)
    random.Random(f"{cfg.seed}:{split}").shuffle(rows)
    chunks = [rows[i : i + cfg.photos_per_shard] for i in range(0, len(rows), cfg.photos_per_shard)]
    return [
        (ShardEntry(name=f"{split}-{n:06d}{SHARD_SUFFIX}", ids=[r.id for r in chunk], image_size=cfg.image_size), chunk)
        for n, chunk in enumerate(chunks)
    ]


def stored_photo(data: bytes, size: int | None) -> tuple[bytes, int, int]:
    """The photo as stored, with its width and height: the original bytes, or re-encoded with the shorter side at `size`."""
    img = decode_image(data)
    if size is None or min(img.size) <= size:
        return data, img.width, img.height
    scale = size / min(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=STORED_QUALITY)
    return buf.getvalue(), img.width, img.height


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same rows give the same bytes
    tar.addfile(info, io.BytesIO(data))


def build_shard(rows: list[ManifestRow], image_size: int | None, endpoint_url: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row in rows:
            photo, width, height = stored_photo(storage.read_bytes(row.uri, endpoint_url), image_size)
            meta = row.model_dump() | {"stored_width": width, "stored_height": height}
            _add(tar, f"{row.id}.jpg", photo)
            _add(tar, f"{row.id}.cls", str(row.count).encode())
            _add(tar, f"{row.id}.json", json.dumps(meta).encode())
    return buf.getvalue()


def completed(out: str, planned: ShardEntry, endpoint_url: str | None) -> ShardEntry | None:
    """The entry of a shard a previous run completed to this plan, verified by its sha256; None if it must be written."""
    entry_url = storage.join(out, planned.name + ENTRY_SUFFIX)
    if not storage.exists(entry_url, endpoint_url):
        return None
    entry = ShardEntry.model_validate_json(storage.read_bytes(entry_url, endpoint_url))
    if entry.model_dump(exclude={"sha256"}) != planned.model_dump(exclude={"sha256"}):
        return None
    shard_url = storage.join(out, planned.name)
    if not storage.exists(shard_url, endpoint_url):
        return None
    return entry if hashlib.sha256(storage.read_bytes(shard_url, endpoint_url)).hexdigest() == entry.sha256 else None


def write_shard(out: str, planned: ShardEntry, rows: list[ManifestRow], endpoint_url: str | None) -> ShardEntry:
    data = build_shard(rows, planned.image_size, endpoint_url)
    entry = planned.model_copy(update={"sha256": hashlib.sha256(data).hexdigest()})
    storage.write_bytes(storage.join(out, planned.name), data, endpoint_url)
    storage.write_bytes(storage.join(out, planned.name + ENTRY_SUFFIX), entry.model_dump_json().encode(), endpoint_url)
    return entry


def _remove_partials(out: str) -> None:
    """A killed run's temp files (local only: an object store never shows a half object)."""
    if not storage.is_remote(out) and os.path.isdir(out):
        for name in os.listdir(out):
            if storage.PARTIAL_MARK in name:
                os.remove(os.path.join(out, name))


def write_shards(cfg: ShardsConfig, on_progress: Callable[[int, int | None], None] | None = None) -> ShardsResult:
    """Every split's photos into shards and one index per split; shards a previous run completed are kept.
    `on_progress(shards done, shards)` hears after each shard."""
    manifest = read_manifest(cfg.manifest, cfg.endpoint_url)
    _remove_partials(cfg.out)
    plans = {split: plan(manifest.rows, split, cfg) for split in SPLITS}
    jobs = [job for jobs in plans.values() for job in jobs]
    done, written = 0, 0

    def one(planned: ShardEntry, rows: list[ManifestRow]) -> tuple[ShardEntry, bool]:
        entry = completed(cfg.out, planned, cfg.endpoint_url)
        return (entry, False) if entry else (write_shard(cfg.out, planned, rows, cfg.endpoint_url), True)

    entries: dict[str, ShardEntry] = {}
    with ThreadPoolExecutor(cfg.workers) as pool:
        for entry, new in pool.map(lambda job: one(*job), jobs):
            entries[entry.name] = entry
            done, written = done + 1, written + new
            if on_progress:
                on_progress(done, len(jobs))
    indexes = {}
    for split, split_jobs in plans.items():
        if not split_jobs:
            continue
        index = ShardIndex(
            split=split, manifest_digest=manifest.digest(), image_size=cfg.image_size, shards=[entries[e.name] for e, _ in split_jobs]
        )
        indexes[split] = index_url(cfg.out, split)
        storage.write_bytes(indexes[split], index.model_dump_json(indent=1).encode(), cfg.endpoint_url)
    return ShardsResult(indexes=indexes, photos=len(manifest.rows), written=written, kept=len(jobs) - written)


def read_index(out: str, split: str, endpoint_url: str | None = None) -> ShardIndex:
    url = index_url(out, split)
    if not storage.exists(url, endpoint_url):
        raise FileNotFoundError(f"no shard index {url}: write the shards with `bintally data shards MANIFEST --out {out}`")
    return ShardIndex.model_validate_json(storage.read_bytes(url, endpoint_url))


def read_shard(out: str, entry: ShardEntry, endpoint_url: str | None = None) -> Iterator[Sample]:
    """The shard's samples in order, after checking its bytes against the index's sha256 (nothing from a bad shard is used)."""
    url = storage.join(out, entry.name)
    data = storage.read_bytes(url, endpoint_url)
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise ShardError(
            f"shard {url} is not the one its index names (sha256 {digest[:12]}..., the index says {entry.sha256[:12]}...): "
            "it is corrupt or was replaced; rerun `bintally data shards` to rewrite it"
        )
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for info in tar.getmembers():
            key, _, ext = info.name.partition(".")
            members.setdefault(key, {})[ext] = tar.extractfile(info).read()  # type: ignore[union-attr]
    for key, files in members.items():
        yield Sample(key, files["jpg"], int(files["cls"]))
