"""Inventory decisions from count probabilities: accept, review, mismatch at the policy's thresholds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bintally.reconcile import ReconcilePolicy, reconcile, summarise

PROBS = {"1": 0.02, "2": 0.08, "3": 0.70, "4": 0.15, "5": 0.05}
POLICY = ReconcilePolicy(accept_at=0.6, mismatch_at=0.05)


@pytest.mark.parametrize(
    "expected, decision, p",
    [(3, "accept", 0.70), (4, "review", 0.15), (2, "review", 0.08), (5, "mismatch", 0.05), (1, "mismatch", 0.02)],
)
def test_decision_follows_the_match_probability(expected, decision, p):
    result = reconcile(PROBS, expected, POLICY)
    assert (result.decision, result.match_probability, result.count) == (decision, p, 3)


def test_a_count_the_model_does_not_know_goes_to_a_person():
    """A record of 12 items cannot be judged by a 1-5 model: review, never accept or mismatch."""
    result = reconcile(PROBS, 12, POLICY)
    assert result.decision == "review" and result.match_probability == 0.0


def test_thresholds_must_be_ordered():
    with pytest.raises(ValidationError, match="must be below"):
        ReconcilePolicy(accept_at=0.3, mismatch_at=0.4)


def test_summary_counts_decisions_and_measures_them_against_audited_counts():
    results = [reconcile(PROBS, e, POLICY) for e in (3, 3, 4, 1)]
    audited = [3, 4, 4, 2]  # the second record was wrong but accepted; the last was rightly flagged
    summary = summarise(results, audited)
    assert summary.by_decision == {"accept": 2, "review": 1, "mismatch": 1}
    assert summary.accept_precision == 0.5 and summary.mismatch_precision == 1.0
    assert summarise(results).accept_precision is None


def test_reconcile_cli_over_a_csv_with_an_unreadable_photo(tmp_path, abid_root, small_artifact):
    """A CSV of real photos with recorded and audited quantities, plus one corrupt file: every record gets a row,
    the corrupt one an error and no decision, and the audited precision is computed from the decided ones."""
    import csv

    from typer.testing import CliRunner

    from bintally.cli import app

    broken = tmp_path / "broken.jpg"
    broken.write_bytes((abid_root / "bin-images" / "00585.jpg").read_bytes()[:300])
    photos = [abid_root / "bin-images" / f"{i}.jpg" for i in ("00585", "00588", "00589")]
    records = tmp_path / "records.csv"
    lines = ["uri,expected_quantity,true_quantity"] + [f"{p},{q},{t}" for p, q, t in zip(photos, (1, 2, 3), (1, 3, ""))]
    records.write_text("\n".join(lines + [f"{broken},2,"]) + "\n")
    out = tmp_path / "decisions.csv"
    result = CliRunner().invoke(app, ["reconcile", small_artifact, str(records), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["00585", "00588", "00589", "broken"]
    assert all(r["decision"] in ("accept", "review", "mismatch") for r in rows[:3])
    assert rows[3]["decision"] == "" and "ImageError" in rows[3]["error"]
    assert "3 records decided, 1 unreadable" in result.output


def test_records_csv_without_the_needed_columns_is_a_clear_error(tmp_path):
    from bintally.reconcile import read_records

    (tmp_path / "r.csv").write_text("image,qty\na.jpg,3\n")
    with pytest.raises(ValueError, match="needs columns uri and expected_quantity"):
        read_records(str(tmp_path / "r.csv"))
    (tmp_path / "r.csv").write_text("uri,expected_quantity\na.jpg,three\n")
    with pytest.raises(ValueError, match="line 2: expected_quantity"):
        read_records(str(tmp_path / "r.csv"))
