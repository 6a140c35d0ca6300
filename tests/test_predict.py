"""Batch scoring over a folder (with one corrupt photo), a glob and an S3 prefix; resumable."""

from __future__ import annotations

import csv

import boto3
import pytest
from typer.testing import CliRunner

from bintally.cli import app
from bintally.predict import PredictConfig, predict

CLASSES = [1, 2, 3, 4, 5]
PHOTO_IDS = ["00585", "00588", "00589", "00594"]


@pytest.fixture
def photo_folder(tmp_path, abid_root):
    """Four real bin photos (links to the sample, read in place) and one corrupt JPEG, in nested folders."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, bin_id in enumerate(PHOTO_IDS):
        (folder / ("more" if i % 2 else "") / f"{bin_id}.jpg").symlink_to(abid_root / "bin-images" / f"{bin_id}.jpg")
    (folder / "broken.jpg").write_bytes((abid_root / "bin-images" / "00585.jpg").read_bytes()[:300])
    (folder / "notes.txt").write_text("not a photo, not listed")
    return folder


def read_rows(path) -> dict[str, dict]:
    with open(path, newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


def test_predict_folder_with_a_corrupt_photo_then_resume(small_artifact, photo_folder, tmp_path):
    """`bintally predict` over a folder: the four photos get a count 1-5 with probabilities summing to 1, the
    corrupt one a filled error column; a rerun skips the four scored photos, retries only the corrupt one, and
    leaves one row per photo."""
    out = tmp_path / "predictions.csv"
    args = ["predict", small_artifact, str(photo_folder), "--out", str(out), "--batch-size", "3", "--workers", "2"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    rows = read_rows(out)
    assert set(rows) == {*PHOTO_IDS, "broken"}
    assert rows["broken"]["error"] and not rows["broken"]["count"]
    for bin_id in PHOTO_IDS:
        row = rows[bin_id]
        assert row["error"] == "" and int(row["count"]) in CLASSES
        assert sum(float(row[f"p_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
        assert float(row["confidence"]) == pytest.approx(max(float(row[f"p_{c}"]) for c in CLASSES))

    cfg = PredictConfig(model=small_artifact, inputs=[str(photo_folder)], out=str(out), backend="torch")
    summary = predict(cfg)
    assert (summary.found, summary.skipped, summary.scored, summary.failed) == (5, 4, 0, 1)
    again = read_rows(out)
    assert len(again) == 5 and len(out.read_text().splitlines()) == 6  # header + one line per photo
    assert {k: again[k]["count"] for k in PHOTO_IDS} == {k: rows[k]["count"] for k in PHOTO_IDS}


def test_predict_glob_and_s3_prefix(small_artifact, photo_folder, s3_endpoint, photos_in_s3, tmp_path):
    """A glob picks only its matches; an s3:// prefix on moto is listed and scored, rows keep the s3:// URI."""
    out = tmp_path / "glob.csv"
    predict(PredictConfig(model=small_artifact, inputs=[f"{photo_folder}/*.jpg"], out=str(out), backend="torch"))
    assert set(read_rows(out)) == {"00585", "00589", "broken"}
    out = tmp_path / "s3.csv"
    cfg = PredictConfig(model=small_artifact, inputs=["s3://scoring/day1/"], out=str(out), backend="torch", endpoint_url=s3_endpoint)
    summary = predict(cfg)
    rows = read_rows(out)
    assert summary.scored == len(PHOTO_IDS) == len(rows)
    assert all(row["uri"].startswith("s3://scoring/day1/") and row["error"] == "" for row in rows.values())


@pytest.fixture
def photos_in_s3(s3_endpoint, abid_root):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="scoring")
    for bin_id in PHOTO_IDS:
        s3.put_object(Bucket="scoring", Key=f"day1/{bin_id}.jpg", Body=(abid_root / "bin-images" / f"{bin_id}.jpg").read_bytes())
