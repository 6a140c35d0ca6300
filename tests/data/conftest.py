"""Fixtures for the data layer: a small ABID root made of real bins plus every kind of bad record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

GOOD_IDS = ["00585", "00588", "00589", "00594", "00595", "00596"]


def copy_bin(src_root: Path, dst_root: Path, bin_id: str, new_id: str | None = None) -> None:
    new_id = new_id or bin_id
    for folder, suffix in (("bin-images", ".jpg"), ("metadata", ".json")):
        (dst_root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_root / folder / f"{bin_id}{suffix}", dst_root / folder / f"{new_id}{suffix}")


@pytest.fixture()
def messy_root(tmp_path, abid_root) -> Path:
    """Six real bins, and beside them one of each bad case, in a temporary ABID root."""
    root = tmp_path / "abid"
    for bin_id in GOOD_IDS:
        copy_bin(abid_root, root, bin_id)
    images, meta = root / "bin-images", root / "metadata"
    real_jpeg = (abid_root / "bin-images" / "00585.jpg").read_bytes()
    real_meta = (abid_root / "metadata" / "00585.json").read_text()

    def bad(bin_id: str, image: bytes | None, metadata: str | None) -> None:
        if image is not None:
            (images / f"{bin_id}.jpg").write_bytes(image)
        if metadata is not None:
            (meta / f"{bin_id}.json").write_text(metadata)

    bad("90001", real_jpeg[: len(real_jpeg) // 2], real_meta)  # truncated JPEG
    bad("90002", b"", real_meta)  # zero-byte JPEG
    bad("90003", b"this is not an image", real_meta)  # not an image
    bad("90004", real_jpeg, json.dumps({"BIN_FCSKU_DATA": {}}))  # no EXPECTED_QUANTITY
    bad("90005", real_jpeg, json.dumps({"EXPECTED_QUANTITY": "three"}))  # not an integer
    bad("90006", real_jpeg, json.dumps({"EXPECTED_QUANTITY": -2}))  # negative
    bad("90007", real_jpeg, None)  # image without metadata
    bad("90008", None, real_meta)  # metadata without image
    bad("90009", real_jpeg, "{not json")  # malformed metadata
    copy_bin(abid_root, root, "00585", "90010")  # same bytes as 00585: a duplicate
    return root


EXPECTED_PROBLEMS = {
    "90001": "bad_image",
    "90002": "bad_image",
    "90003": "bad_image",
    "90004": "bad_metadata",
    "90005": "bad_metadata",
    "90006": "bad_metadata",
    "90007": "image_without_metadata",
    "90008": "metadata_without_image",
    "90009": "bad_metadata",
    "90010": "duplicate",
}
