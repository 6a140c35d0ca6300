"""`bintally reconcile` over files of records: decisions CSV, carried columns, audits, bad input."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from bintally.cli import app
from bintally.reconcile.policy import DecisionPolicy, reconcile
from bintally.reconcile.records import read_records, summarise

PROBS = {"1": 0.02, "2": 0.08, "3": 0.70, "4": 0.15, "5": 0.05}


def test_summary_against_audited_counts_by_hand():
    """Five records decided from the same probabilities (accept at 0.6, flag at 0.05): recorded 3, 3, 4, 1, 5.
    People recounted four of them: 3, 4, -, 2, 5. By hand: accepted and audited = records 1 and 2, one of them
    wrong (the second said 3, the bin held 4): 50%. Flagged and audited = records 4 and 5: the 4th was wrong (said
    1, held 2), the 5th right (said 5, held 5): flags right 50%. The review record has no audit."""
    policy = DecisionPolicy(accept_at=0.6, flag_at=0.05)
    results = [reconcile(PROBS, e, policy) for e in (3, 3, 4, 1, 5)]
    summary = summarise(results, [3, 4, None, 2, 5])
    assert summary.by_decision == {"accept": 2, "review": 1, "mismatch": 2}
    assert (summary.audited, summary.accepted_error, summary.flag_precision) == (4, 0.5, 0.5)
    assert summarise(results).accepted_error is None


def test_reconcile_cli_carries_columns_reads_audits_and_survives_an_unreadable_photo(tmp_path, abid_root, small_artifact):
    """A CSV of three real photos and one corrupt file, with a bin location column and one audited count, plus an
    --audited file of recounts (00588: 2, 00589: 4). Tried: `bintally reconcile` with thresholds placed between
    the three records' own P(count = recorded), so one record is accepted, one reviewed and one flagged. Must hold:
    a row per record in input order with the location carried through and those three decisions; the corrupt one
    an error and no decision; audits joined by id (the file wins over the CSV)."""
    from bintally.scoring.model import load_model
    from bintally.scoring.one_machine import score_images

    broken = tmp_path / "broken.jpg"
    broken.write_bytes((abid_root / "bin-images" / "00585.jpg").read_bytes()[:300])
    photos = [abid_root / "bin-images" / f"{i}.jpg" for i in ("00585", "00588", "00589")]
    expected, truths = (1, 2, 3), {str(photos[0]): 1, str(photos[1]): 2, str(photos[2]): 4}
    scores = dict(next(iter(score_images(load_model(small_artifact, "onnx", "auto"), [str(p) for p in photos]))))
    match = {str(p): scores[str(p)].probabilities[str(q)] for p, q in zip(photos, expected)}
    low, middle, high = sorted(match.values())
    want = {u: "accept" if m == high else "mismatch" if m == low else "review" for u, m in match.items()}
    records = tmp_path / "records.csv"
    lines = ["uri,expected_quantity,true_quantity,location"]
    lines += [f"{p},{q},{t},aisle-{q}" for p, q, t in zip(photos, expected, (1, 3, ""))]
    records.write_text("\n".join([*lines, f"{broken},2,,aisle-9"]) + "\n")
    audits = tmp_path / "audits.csv"
    audits.write_text(f"id,true_quantity\n{photos[1]},2\n{photos[2]},4\n")  # without an id column, the uri is the id
    out = tmp_path / "decisions.csv"
    thresholds = ["--accept-at", str((middle + high) / 2), "--mismatch-at", str((low + middle) / 2)]
    result = CliRunner().invoke(app, ["reconcile", small_artifact, str(records), "--out", str(out), *thresholds, "--audited", str(audits)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == [*map(str, photos), str(broken)]
    assert [r["location"] for r in rows] == ["aisle-1", "aisle-2", "aisle-3", "aisle-9"]
    assert [r["decision"] for r in rows] == [*(want[str(p)] for p in photos), ""]
    assert "ImageError" in rows[3]["error"] and rows[3]["match_probability"] == ""
    assert "3 records decided, 1 unreadable" in result.output
    accepted = next(u for u, d in want.items() if d == "accept")
    wrong = truths[accepted] != dict(zip(map(str, photos), expected))[accepted]
    assert f"audited 3: accepted records wrong {100 * wrong:.1f}%" in result.output


def test_records_csv_without_the_needed_columns_is_a_clear_error(tmp_path):
    (tmp_path / "r.csv").write_text("image,qty\na.jpg,3\n")
    with pytest.raises(ValueError, match="needs columns expected_quantity, uri"):
        read_records(str(tmp_path / "r.csv"))
    (tmp_path / "r.csv").write_text("uri,expected_quantity\na.jpg,three\n")
    with pytest.raises(ValueError, match="line 2: expected_quantity"):
        read_records(str(tmp_path / "r.csv"))


def test_without_an_id_column_the_uri_is_the_id(tmp_path):
    """Two days' photos with the same file name. Must hold: two ids (the uris), so their audits stay apart."""
    (tmp_path / "r.csv").write_text("uri,expected_quantity\n/day1/00585.jpg,3\n/day2/00585.jpg,4\ns3://b/day3/00585.jpg,1\n")
    assert [r.id for r in read_records(str(tmp_path / "r.csv"))] == ["/day1/00585.jpg", "/day2/00585.jpg", "s3://b/day3/00585.jpg"]
    (tmp_path / "r.csv").write_text("id,uri,expected_quantity\nbin-7,/day1/00585.jpg,3\n,/day2/00585.jpg,4\n")
    assert [r.id for r in read_records(str(tmp_path / "r.csv"))] == ["bin-7", "/day2/00585.jpg"]  # a blank id too


def test_a_decisions_csv_fed_back_in_keeps_its_columns_renamed(tmp_path, abid_root, small_artifact):
    """Records carrying columns named like reconcile's output (a decisions CSV fed back in: count, decision, audit,
    error, and an input_decision from the round before), one photo unreadable. Must hold: no duplicate header; the
    input's columns carried as input_<name>, the round before's as input_input_decision; the unreadable photo's row
    has no decision of its own, whatever its input said."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((abid_root / "bin-images" / "00585.jpg").read_bytes()[:300])
    photo = abid_root / "bin-images" / "00588.jpg"
    records = tmp_path / "decisions-in.csv"
    header = "id,uri,expected_quantity,count,decision,audit,error,input_decision,location"
    records.write_text(f"{header}\na,{photo},2,2,accept,true,,review,aisle-2\nb,{broken},3,3,accept,false,,mismatch,aisle-3\n")
    out = tmp_path / "decisions.csv"
    result = CliRunner().invoke(app, ["reconcile", small_artifact, str(records), "--out", str(out)])
    assert result.exit_code == 0, result.output
    header_out = next(csv.reader(out.open()))
    assert len(header_out) == len(set(header_out)), header_out
    rows = list(csv.DictReader(out.open()))
    carried = ["input_count", "input_decision", "input_audit", "input_error", "input_input_decision", "location"]
    assert [[r[c] for c in carried] for r in rows] == [
        ["2", "accept", "true", "", "review", "aisle-2"],
        ["3", "accept", "false", "", "mismatch", "aisle-3"],
    ]
    assert rows[1]["decision"] == rows[1]["count"] == "" and "ImageError" in rows[1]["error"]
    assert rows[0]["decision"] in ("accept", "review", "mismatch")


def test_a_batch_gets_the_policy_fitted_again_for_its_count_distribution_only_when_asked(small_artifact, tmp_path):
    """An artifact of counts 0-3 and 4+ whose policy was fitted on 400 bins, 80 of each class (their probabilities
    kept in fit.npz), and a batch of 200 photos that are mostly empty bins. Must hold: by default the scores and the
    fitted policy stay as they are; with adjusting, the batch's estimated share of empty bins rises above the
    fitting bins' 20% (the estimate moves whole count ranges: 0, 1-3, 4+) and the policy is fitted again on the
    re-weighted bins; below 50 photos it says so and keeps the fitted policy."""
    import shutil

    import numpy as np

    from bintally.model.artifact import load_artifact, write_fit_data, write_spec
    from bintally.model.predictor import score_probabilities
    from bintally.reconcile.fit import BatchTarget, Targets, fit_policy
    from bintally.reconcile.policy import RecordErrors
    from bintally.reconcile.records import for_batch

    out = tmp_path / "model"
    shutil.copytree(small_artifact, out)
    artifact = load_artifact(str(out))
    artifact.spec = artifact.spec.model_copy(update={"classes": [0, 1, 2, 3, 4], "open_top": True})
    classes, rng = artifact.spec.count_classes, np.random.default_rng(0)

    def posteriors(truth: np.ndarray) -> np.ndarray:  # a model that is right about 60% of the time
        p = np.full((len(truth), 5), 0.1) + 0.5 * np.eye(5)[truth] + rng.uniform(0, 0.05, (len(truth), 5))
        return p / p.sum(axis=1, keepdims=True)

    fit_counts = np.repeat(np.arange(5), 80)
    fit_p = posteriors(fit_counts)
    policy = fit_policy(fit_p, fit_counts.tolist(), classes, Targets(confidence=None), RecordErrors())
    write_spec(str(out), artifact.spec.model_copy(update={"decision_policy": policy}))
    write_fit_data(str(out), fit_p, fit_counts)
    artifact = load_artifact(str(out))
    batch = rng.choice(np.arange(5), size=200, p=[0.8, 0.05, 0.05, 0.05, 0.05])
    scores = {f"photo-{i}.jpg": score_probabilities(p, classes) for i, p in enumerate(posteriors(batch))}

    kept, as_fitted, note = for_batch(scores, artifact, policy, adjust=False)
    assert kept == scores and as_fitted == policy and note.batch_prior is None and "--adjust-to-batch" in note.note
    adjusted, refit, note = for_batch(scores, artifact, policy, adjust=True)
    assert note.batch_prior is not None and note.fitted_prior is not None
    assert note.batch_prior["0"] > 0.4 and abs(note.fitted_prior["0"] - 0.2) < 0.01
    assert refit.fitted is not None and "re-weighted" in refit.fitted["split"] and adjusted != scores
    few = dict(list(scores.items())[:49])
    assert for_batch(few, artifact, policy, adjust=True)[1] == policy
    # A batch target is fitted again for the records the batch decides (250 here: some photos serve two records);
    # as fitted, a batch smaller than the promise's is warned of, a larger one not.
    targets = Targets(confidence=None, batch=BatchTarget(records=811))
    per_batch = fit_policy(fit_p, fit_counts.tolist(), classes, targets, RecordErrors())
    _, refit, note = for_batch(scores, artifact, per_batch, adjust=True, records=250)
    assert refit.fitted is not None and refit.fitted["targets"]["batch"]["records"] == 250 and "its 250 records" in note.note
    smaller, larger = (for_batch(scores, artifact, per_batch, False, n)[2].note for n in (250, 1000))
    assert "is for 811 records and this batch has 250, so it does not hold here" in smaller and "batch promise" not in larger


@pytest.mark.parametrize(
    "adjust, asked, scored", [(False, "auto", "auto"), (True, "auto", "fp32"), (True, "int8", "int8"), (True, "fp32", "fp32")]
)
def test_a_policy_fitted_for_the_batch_is_decided_on_fp32_unless_int8_is_asked_for(
    small_artifact, tmp_path, monkeypatch, adjust, asked, scored
):
    """The export's int8 check judged the artifact's own policy; a policy fitted again for the batch was never
    checked on int8's probabilities. Must hold: with --adjust-to-batch, `--precision auto` scores in fp32 (where
    auto might pick int8); without it, and with a precision asked for, the precision is passed on as given."""
    import bintally.reconcile.records as records
    from bintally.reconcile.records import ReconcileConfig, reconcile_records

    seen = []

    def loaded(model, backend, precision):
        seen.append(precision)
        raise RuntimeError("stop before scoring")

    monkeypatch.setattr(records, "load_model", loaded)
    (tmp_path / "records.csv").write_text("uri,expected_quantity\n/nowhere/1.jpg,3\n")
    cfg = ReconcileConfig(
        model=small_artifact, records=str(tmp_path / "records.csv"), out=str(tmp_path / "d.csv"), precision=asked, adjust_to_batch=adjust
    )
    with pytest.raises(RuntimeError, match="stop before scoring"):
        reconcile_records(cfg)
    assert seen == [scored]
