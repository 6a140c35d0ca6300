"""benchmarks/studies/eye_count.py end to end on real bins: draw photos blind, fill in answers, score them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bintally.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[3]


def eye_count(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/studies/eye_count.py", *args], cwd=REPO, capture_output=True, text=True)


def test_photos_are_drawn_blind_and_answers_are_scored_against_the_records(tmp_path, small_manifest, small_artifact):
    # Tried: draw 5 validation bins of a real manifest, answer the recorded count for all but the first (one
    # more than recorded there), score with a model beside. Must hold: the photos are PNGs at twice the size, the
    # answers file carries no recorded count (the counting is blind), draw.json says how the bins were drawn and
    # travels into the result, and the scores are 4/5 exact, 5/5 within one, mean error +0.2, with the model's
    # row on the same bins and its paired difference from the eye.
    drawn = eye_count("sample", str(small_manifest), "--out", str(tmp_path / "draw"), "--n", "5")
    assert drawn.returncode == 0, drawn.stderr
    with open(tmp_path / "draw" / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["photo", "id", "count"] and all(r["count"] == "" for r in rows)
    recorded = {r.id: r for r in read_manifest(str(small_manifest)).rows}
    assert all(recorded[r["id"]].split == "val" for r in rows)
    with Image.open(tmp_path / "draw" / rows[0]["photo"]) as photo:
        assert photo.size == (2 * recorded[rows[0]["id"]].width, 2 * recorded[rows[0]["id"]].height)

    for i, r in enumerate(rows):
        r["count"] = str(recorded[r["id"]].count + (i == 0))
    write_answers(tmp_path / "draw" / "answers.csv", rows)
    out = tmp_path / "eye.json"
    scored = eye_count("score", str(small_manifest), str(tmp_path / "draw" / "answers.csv"), "--model", small_artifact, "--out", str(out))
    assert scored.returncode == 0, scored.stderr
    results = json.loads(out.read_text())["results"]
    assert results["by eye"]["accuracy"] == 0.8 and results["by eye"]["within_one"] == 1.0
    assert abs(results["by eye"]["mean_error"] - 0.2) < 1e-9
    assert list(results) == ["by eye", f"model {small_artifact}"]
    model = results[f"model {small_artifact}"]
    assert model["vs_eye"]["difference"] == pytest.approx(model["accuracy"] - 0.8)
    draw = json.loads((tmp_path / "draw" / "draw.json").read_text())
    assert draw["n"] == 5 and draw["seed"] == 7 and json.loads(out.read_text())["draw"] == draw


def write_answers(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["photo", "id", "count"])
        writer.writeheader()
        writer.writerows(rows)


def test_unfilled_repeated_or_foreign_answers_stop_with_the_line_or_the_bins_named(tmp_path, small_manifest):
    # Tried: an answers file with a blank count; one with a bin twice; one with a test-split bin. Must hold: each
    # stops (exit 1) naming the line or the bins, and no result file is written: a test bin is never scored.
    rows = read_manifest(str(small_manifest)).rows
    val, test = next(r for r in rows if r.split == "val"), next(r for r in rows if r.split == "test")
    cases = {
        "line 3 (photo 01.png, id": [{"photo": "00.png", "id": val.id, "count": "2"}, {"photo": "01.png", "id": "x", "count": " "}],
        "answered twice": [{"photo": "00.png", "id": val.id, "count": "2"}, {"photo": "01.png", "id": val.id, "count": "3"}],
        f"not in {small_manifest}'s validation split: ['{test.id}']": [{"photo": "00.png", "id": test.id, "count": "2"}],
    }
    for i, (message, answers) in enumerate(cases.items()):
        write_answers(tmp_path / f"answers-{i}.csv", answers)
        run = eye_count("score", str(small_manifest), str(tmp_path / f"answers-{i}.csv"), "--out", str(tmp_path / f"{i}.json"))
        assert run.returncode == 1 and message in run.stderr, run.stderr
        assert not (tmp_path / f"{i}.json").exists()
