"""`bintally quickstart`: the main job end to end on the real sample, at toy scale."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bintally.cli import app
from bintally.model.artifact import load_artifact


def test_quickstart_ingests_trains_evaluates_and_exports(abid_root, tmp_path):
    """Without --serve it must leave a manifest, a loadable artifact with test metrics and ONNX, and a report;
    it prints each training epoch's validation numbers as it goes, and the trivial answer's numbers beside the
    model's at the end, so a new user can read them."""
    out = tmp_path / "qs"
    args = [
        "quickstart",
        "--data",
        str(abid_root),
        "--out",
        str(out),
        "--per-count",
        "10",
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--no-serve",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "epoch 1: validation accuracy" in result.output
    artifact = load_artifact(str(out / "model"))
    assert artifact.onnx_path and artifact.spec.classes == [1, 2, 3, 4, 5]
    assert 0.0 <= artifact.spec.metrics["accuracy"] <= 1.0 and artifact.spec.metrics["n"] > 0
    assert json.loads((out / "report" / "metrics.json").read_text())["n"] == artifact.spec.metrics["n"]
    assert (out / "report" / "report.html").stat().st_size > 10_000  # plots embedded
    assert (out / "manifest.report.json").exists()
    baseline = artifact.spec.metrics["baseline"]
    assert f"always {baseline['answer']} (trivial)" in result.output and f"{baseline['accuracy']:.3f}" in result.output
