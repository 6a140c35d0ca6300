"""The manifest: bad bins are skipped and reported with reasons; splits are stable and keep their ratios per count."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bintally.data.abid import AbidRoot
from bintally.data.manifest import (
    SplitRatios,
    assign_split,
    build_manifest,
    read_manifest,
    read_parquet,
    report_url,
    write_manifest,
)
from bintally.data.subset import Subset

from .conftest import EXPECTED_PROBLEMS, GOOD_IDS


def test_every_bad_record_is_skipped_counted_and_reported(messy_root, tmp_path):
    """Truncated/zero-byte/non-image JPEGs, bad or missing metadata, orphans and duplicates:
    the manifest keeps exactly the good bins, and the report beside it names every other one with its reason."""
    build = build_manifest(AbidRoot(str(messy_root)), Subset())
    out = tmp_path / "m.parquet"
    report = json.loads(Path(write_manifest(build, str(out))).read_text())
    assert sorted(r.id for r in read_manifest(str(out)).rows) == sorted(GOOD_IDS)
    assert {p["id"]: p["kind"] for p in report["problems"]} == EXPECTED_PROBLEMS
    assert report["kept"] == len(GOOD_IDS) and report["skipped"] == len(EXPECTED_PROBLEMS)
    assert all(p["detail"] for p in report["problems"])
    assert report_url(str(out)).endswith("m.report.json")


def test_manifest_rows_describe_real_images(small_manifest, abid_root):
    manifest = read_manifest(str(small_manifest))
    assert manifest.counts() == dict.fromkeys(range(1, 6), 16)
    row = manifest.rows[0]
    assert row.uri == str(abid_root.resolve() / "bin-images" / f"{row.id}.jpg")
    assert row.width > 0 and row.height > 0 and len(row.sha256) == 64
    assert row.source == str(abid_root.resolve())


def test_manifest_rows_carry_the_metadata_summed_volume_and_weight(small_manifest, abid_root):
    """Must hold: each row's items_volume / items_weight is quantity x length x width x height / quantity x weight
    summed over its metadata's items, computed here from the JSON files directly."""
    for row in read_manifest(str(small_manifest)).rows[:10]:
        items = json.loads((abid_root / "metadata" / f"{row.id}.json").read_text())["BIN_FCSKU_DATA"].values()
        volume = sum(i["quantity"] * i["length"]["value"] * i["width"]["value"] * i["height"]["value"] for i in items)
        assert row.items_volume == pytest.approx(volume)
        assert row.items_weight == pytest.approx(sum(i["quantity"] * i["weight"]["value"] for i in items))


def test_a_manifest_written_before_the_metadata_columns_still_reads(small_manifest, tmp_path):
    """Tried: a manifest without the items_volume / items_weight columns (as written before they existed).
    Must hold: it reads, those values are None, everything else as before; a required column missing is an error."""
    import pyarrow.parquet as pq

    old = tmp_path / "old.parquet"
    pq.write_table(read_parquet(str(small_manifest)).drop_columns(["items_volume", "items_weight"]), old)
    rows = read_manifest(str(old)).rows
    assert [r.id for r in rows] == [r.id for r in read_manifest(str(small_manifest)).rows]
    assert all(r.items_volume is None and r.items_weight is None for r in rows)
    pq.write_table(read_parquet(str(small_manifest)).drop_columns(["count"]), old)
    with pytest.raises(ValueError, match=r"lacks manifest columns \['count'\]"):
        read_manifest(str(old))


def test_split_is_stable_when_images_are_added():
    """A bin's split depends on (seed, id) only: growing the dataset never moves an existing bin."""
    ratios = SplitRatios()
    before = {f"{i:05d}": assign_split(f"{i:05d}", 7, ratios) for i in range(2000)}
    after = {f"{i:05d}": assign_split(f"{i:05d}", 7, ratios) for i in range(4000)}
    assert all(after[k] == v for k, v in before.items())
    assert before != {k: assign_split(k, 8, ratios) for k in before}  # the seed matters


def test_split_ratios_hold_within_each_count_on_the_real_sample(abid_root):
    """The split is a hash of (seed, id), not stratified; still, with 400 bins of each count of the 1-5 subset,
    each count's shares stay near 80/10/10: train within 5 points, test within 3.5."""
    build = build_manifest(AbidRoot(str(abid_root)), Subset(counts=(1, 5), per_count=400))
    for count in range(1, 6):
        splits = Counter(r.split for r in build.manifest.rows if r.count == count)
        total = sum(splits.values())
        assert abs(splits["train"] / total - 0.8) < 0.05
        assert abs(splits["test"] / total - 0.1) < 0.035


def test_split_ratios_parse_and_reject():
    assert SplitRatios.parse("70/15/15").val == pytest.approx(0.15)
    for bad in ("80/20", "a/b/c", "-1/50/51"):
        with pytest.raises(ValueError):
            SplitRatios.parse(bad)


def test_digest_changes_with_labels(small_manifest):
    manifest = read_manifest(str(small_manifest))
    relabelled = manifest.model_copy(deep=True)
    relabelled.rows[0].count += 1
    assert manifest.digest() != relabelled.digest()


def test_reading_something_that_is_not_a_manifest_fails_clearly(tmp_path):
    (tmp_path / "x.parquet").write_text("hello")
    with pytest.raises(ValueError, match="not a bintally manifest"):
        read_manifest(str(tmp_path / "x.parquet"))


def test_a_process_with_torch_loaded_exits_cleanly_after_reading_a_manifest(small_manifest):
    # Tried: six fresh processes that load torch, read a manifest and end. Must hold: each exits 0. Read with
    # Arrow's thread pools, about half of them aborted at exit (134) after finishing (`read_manifest`).
    code = f"import torch; from bintally.data.manifest import read_manifest; read_manifest({str(small_manifest)!r})"
    codes = [subprocess.run([sys.executable, "-c", code], capture_output=True).returncode for _ in range(6)]
    assert codes == [0] * 6
