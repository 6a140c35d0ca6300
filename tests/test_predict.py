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


def test_photos_of_one_name_in_two_folders_keep_two_ids(small_artifact, abid_root, tmp_path):
    """Tried: day1/00585.jpg and day2/00585.jpg (two bins photographed on two days, named alike), and 00588.jpg.
    Must hold: two rows that say which is which (day1/00585, day2/00585), each with its own uri; 00588 keeps its
    bin id."""
    for day, bin_id in [("day1", "00585"), ("day2", "00585"), ("day2", "00588")]:
        (tmp_path / day).mkdir(exist_ok=True)
        (tmp_path / day / f"{bin_id}.jpg").symlink_to(abid_root / "bin-images" / f"{bin_id}.jpg")
    out = tmp_path / "predictions.csv"
    predict(PredictConfig(model=small_artifact, inputs=[str(tmp_path / "day1"), str(tmp_path / "day2")], out=str(out), backend="torch"))
    rows = read_rows(out)
    assert set(rows) == {"day1/00585", "day2/00585", "00588"}
    assert rows["day1/00585"]["uri"].endswith("day1/00585.jpg") and rows["day2/00585"]["uri"].endswith("day2/00585.jpg")


@pytest.mark.parametrize("second_inputs", [["day1", "day2"], ["day2"]])
def test_a_rerun_with_a_new_folder_renames_the_earlier_rows_it_clashes_with(small_artifact, abid_root, tmp_path, second_inputs):
    """Tried: day1/ scored (its 00585.jpg is "00585"), then the same --out with day2/, which holds another
    00585.jpg, added to day1/ or given alone. Must hold: the earlier row is not scored again but renamed
    day1/00585, beside day2/00585: the file never holds one id twice, and an id never names another photo than it
    did in the same file."""
    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "00585.jpg").symlink_to(abid_root / "bin-images" / ("00585.jpg" if day == "day1" else "00588.jpg"))
    out = tmp_path / "predictions.csv"
    first = predict(PredictConfig(model=small_artifact, inputs=[str(tmp_path / "day1")], out=str(out), backend="torch"))
    assert first.scored == 1 and set(read_rows(out)) == {"00585"}
    inputs = [str(tmp_path / day) for day in second_inputs]
    second = predict(PredictConfig(model=small_artifact, inputs=inputs, out=str(out), backend="torch"))
    assert (second.skipped, second.scored) == (len(inputs) - 1, 1)
    rows = read_rows(out)
    assert len(out.read_text().splitlines()) == 3 and set(rows) == {"day1/00585", "day2/00585"}
    assert rows["day1/00585"]["uri"].endswith("day1/00585.jpg") and rows["day2/00585"]["uri"].endswith("day2/00585.jpg")


def test_an_id_does_not_shrink_back_when_the_photo_it_clashed_with_failed(small_artifact, abid_root, tmp_path):
    """Tried: day1/00585.jpg (a photo) and day2/00585.jpg (a corrupt file) scored together, then day1/ alone on the
    same --out, twice. Must hold: day1's row keeps its id day1/00585, so a join on ids across the runs holds; the
    failed day2 row, not retried, stays with its error (it still names that photo)."""
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    (tmp_path / "day1" / "00585.jpg").symlink_to(abid_root / "bin-images" / "00585.jpg")
    (tmp_path / "day2" / "00585.jpg").write_bytes((abid_root / "bin-images" / "00585.jpg").read_bytes()[:300])
    out = tmp_path / "predictions.csv"
    both = [str(tmp_path / "day1"), str(tmp_path / "day2")]
    assert predict(PredictConfig(model=small_artifact, inputs=both, out=str(out), backend="torch")).failed == 1
    for _ in range(2):
        again = predict(PredictConfig(model=small_artifact, inputs=[str(tmp_path / "day1")], out=str(out), backend="torch"))
        assert (again.skipped, again.scored, again.failed) == (1, 0, 0)
        rows = read_rows(out)
        assert set(rows) == {"day1/00585", "day2/00585"} and rows["day2/00585"]["error"] and not rows["day1/00585"]["error"]


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


def test_a_torn_last_row_is_scored_again_not_kept(small_artifact, photo_folder, tmp_path):
    """Tried: score a folder, then cut the CSV in the middle of its last row (what a kill during a write leaves).
    Must hold: the rerun treats that photo as not scored, rewrites the file without the torn row, scores it again,
    and every photo ends with exactly one complete row."""
    out = tmp_path / "predictions.csv"
    cfg = PredictConfig(model=small_artifact, inputs=[str(photo_folder)], out=str(out), backend="torch")
    predict(cfg)
    text = out.read_text()
    last_row_start = text.rstrip("\n").rfind("\n") + 1
    out.write_text(text[: last_row_start + (len(text) - last_row_start) // 2])  # half of the last line
    torn_id = text[last_row_start:].split(",", 1)[0]
    summary = predict(cfg)
    assert summary.skipped == 3 and summary.scored + summary.failed == 2  # the torn photo and the broken one
    rows = read_rows(out)
    assert len(rows) == 5 and len(out.read_text().splitlines()) == 6
    assert torn_id in rows and all(rows[k]["error"] == "" and rows[k]["p_5"] for k in PHOTO_IDS)


def test_sigkill_during_scoring_then_resume_leaves_one_complete_row_per_photo(small_artifact, abid_root, tmp_path):
    """Tried: `bintally predict` over 80 real photos, batch size 2, killed with SIGKILL once rows appear. Must hold:
    the rerun scores only what is missing (or torn), and every photo has exactly one complete row."""
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    photos = sorted((abid_root / "bin-images").glob("*.jpg"))[:80]
    for p in photos:
        (folder / p.name).symlink_to(p)
    out = tmp_path / "killed.csv"
    cmd = [sys.executable, "-m", "bintally", "predict", small_artifact, str(folder), "--out", str(out), "--batch-size", "2"]
    proc = subprocess.Popen([*cmd, "--backend", "torch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 6):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    scored_before = out.read_text().count("\n") - 1
    assert 0 < scored_before < 80, "the kill should land mid-run"
    summary = predict(PredictConfig(model=small_artifact, inputs=[str(folder)], out=str(out), backend="torch"))
    assert summary.found == 80 and summary.skipped + summary.scored == 80 and summary.failed == 0
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted(r["id"] for r in rows) == sorted(p.stem for p in photos)
    assert all(r["error"] == "" and r[f"p_{c}"] for r in rows for c in CLASSES)


def test_a_manifest_names_its_photos(small_artifact, small_manifest, tmp_path):
    """Tried: a manifest (.parquet) as the input. Must hold: one scored row per manifest row, with its uri."""
    from bintally.data.manifest import read_manifest

    out = tmp_path / "manifest.csv"
    summary = predict(PredictConfig(model=small_artifact, inputs=[str(small_manifest)], out=str(out), backend="torch"))
    uris = {r.uri for r in read_manifest(str(small_manifest)).rows}
    assert summary.scored == len(uris) == 80 and {r["uri"] for r in read_rows(out).values()} == uris


def test_a_parquet_out_without_ray_is_refused_before_any_work(small_artifact, photo_folder, tmp_path):
    """Tried: `--out predictions.parquet` without --ray. Must hold: a clear error, and no file written (the
    single-machine path appends CSV text batch by batch, which a .parquet name would hide)."""
    out = tmp_path / "predictions.parquet"
    with pytest.raises(ValueError, match="needs --ray"):
        predict(PredictConfig(model=small_artifact, inputs=[str(photo_folder)], out=str(out), backend="torch"))
    assert not out.exists()


def test_an_open_top_model_writes_at_least_and_its_class_label(open_top_artifact, photo_folder, tmp_path):
    """A model whose top class is "4 or more": rows say count 4, at_least true, and carry a p_4+ column; the
    scores read back from the CSV are the ones written."""
    from bintally.counts import CountClasses
    from bintally.scoring.rows import outcome_of

    out = tmp_path / "predictions.csv"
    predict(PredictConfig(model=open_top_artifact, inputs=[str(photo_folder)], out=str(out)))
    rows = read_rows(out)
    assert list(rows["00585"]) == ["id", "uri", "count", "at_least", "confidence", "p_0", "p_1", "p_2", "p_3", "p_4+", "error"]
    for bin_id in PHOTO_IDS:
        assert (rows[bin_id]["count"], rows[bin_id]["at_least"]) == ("4", "true")
        score = outcome_of(rows[bin_id], CountClasses(values=[0, 1, 2, 3, 4], open_top=True))
        assert not isinstance(score, str) and score.at_least and score.probabilities["4+"] == pytest.approx(0.80, abs=0.01)


@pytest.mark.parametrize("cut", ["after the last comma", "before the final newline"])
def test_a_last_row_without_its_newline_is_scored_again_on_a_line_of_its_own(small_artifact, photo_folder, tmp_path, cut):
    """Tried: score a folder, then cut the CSV right after the last row's final comma (the row complete but for its
    empty error and newline), or right before the final newline. Must hold: a row counts only once its newline is
    written, so that photo is scored again; the next rows start on lines of their own (nothing glued onto the cut
    row), every photo ends with exactly one well-formed row, and the summary counts the one corrupt photo as failed."""
    out = tmp_path / "predictions.csv"
    cfg = PredictConfig(model=small_artifact, inputs=[str(photo_folder)], out=str(out), backend="torch")
    predict(cfg)
    data = out.read_bytes()
    assert data.endswith(b",\r\n"), "the last row should be a scored photo's (an empty error)"
    out.write_bytes(data[: data.rindex(b",") + 1] if cut == "after the last comma" else data.rstrip(b"\r\n"))
    summary = predict(cfg)
    assert (summary.skipped, summary.scored, summary.failed) == (3, 1, 1)  # the cut row's photo again; the corrupt one
    lines = out.read_bytes().split(b"\r\n")
    assert lines[-1] == b"" and len(lines) == 7  # header + one line per photo, each ended
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted(r["id"] for r in rows) == sorted([*PHOTO_IDS, "broken"])
    assert all(None not in r and r["error"] == "" and int(r["count"]) in CLASSES for r in rows if r["id"] != "broken")


def test_an_empty_output_left_by_a_kill_is_a_fresh_start(small_artifact, photo_folder, tmp_path):
    """Tried: `--out` an empty file (a kill before the first flush). Must hold: the run starts afresh (header and
    every photo), not a refusal for its missing header."""
    out = tmp_path / "predictions.csv"
    out.write_bytes(b"")
    summary = predict(PredictConfig(model=small_artifact, inputs=[str(photo_folder)], out=str(out), backend="torch"))
    assert (summary.skipped, summary.scored, summary.failed) == (0, 4, 1)
    assert set(read_rows(out)) == {*PHOTO_IDS, "broken"}


def test_a_second_run_on_the_same_out_is_refused_at_once(small_artifact, photo_folder, tmp_path):
    """Tried: a run while another holds `OUT.lock` (as a run does for its whole length). Must hold: it fails at
    once with an error naming the file, and leaves the output untouched (two runs appending and resuming one file
    lose each other's rows)."""
    import fcntl

    out = tmp_path / "predictions.csv"
    with open(f"{out}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match=f"{out}.*another run"):
            predict(PredictConfig(model=small_artifact, inputs=[str(photo_folder)], out=str(out), backend="torch"))
    assert not out.exists()
