"""Every path is a URL: local paths, file:// and s3:// (moto on 127.0.0.1) read and write the same way."""

from __future__ import annotations

import boto3
import pytest

from bintally import storage


def test_local_path_and_file_url_are_the_same_file(tmp_path):
    storage.write_bytes(str(tmp_path / "a" / "x.bin"), b"payload")
    assert storage.read_bytes(f"file://{tmp_path}/a/x.bin") == b"payload"
    assert storage.exists(str(tmp_path / "a" / "x.bin")) and not storage.exists(str(tmp_path / "nope"))
    assert not list((tmp_path / "a").glob("*.part*")), "atomic write leaves no temp file"


def test_s3_round_trip_through_an_endpoint(s3_endpoint):
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="storage-test")
    storage.write_bytes("s3://storage-test/dir/x.bin", b"payload", s3_endpoint)
    assert storage.read_bytes("s3://storage-test/dir/x.bin", s3_endpoint) == b"payload"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("s3://storage-test/dir/missing.bin", s3_endpoint)


def test_missing_local_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tmp_path / "missing.bin"))


def test_url_helpers():
    assert storage.join("s3://b/root/", "bin-images", "1.jpg") == "s3://b/root/bin-images/1.jpg"
    assert storage.is_remote("s3://b/k") and not storage.is_remote("/tmp/x") and not storage.is_remote("file:///tmp/x")
