"""The Amazon Bin Image Dataset layout: `bin-images/<id>.jpg` + `metadata/<id>.json`.

`EXPECTED_QUANTITY` in the metadata is the label (the warehouse's recorded
quantity, not a count of the photo). The per-item metadata is kept on each
record: the manifest stores its summed volume and weight (an auxiliary training target).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from bintally import storage

IMAGES_DIR = "bin-images"
METADATA_DIR = "metadata"
PUBLIC_BUCKET = "s3://aft-vbi-pds/"
SUFFIX = {IMAGES_DIR: ".jpg", METADATA_DIR: ".json"}


class BinItem(BaseModel):
    asin: str
    name: str = ""
    quantity: int
    length_in: float | None = None
    width_in: float | None = None
    height_in: float | None = None
    weight_lb: float | None = None


class BinRecord(BaseModel):
    id: str
    count: int
    items: list[BinItem] = []

    def items_volume(self) -> float | None:
        """The summed volume of the recorded items, cubic inches (None where no item has all three dimensions):
        it grows with the count, so it can teach a model what many items look like."""
        volumes = [
            i.quantity * i.length_in * i.width_in * i.height_in
            for i in self.items
            if i.length_in is not None and i.width_in is not None and i.height_in is not None
        ]
        return sum(volumes) if volumes else None

    def items_weight(self) -> float | None:
        """The summed weight of the recorded items, pounds (None where no item has one)."""
        weights = [i.quantity * i.weight_lb for i in self.items if i.weight_lb is not None]
        return sum(weights) if weights else None


class BadRecord(ValueError):
    """A metadata file that cannot give a label; the message is the reason."""


def _dimension(entry: dict, key: str) -> float | None:
    value = entry.get(key)
    return float(value["value"]) if isinstance(value, dict) and "value" in value else None


def parse_metadata(bin_id: str, raw: bytes) -> BinRecord:
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRecord(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or "EXPECTED_QUANTITY" not in meta:
        raise BadRecord("metadata has no EXPECTED_QUANTITY")
    quantity = meta["EXPECTED_QUANTITY"]
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise BadRecord(f"EXPECTED_QUANTITY is not an integer: {quantity!r}")
    if quantity < 0:
        raise BadRecord(f"EXPECTED_QUANTITY is negative: {quantity}")
    items = []
    for asin, entry in (meta.get("BIN_FCSKU_DATA") or {}).items():
        if not isinstance(entry, dict):
            continue
        items.append(
            BinItem(
                asin=str(entry.get("asin", asin)),
                name=str(entry.get("name", "")),
                quantity=int(entry.get("quantity", 0) or 0),
                length_in=_dimension(entry, "length"),
                width_in=_dimension(entry, "width"),
                height_in=_dimension(entry, "height"),
                weight_lb=_dimension(entry, "weight"),
            )
        )
    return BinRecord(id=bin_id, count=quantity, items=items)


class AbidRoot:
    """One ABID-layout root, local or remote."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        self.endpoint_url = endpoint_url
        self.fs, self.path = storage.resolve(str(url), endpoint_url)
        # Local roots are stored absolute so manifests work from any directory.
        self.url = str(url).rstrip("/") if storage.is_remote(str(url)) else self.path.rstrip("/")

    def is_remote(self) -> bool:
        return storage.is_remote(self.url)

    def image_url(self, bin_id: str) -> str:
        return storage.join(self.url, IMAGES_DIR, bin_id + SUFFIX[IMAGES_DIR])

    def metadata_url(self, bin_id: str) -> str:
        return storage.join(self.url, METADATA_DIR, bin_id + SUFFIX[METADATA_DIR])

    def _path(self, folder: str, name: str) -> str:
        return "/".join([self.path.rstrip("/"), folder, name])

    def read(self, folder: str, bin_id: str) -> bytes:
        suffix = SUFFIX[folder]
        return self.fs.cat_file(self._path(folder, bin_id + suffix))

    def list_ids(self, folder: str) -> set[str]:
        """Ids present in `bin-images` or `metadata` (one listing, no reads)."""
        suffix = SUFFIX[folder]
        try:
            names = self.fs.ls(self._path(folder, ""), detail=False)
        except FileNotFoundError:
            return set()
        return {n.rsplit("/", 1)[-1][: -len(suffix)] for n in names if n.endswith(suffix)}

    def read_many(self, folder: str, ids: Sequence[str]) -> dict[str, bytes | Exception]:
        """Read many files concurrently (fsspec batches these for object stores)."""
        suffix = SUFFIX[folder]
        paths = {self._path(folder, f"{i}{suffix}"): i for i in ids}
        if not paths:
            return {}
        got = self.fs.cat(list(paths), on_error="return")
        return {paths[p]: data for p, data in got.items()}


_ID_IN_PATH = re.compile(r"([^/\\]+?)\.(?:json|jpg)$")


def read_file_list(url: str, endpoint_url: str | None = None) -> dict[str, int]:
    """The capstone's `file_list.json`: {"1": ["data/metadata/100313.json", ...]} -> {id: count}."""
    try:
        listing = json.loads(storage.read_bytes(url, endpoint_url))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{url} is not a JSON file list: {exc}") from exc
    if not isinstance(listing, dict):
        raise ValueError(f"{url} must map a count to a list of paths")
    out: dict[str, int] = {}
    for count, paths in listing.items():
        for path in paths:
            match = _ID_IN_PATH.search(str(path))
            if match:
                out[match.group(1)] = int(count)
    return out


def read_ids_file(url: str, endpoint_url: str | None = None) -> list[str]:
    """One id (or `.../<id>.jpg|json` path) per line, or a JSON list."""
    text = storage.read_bytes(url, endpoint_url).decode()
    entries: Iterable[str] = json.loads(text) if text.lstrip().startswith("[") else text.split()
    ids = []
    for entry in entries:
        match = _ID_IN_PATH.search(str(entry))
        ids.append(match.group(1) if match else str(entry).strip())
    return [i for i in ids if i]
