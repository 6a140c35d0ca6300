"""The manifest: bad bins are skipped and reported with reasons; splits are stable and keep their ratios per count."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bintally.data.abid import AbidRoot
from bintally.data.manifest import (
    SplitRatios,
    assign_split,
    build_manifest,
    read_manifest,
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
