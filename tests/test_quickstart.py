"""`bintally quickstart`: the main job end to end on the real sample, at toy scale."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from bintally.data.manifest import read_manifest
from bintally.model.artifact import load_artifact


def test_quickstart_ingests_trains_evaluates_and_exports(abid_root, tmp_path):
    """Without --serve it must leave a manifest, a loadable artifact of every count (0 to 10+) with test metrics and
    ONNX, and a report; it prints each training epoch's validation numbers as it goes, and at the end the numbers
    over the whole range and by range beside the trivial answer's, so a new user can read them; and no Python
    warning (run as a user runs it: pytest would catch
    warnings before they are printed)."""
    out = tmp_path / "qs"
    args = [
        "quickstart",
        "--data",
        str(abid_root),
        "--out",
        str(out),
        "--per-count",
        "10",
        "--max-held-out",
        "300",
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--no-serve",
    ]
    result = subprocess.run([sys.executable, "-m", "bintally", *args], capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Warning" not in output, output
    assert "epoch 1: validation accuracy" in output
    artifact = load_artifact(str(out / "model"))
    assert artifact.onnx_path and artifact.spec.count_classes.labels == [*map(str, range(10)), "10+"]
    assert 0.0 <= artifact.spec.metrics["accuracy"] <= 1.0 and artifact.spec.metrics["n"] > 0
    assert json.loads((out / "report" / "metrics.json").read_text())["n"] == artifact.spec.metrics["n"]
    assert (out / "report" / "report.html").stat().st_size > 10_000  # plots embedded
    assert (out / "manifest.report.json").exists()
    # A balanced training sample, validated and tested on bins as they come, at most --max-held-out of each (the sample
    # has 855 and 811).
    manifest = read_manifest(str(out / "manifest.parquet"))
    assert max(Counter(min(r.count, 10) for r in manifest.split("train")).values()) == 10
    assert len(manifest.split("val")) == len(manifest.split("test")) == artifact.spec.metrics["n"] == 300
    baseline, flat = artifact.spec.metrics["baseline"], " ".join(output.replace("│", " ").split())
    assert f"always {baseline['label']}" in flat and f"{baseline['accuracy']:.3f}" in flat
    for part in ["all", *artifact.spec.metrics["ranges"], "1-5 among 1-5"]:
        assert f" {part} " in flat, part
