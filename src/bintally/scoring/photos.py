"""The photos a scoring job names, and one photo read to the model's input size."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

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


def photo_ids(uris: Sequence[str]) -> dict[str, str]:
    """Each photo's id in a job's output: its file name without the suffix (ABID's bin id), with as many of its
    folders in front as make it unique among `uris` (day1/00585 and day2/00585, not two rows of 00585); where no
    folder tells two apart (a.jpg and a.png, or URLs differing in their query), the uri itself."""
    parts = {uri: _folders_and_name(uri) for uri in uris}  # each uri once
    depth = dict.fromkeys(parts, 1)
    while True:
        ids = {uri: "/".join(parts[uri][-depth[uri] :]) for uri in parts}
        taken = Counter(ids.values())
        clashing = [uri for uri in parts if taken[ids[uri]] > 1 and depth[uri] < len(parts[uri])]
        if not clashing:
            return {uri: uri if taken[i] > 1 else i for uri, i in ids.items()}
        for uri in clashing:
            depth[uri] += 1


def _folders_and_name(uri: str) -> tuple[str, ...]:
    path = PurePosixPath(uri.split("://", 1)[-1]).with_suffix("")
    return tuple(part for part in path.parts if part != "/")


def _as_url(fs, path: str, given: str) -> str:
    return fs.unstrip_protocol(path) if storage.is_remote(given) else path


def read_photo(uri: str, pp: Preprocess, endpoint_url: str | None, max_pixels: int) -> Image.Image | str:
    """One photo decoded and resized to the model's input size, or why it could not be read."""
    try:
        return resize(decode_image(storage.read_bytes(uri, endpoint_url), max_pixels), pp)
    except (ImageError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
