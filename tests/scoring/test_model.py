"""The predictor a scoring job runs."""

from __future__ import annotations

import logging
from pathlib import Path

from bintally.model.artifact import ONNX_FILE
from bintally.scoring.model import load_model


def test_an_artifact_without_model_onnx_is_exported_to_a_temporary_file(small_artifact, caplog):
    """Tried: score with an artifact that has no model.onnx. Must hold: its fp32 graph is exported elsewhere with a
    warning naming `bintally export`, and the artifact stays as it is."""
    with caplog.at_level(logging.WARNING):
        predictor = load_model(small_artifact)
    assert (predictor.backend, predictor.precision) == ("onnx", "fp32")
    assert "has no model.onnx; exporting to" in caplog.text and "`bintally export` does it once" in caplog.text
    assert not Path(small_artifact, ONNX_FILE).exists()
