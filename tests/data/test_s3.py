"""The s3:// path end to end against moto's S3 server on 127.0.0.1, and fetch's resume guarantees."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import boto3
import pytest

from bintally.data.abid import AbidRoot
from bintally.data.fetch import fetch, is_intact
from bintally.data.manifest import build_manifest, read_manifest
from bintally.data.stats import root_stats
from bintally.data.subset import Subset

BUCKET = "abid-test"
PER_COUNT = 8  # 40 real bins, counts 1-5


@pytest.fixture(scope="module")
def s3_root(s3_endpoint, abid_root) -> str:
    """A bucket in the ABID layout holding 40 real bins, plus a file list naming them."""
    from bintally.data.subset import select_bins

    records = select_bins(AbidRoot(str(abid_root)), Subset(counts=(1, 5), per_count=PER_COUNT)).records
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    listing: dict[str, list[str]] = {}
    for r in records:
        s3.upload_file(str(abid_root / "bin-images" / f"{r.id}.jpg"), BUCKET, f"bin-images/{r.id}.jpg")
        s3.upload_file(str(abid_root / "metadata" / f"{r.id}.json"), BUCKET, f"metadata/{r.id}.json")
        listing.setdefault(str(r.count), []).append(f"data/metadata/{r.id}.json")
    s3.put_object(Bucket=BUCKET, Key="file_list.json", Body=json.dumps(listing).encode())
    return f"s3://{BUCKET}"


def test_fetch_manifest_and_stats_match_the_local_folder(s3_root, s3_endpoint, abid_root, tmp_path):
    """Fetching from S3, building a manifest and stats from S3 give what the local folder gives."""
    subset = Subset(file_list=f"{s3_root}/file_list.json")
    remote = AbidRoot(s3_root, s3_endpoint)
    result = fetch(remote, str(tmp_path / "cache"), subset)
    assert (result.selected, result.downloaded, result.skipped, result.failed) == (40, 80, 0, [])

    local_subset = Subset(counts=(1, 5), per_count=PER_COUNT)
    from_local = build_manifest(AbidRoot(str(abid_root)), local_subset).manifest
    from_s3 = build_manifest(remote, subset).manifest
    from_cache = build_manifest(AbidRoot(str(tmp_path / "cache")), Subset()).manifest
    key = lambda m: sorted((r.id, r.sha256, r.count, r.split, r.width, r.height) for r in m.rows)  # noqa: E731
    assert key(from_s3) == key(from_local) == key(from_cache)
    assert from_s3.rows[0].uri.startswith(f"{s3_root}/bin-images/")
    assert root_stats(remote, subset).counts == root_stats(AbidRoot(str(abid_root)), local_subset).counts


def test_manifest_written_to_and_read_from_s3(s3_root, s3_endpoint, tmp_path):
    from bintally.data.manifest import write_manifest

    build = build_manifest(AbidRoot(s3_root, s3_endpoint), Subset(limit=5))
    write_manifest(build, f"{s3_root}/manifests/m.parquet", s3_endpoint)
    assert [r.id for r in read_manifest(f"{s3_root}/manifests/m.parquet", s3_endpoint).rows] == [r.id for r in build.manifest.rows]


def test_second_fetch_downloads_nothing_and_replaces_corrupt_files(s3_root, s3_endpoint, tmp_path):
    """A complete cache is skipped whole; a truncated file and a leftover .part are never trusted."""
    remote, cache = AbidRoot(s3_root, s3_endpoint), tmp_path / "cache"
    fetch(remote, str(cache), Subset())
    victim = next((cache / "bin-images").iterdir())
    victim.write_bytes(victim.read_bytes()[:500])  # as a non-atomic writer killed mid-file would leave it
    (cache / "bin-images" / "junk.jpg.part-123").write_bytes(b"half")
    again = fetch(remote, str(cache), Subset())
    assert (again.downloaded, again.skipped) == (1, 79)
    assert not list(cache.glob("*/*.part-*"))


def test_killed_fetch_resumes_without_downloading_twice(s3_root, s3_endpoint, tmp_path):
    """SIGKILL the CLI mid-fetch: every file left at a final path is whole, and the rerun
    downloads exactly the files that were missing (nothing twice)."""
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "bintally", "data", "fetch", s3_root, "--out", str(cache), "--endpoint-url", s3_endpoint, "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(cache.glob("*/*"))) < 10:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = [p for p in cache.glob("*/*") if ".part-" not in p.name]
    assert 0 < len(kept) < 80, "the kill should land mid-fetch"
    assert all(is_intact(str(p), p.parent.name, p.stem) for p in kept)
    again = fetch(AbidRoot(s3_root, s3_endpoint), str(cache), Subset())
    assert again.skipped == len(kept) and again.downloaded == 80 - len(kept)
