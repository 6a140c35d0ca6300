"""The photos a scoring job names, and one photo read to the model's input size."""

from __future__ import annotations

from collections.abc import Iterable

from fsspec.core import has_magic
from PIL import Image

from bintally import storage
from bintally.data.images import ImageError, decode_image
from bintally.data.manifest import read_manifest
from bintally.model.preprocess import Preprocess, resize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(inputs: Iterable[str], endpoint_url: str | None = None) -> list[str]:
    """Every photo named: a file as given, a folder or prefix recursively, a glob by its matches, a manifest
    (.parquet) by its rows' photos."""
    found: set[str] = set()
    for url in inputs:
        if url.endswith(".parquet"):
            found.update(row.uri for row in read_manifest(url, endpoint_url).rows)
            continue
        fs, path = storage.resolve(url, endpoint_url)
        if has_magic(path):
            paths = fs.glob(path)
        elif fs.isdir(path):
            paths = fs.find(path)
        else:
            if not fs.exists(path):
                raise FileNotFoundError(f"{url} does not exist")
            found.add(url)
            continue
        found.update(_as_url(fs, p, url) for p in paths if p.lower().endswith(IMAGE_SUFFIXES))
    return sorted(found)


def _as_url(fs, path: str, given: str) -> str:
    return fs.unstrip_protocol(path) if storage.is_remote(given) else path


def read_photo(uri: str, pp: Preprocess, endpoint_url: str | None, max_pixels: int) -> Image.Image | str:
    """One photo decoded and resized to the model's input size, or why it could not be read."""
    try:
        return resize(decode_image(storage.read_bytes(uri, endpoint_url), max_pixels), pp)
    except (ImageError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
