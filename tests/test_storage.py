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


def test_without_aws_credentials_s3_is_read_anonymously(s3_endpoint, monkeypatch, tmp_path):
    """The public ABID bucket path: no credentials anywhere -> unsigned requests. A public object reads; a private
    one is refused by the store (proof the requests really go unsigned), as a PermissionError, not a crash."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="public-test", ACL="public-read")
    s3.put_object(Bucket="public-test", Key="bin-images/1.jpg", Body=b"jpeg", ACL="public-read")
    s3.create_bucket(Bucket="private-test")
    s3.put_object(Bucket="private-test", Key="2.jpg", Body=b"secret")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    storage.filesystem.cache_clear()
    try:
        fs, _ = storage.resolve("s3://public-test/bin-images/1.jpg", s3_endpoint)
        assert fs.anon, "with no credentials the S3 filesystem must be anonymous"
        assert storage.read_bytes("s3://public-test/bin-images/1.jpg", s3_endpoint) == b"jpeg"
        with pytest.raises(PermissionError):
            storage.read_bytes("s3://private-test/2.jpg", s3_endpoint)
    finally:
        storage.filesystem.cache_clear()  # later tests get a filesystem built from their own environment
