"""train -> evaluate -> export through the CLI on real photos, and the report it writes."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from bintally.cli import app
from bintally.data.manifest import read_manifest
from bintally.model.artifact import load_artifact
from bintally.model.preprocess import prepare_batch

TINY_ARGS = ["--image-size", "64", "--batch-size", "16", "--workers", "0", "--epochs", "2", "--strategy", "head"]
PNG_MAGIC = b"\x89PNG"


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def evaluated(small_manifest, tmp_path_factory):
    """A model trained, evaluated on the test split and exported, all by the CLI: (run dir, report dir)."""
    base = tmp_path_factory.mktemp("cli")
    run, report = base / "run", base / "report"
    invoke("train", str(small_manifest), "--out", str(run), *TINY_ARGS)
    invoke("evaluate", str(run), str(small_manifest), "--split", "test", "--out", str(report), "--workers", "0")
    return run, report


def test_report_files(evaluated, small_manifest):
    """The report has metrics.json (with ECE before and after the temperature training fitted), Markdown linking
    the five PNGs, and HTML with the same PNGs embedded."""
    _, report = evaluated
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["same_manifest_as_training"]
    assert set(metrics) >= {"accuracy", "per_count", "within_one", "mae", "rmse", "macro_f1", "confusion", "coverage"}
    calibration = metrics["calibration"]
    assert calibration["temperature"] == load_artifact(str(evaluated[0])).spec.temperature != 1.0
    assert 0 <= calibration["ece_after"] <= 1 and calibration["reliability_after"]["confidence"]
    plots = ["per_count", "confusion", "coverage", "reliability", "training"]
    for name in plots:
        assert (report / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    markdown, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    assert all(f"({name}.png)" in markdown for name in plots)
    assert f"{metrics['accuracy']:.1%}" in markdown
    baseline = metrics["baseline"]  # the trivial answer: the validation rows' most common count, scored on test
    val_counts = Counter(r.count for r in read_manifest(str(small_manifest)).split("val"))
    assert val_counts[baseline["answer"]] == max(val_counts.values())
    assert f"always answering {baseline['answer']} (trivial)" in markdown and f"{baseline['accuracy']:.1%}" in markdown
    assert page.count("data:image/png;base64,") == len(plots) and '.png"' not in page


def test_test_metrics_are_recorded_in_the_artifact(evaluated, small_manifest, tmp_path):
    """Evaluating the test split writes its metrics into model.json; evaluating val leaves them alone."""
    run, report = evaluated
    assert load_artifact(str(run)).spec.metrics == json.loads((report / "metrics.json").read_text())
    invoke("evaluate", str(run), str(small_manifest), "--split", "val", "--out", str(tmp_path / "val"), "--workers", "0")
    assert load_artifact(str(run)).spec.metrics["split"] == "test"
    # Scoring validation, the trivial answer is not chosen on the rows it is scored on: the training rows' (2, not 1).
    train_counts = Counter(r.count for r in read_manifest(str(small_manifest)).split("train"))
    answer = json.loads((tmp_path / "val" / "metrics.json").read_text())["baseline"]["answer"]
    assert train_counts[answer] == max(train_counts.values())


def test_another_manifests_test_split_leaves_the_artifact_alone(evaluated, abid_root, tmp_path):
    """Tried: evaluate the model on the test split of a different manifest (other bins of the sample). Must hold:
    the report is written, the artifact keeps the metrics of its own test split, and the CLI says why."""
    from bintally.data.abid import AbidRoot
    from bintally.data.manifest import build_manifest, write_manifest
    from bintally.data.subset import Subset

    other = tmp_path / "other.parquet"
    write_manifest(build_manifest(AbidRoot(str(abid_root)), Subset(counts=(1, 5), per_count=6), seed=7), str(other))
    run, _ = evaluated
    before = load_artifact(str(run)).spec.metrics
    result = invoke("evaluate", str(run), str(other), "--split", "test", "--out", str(tmp_path / "other"), "--workers", "0")
    assert json.loads((tmp_path / "other" / "metrics.json").read_text())["same_manifest_as_training"] is False
    assert load_artifact(str(run)).spec.metrics == before
    assert "differs from the one the model was trained on" in " ".join(result.output.split())


def test_training_fitted_the_temperature_and_policy_and_calibrate_refits_them(evaluated, small_manifest):
    """Training ends by fitting the temperature and decision policy on its validation split; `bintally calibrate`
    fits them again (here with other targets) and refuses the test split."""
    run, _ = evaluated
    spec = load_artifact(str(run)).spec
    assert spec.calibration["split"] == "val" and spec.decision_policy is not None
    defaults = {"max_accepted_error": 0.05, "max_false_flags": 0.05, "confidence": 0.95, "batch": None}
    assert spec.decision_policy.fitted["targets"] == defaults
    args = ["--max-accepted-error", "0.2", "--error-rate", "0.3", "--confidence", "0.9"]
    result = invoke("calibrate", str(run), str(small_manifest), *args)
    refit = load_artifact(str(run)).spec
    assert refit.decision_policy.fitted["targets"] == defaults | {"max_accepted_error": 0.2, "confidence": 0.9}
    assert refit.decision_policy.fitted["errors"]["rate"] == 0.3
    assert refit.temperature == pytest.approx(spec.temperature)  # same data, same model: the same fit
    assert "temperature" in result.output and "policy:" in result.output
    refused = CliRunner().invoke(app, ["calibrate", str(run), str(small_manifest), "--split", "test"])
    assert refused.exit_code == 2 and "holds the test rows" in " ".join(refused.output.replace("│", " ").split())
    per_batch = invoke("calibrate", str(run), str(small_manifest), "--batch-records", "500", "--batch-max-error", "0.1")
    fitted = load_artifact(str(run)).spec.decision_policy.fitted
    assert fitted["targets"]["batch"] == {"records": 500, "max_error": 0.1, "share": 0.95}
    # This 7-bin model never accepts (too few bins to trust a threshold): the note names the batch promise it cannot keep.
    assert "10% in 95% of batches of 500 records: never accepts" in " ".join(per_batch.output.split())
    assert CliRunner().invoke(app, ["calibrate", str(run), str(small_manifest), "--batch-records", "0"]).exit_code == 2
    alone = CliRunner().invoke(app, ["calibrate", str(run), str(small_manifest), "--batch-max-error", "0.1"])
    assert alone.exit_code == 2 and "need --batch-records" in " ".join(alone.output.replace("│", " ").split())


def test_split_probabilities_are_the_calibrated_softmax_of_the_split(evaluated, small_manifest):
    """What the decision benchmarks decide on: the validation rows' logits through the artifact's temperature, in
    the manifest's order, with their recorded counts."""
    from bintally.evaluate.calibrate import split_logits, split_probabilities
    from bintally.model.calibration import softmax

    artifact, manifest = load_artifact(str(evaluated[0])), read_manifest(str(small_manifest))
    probabilities, counts = split_probabilities(artifact, manifest, "val", "cpu")
    logits, recorded = split_logits(artifact, manifest, "val", "cpu")
    assert counts.tolist() == recorded.tolist() == [r.count for r in manifest.split("val")]
    assert artifact.spec.temperature != 1.0
    np.testing.assert_allclose(probabilities, softmax(logits, artifact.spec.temperature), rtol=1e-6)


def test_calibrate_reads_the_split_from_shards(evaluated, small_manifest, small_shards, monkeypatch):
    """`bintally calibrate --shards`: the validation photos streamed from the manifest's shards (no photo file read:
    the file dataset raises), the same fit as from the files."""
    import bintally.evaluate.calibrate as calibration

    run, _ = evaluated
    invoke("calibrate", str(run), str(small_manifest))
    from_files = load_artifact(str(run)).spec

    def no_files(*args, **kwargs):
        raise AssertionError("a photo file was read")

    monkeypatch.setattr(calibration, "BinDataset", no_files)
    invoke("calibrate", str(run), str(small_manifest), "--shards", small_shards)
    from_shards = load_artifact(str(run)).spec
    assert from_shards.temperature == pytest.approx(from_files.temperature, rel=1e-4)
    assert from_shards.decision_policy.describe() == from_files.decision_policy.describe()  # thresholds to 3 places


@pytest.mark.parametrize("split", ["test", "all"])
def test_calibrate_refuses_every_split_that_holds_test_rows(tmp_path, split):
    """Tried: `bintally calibrate --split test`, and `--split all` (every row, the test rows too). Must hold: a usage
    error (exit 2) saying why, before anything is read or fitted."""
    refused = CliRunner().invoke(app, ["calibrate", str(tmp_path / "model"), str(tmp_path / "m.parquet"), "--split", split])
    assert refused.exit_code == 2 and "holds the test rows" in " ".join(refused.output.replace("│", " ").split()), refused.output


def test_export_writes_checked_onnx_into_the_artifact(evaluated):
    """`bintally export MODEL --onnx MODEL/model.onnx` checks against PyTorch on the training manifest's photos,
    prints the difference, and the artifact then offers the ONNX file."""
    run, _ = evaluated
    result = invoke("export", str(run), "--onnx", str(run / "model.onnx"))
    assert "max |onnx - torch| on the check photos" in " ".join(result.output.split())
    onnx_path = load_artifact(str(run)).onnx_path
    assert onnx_path and [o.name for o in ort.InferenceSession(onnx_path).get_outputs()] == ["logits"]


def test_bad_model_path_is_a_clear_error(small_manifest, tmp_path):
    """Evaluating a folder that is not an artifact exits 1 with the reason, no traceback."""
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path), str(small_manifest), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "not a bintally model artifact" in output and "Traceback" not in output


def test_calibrate_flips_sets_test_time_flips_refits_and_reexports(evaluated, small_manifest, bin_photos, tmp_path):
    """`calibrate --flips top-bottom` on a copy that has model.onnx and model.int8.onnx: the artifact averages over
    the flip from then on (its ONNX graph exported again, so it answers what PyTorch does; its int8 graph quantised
    again from that one and checked, so it stays servable in int8), with the temperature refitted on the averaged
    logits; `--flips none` takes it off again. Each time, and without --flips too, the int8 graph is checked again
    under the decision policy just fitted."""
    run = tmp_path / "run"
    shutil.copytree(evaluated[0], run)
    invoke("export", str(run), "--int8", "--max-accuracy-drop", "1")
    old_int8 = (run / "model.int8.onnx").read_bytes()
    result = invoke("calibrate", str(run), str(small_manifest), "--flips", "top-bottom")
    artifact = load_artifact(str(run))
    assert artifact.spec.flips == ["top-bottom"] and artifact.spec.calibration["split"] == "val"
    assert artifact.spec.int8 is not None and artifact.int8_onnx_path and "int8 quantised again" in result.output
    assert (run / "model.int8.onnx").read_bytes() != old_int8
    batch = prepare_batch(bin_photos[:4], artifact.spec.preprocess)
    (onnx_logits,) = ort.InferenceSession(str(run / "model.onnx")).run(["logits"], {"input": batch})
    with torch.no_grad():
        averaged = artifact.torch_model()(torch.from_numpy(batch)).numpy()
        bare = artifact.torch_model(flips=[])(torch.from_numpy(batch)).numpy()
    assert np.abs(onnx_logits - averaged).max() < 1e-3 and np.abs(onnx_logits - bare).max() > 1e-3
    assert artifact.spec.int8.covers(artifact.spec.decision_policy)
    invoke("calibrate", str(run), str(small_manifest), "--flips", "none")
    again = load_artifact(str(run)).spec
    assert again.flips == [] and again.int8 is not None and again.int8.covers(again.decision_policy)
    invoke("calibrate", str(run), str(small_manifest), "--error-rate", "0.3")  # another policy, the same graphs
    again = load_artifact(str(run)).spec
    assert again.decision_policy.errors.rate == 0.3 and again.int8 is not None and again.int8.covers(again.decision_policy)


def test_the_report_gives_numbers_by_count_range():
    """A whole-range model's report: a row per count range, the 1-5 bins answered among 1-5, the AUC of 'more
    than 5', and the trivial answer by its class label ("10+")."""
    import numpy as np

    from bintally.counts import CountClasses
    from bintally.evaluate.metrics import constant_answer, metrics_from_logits
    from bintally.evaluate.report import summary_rows

    classes = CountClasses(values=list(range(11)), open_top=True)
    true = [0, 2, 3, 7, 12, 30]
    logits = np.log(np.full((6, 11), 0.01) + np.eye(11)[[0, 2, 4, 7, 10, 9]])
    metrics = metrics_from_logits(logits, true, classes) | {"baseline": constant_answer([12, 14, 20, 3], true, classes)}
    rows = dict(summary_rows(metrics))
    assert rows["counts 10+: accuracy / within one / RMSE"].startswith("50.0% / 100.0%")  # 12 right, 30 answered 9
    assert rows["counts 1-5: accuracy / within one / RMSE"].startswith("50.0% / 100.0%")
    assert "counts 1-5 answered among 1-5 (as a 1-5 model answers)" in rows and "telling more than 5 from 5 or fewer (AUC)" in rows
    assert "always answering 10+ (trivial)" in rows


def test_calibrate_prints_how_often_a_batch_passes_its_cap(monkeypatch):
    """A fitted policy that accepts, with a batch target for 811 records (synthetic bins: 100 sure of their count,
    100 unsure). Must hold: `calibrate` prints the batch line with the chance the fit reports."""
    import bintally.cli.calibrate as command
    from bintally.evaluate.calibrate import Calibration, CalibrationReport
    from bintally.reconcile.fit import BatchTarget, Targets, fit_policy
    from bintally.reconcile.policy import RecordErrors

    truths = [c for c in range(1, 6) for _ in range(40)]
    probabilities = np.full((200, 5), 0.1)
    probabilities[np.arange(200), np.array(truths) - 1] = np.where(np.arange(200) % 2 == 0, 0.96, 0.6)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    policy = fit_policy(probabilities, truths, [1, 2, 3, 4, 5], Targets(batch=BatchTarget(records=811)), RecordErrors())
    assert policy.fitted["outcome"]["accepted"] > 0
    report = CalibrationReport(
        temperature=1.0, split="val", bins=200, manifest_digest="x", nll_before=1, nll_after=1, ece_before=0, ece_after=0
    )
    monkeypatch.setattr(command, "calibrate", lambda cfg: Calibration(report=report, policy=policy))
    result = invoke("calibrate", "model", "manifest.parquet", "--batch-records", "811")
    chance = policy.fitted["batches_over_cap"]
    assert f"batches of 811 records: over 8% of the accepted ones wrong in {chance:.1%} of them (at most 5% allowed)" in " ".join(
        result.output.split()
    )
