"""Every path is a URL: local paths, file://, s3:// (and anything fsspec knows).

S3 credentials come from the usual AWS environment; with none, access is
anonymous (the public ABID bucket `s3://aft-vbi-pds/` needs none).
`endpoint_url` points at an S3-compatible store (MinIO, moto, Ceph...).
"""

from __future__ import annotations

import os
from functools import lru_cache

import fsspec
from fsspec import AbstractFileSystem

ENDPOINT_ENV = "BINTALLY_S3_ENDPOINT_URL"


def _has_aws_credentials() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None


@lru_cache(maxsize=16)
def filesystem(protocol: str, endpoint_url: str | None = None) -> AbstractFileSystem:
    if protocol != "s3":
        return fsspec.filesystem(protocol)
    endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs = {"endpoint_url": endpoint_url} if endpoint_url else {}
    return fsspec.filesystem("s3", anon=not _has_aws_credentials(), client_kwargs=client_kwargs)


def resolve(url: str, endpoint_url: str | None = None) -> tuple[AbstractFileSystem, str]:
    """A filesystem and the path inside it for `url`."""
    protocol, path = fsspec.core.split_protocol(str(url))
    protocol = protocol or "file"
    if protocol == "file":
        path = os.path.abspath(os.path.expanduser(path))
    return filesystem(protocol, endpoint_url), path


def is_remote(url: str) -> bool:
    return fsspec.core.split_protocol(str(url))[0] not in (None, "file", "local")


def join(url: str, *parts: str) -> str:
    return "/".join([str(url).rstrip("/"), *(p.strip("/") for p in parts)])


def read_bytes(url: str, endpoint_url: str | None = None) -> bytes:
    fs, path = resolve(url, endpoint_url)
    return fs.cat_file(path)


PARTIAL_MARK = ".part-"  # a file being written: `<name>.part-<pid>`, renamed to `<name>` when complete


def write_bytes(url: str, data: bytes, endpoint_url: str | None = None) -> None:
    """Write atomically where the filesystem allows it (temp file + rename)."""
    fs, path = resolve(url, endpoint_url)
    if not is_remote(url):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}{PARTIAL_MARK}{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)  # object stores publish whole objects only


def exists(url: str, endpoint_url: str | None = None) -> bool:
    fs, path = resolve(url, endpoint_url)
    return fs.exists(path)
