"""train -> evaluate -> export through the CLI on real photos, and the report it writes."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from bintally.cli import app
from bintally.model.artifact import load_artifact

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


def test_report_files(evaluated):
    """The report has metrics.json, Markdown linking the four PNGs, and HTML with the same PNGs embedded."""
    _, report = evaluated
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["same_manifest_as_training"]
    assert set(metrics) >= {"accuracy", "per_count", "within_one", "mae", "rmse", "macro_f1", "confusion", "coverage"}
    plots = ["per_count", "confusion", "coverage", "training"]
    for name in plots:
        assert (report / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    markdown, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    assert all(f"({name}.png)" in markdown for name in plots)
    assert f"{metrics['accuracy']:.1%}" in markdown
    assert page.count("data:image/png;base64,") == len(plots) and '.png"' not in page


def test_test_metrics_are_recorded_in_the_artifact(evaluated, small_manifest, tmp_path):
    """Evaluating the test split writes its metrics into model.json; evaluating val leaves them alone."""
    run, report = evaluated
    assert load_artifact(str(run)).spec.metrics == json.loads((report / "metrics.json").read_text())
    invoke("evaluate", str(run), str(small_manifest), "--split", "val", "--out", str(tmp_path / "val"), "--workers", "0")
    assert load_artifact(str(run)).spec.metrics["split"] == "test"


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
