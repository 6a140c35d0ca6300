"""Shards: written and read back (local and S3), resumable after a kill, verified by sha256, readable by webdataset."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from bintally.data.images import decode_image
from bintally.data.manifest import read_manifest
from bintally.data.shards import ShardError, ShardsConfig, read_index, read_shard, write_shards


def read_back(out: str, endpoint_url: str | None = None) -> dict[str, dict[str, tuple[bytes, int]]]:
    """split -> id -> (stored photo, count), through the indexes."""
    found: dict[str, dict[str, tuple[bytes, int]]] = {}
    for split in ("train", "val", "test"):
        index = read_index(out, split, endpoint_url)
        found[split] = {s.key: (s.image, s.count) for e in index.shards for s in read_shard(out, e, endpoint_url)}
    return found


def expected(manifest: Path) -> dict[str, dict[str, tuple[bytes, int]]]:
    rows = read_manifest(str(manifest)).rows
    return {split: {r.id: (Path(r.uri).read_bytes(), r.count) for r in rows if r.split == split} for split in ("train", "val", "test")}


def test_shards_hold_every_photo_and_count_of_each_split(small_manifest, tmp_path):
    out = str(tmp_path / "shards")
    result = write_shards(ShardsConfig(manifest=str(small_manifest), out=out, photos_per_shard=16))
    assert (result.photos, result.kept) == (80, 0)
    assert read_back(out) == expected(small_manifest)  # the original bytes: training sees what it sees from files
    index = read_index(out, "train")
    assert index.manifest_digest == read_manifest(str(small_manifest)).digest()
    assert all(e.sha256 == hashlib.sha256((Path(out) / e.name).read_bytes()).hexdigest() for e in index.shards)
    assert max(e.photos for e in index.shards) == 16


def test_stored_size_shrinks_photos_once(small_manifest, tmp_path):
    out = str(tmp_path / "shards")
    write_shards(ShardsConfig(manifest=str(small_manifest), out=out, image_size=64))
    photos = [decode_image(image) for split in read_back(out).values() for image, _ in split.values()]
    assert {min(p.size) for p in photos} == {64}


def test_rerun_keeps_verified_shards_and_rewrites_the_rest(small_manifest, tmp_path):
    """A rerun keeps whole shards; a corrupted one is refused by readers, then rewritten; temp files and a shard
    without its entry (killed between the two writes) are never trusted."""
    out = tmp_path / "shards"
    cfg = ShardsConfig(manifest=str(small_manifest), out=str(out), photos_per_shard=16)
    write_shards(cfg)
    victim = out / read_index(str(out), "train").shards[0].name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a photo: the tar still parses
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="rerun `bintally data shards`"):
        list(read_shard(str(out), read_index(str(out), "train").shards[0]))
    (out / "train-000001.tar.entry.json").unlink()
    (out / "train-000002.tar.part-123").write_bytes(b"half a shard")
    again = write_shards(cfg)
    assert (again.written, again.kept) == (2, again.written + again.kept - 2)
    assert not list(out.glob("*.part-*"))
    assert read_back(str(out)) == expected(small_manifest)


def test_killed_write_leaves_nothing_half_written_and_resumes(small_manifest, tmp_path):
    """SIGKILL the CLI mid-write: every shard at a final name is whole, and the rerun keeps those and finishes."""
    out = tmp_path / "shards"
    cmd = [sys.executable, "-m", "bintally", "data", "shards", str(small_manifest), "--out", str(out), "--photos-per-shard", "2"]
    proc = subprocess.Popen([*cmd, "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.entry.json"))) < 5:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("*.index.json")), "the kill should land mid-write"
    again = write_shards(ShardsConfig(manifest=str(small_manifest), out=str(out), photos_per_shard=2))
    assert again.kept >= 5 and again.written + again.kept == len(list(out.glob("*.tar")))
    assert read_back(str(out)) == expected(small_manifest)


def test_shards_on_s3(small_manifest, s3_endpoint, tmp_path):
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="shards-test")
    out = "s3://shards-test/abid/shards"
    cfg = ShardsConfig(manifest=str(small_manifest), out=out, photos_per_shard=16, endpoint_url=s3_endpoint)
    write_shards(cfg)
    assert read_back(out, s3_endpoint) == expected(small_manifest)
    assert write_shards(cfg).written == 0


def test_webdataset_reads_the_shards(small_manifest, tmp_path):
    """The layout is WebDataset's: its own reader groups each photo with its count and metadata."""
    import webdataset as wds

    out = tmp_path / "shards"
    write_shards(ShardsConfig(manifest=str(small_manifest), out=str(out), photos_per_shard=100))
    samples = list(wds.WebDataset(str(out / "train-000000.tar"), shardshuffle=False))
    ids = read_index(str(out), "train").shards[0].ids
    assert [s["__key__"] for s in samples] == ids
    assert {int(s["cls"]) for s in samples} <= {1, 2, 3, 4, 5}
    assert all(s["json"] and s["jpg"][:2] == b"\xff\xd8" for s in samples)
