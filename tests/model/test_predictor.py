"""Loading a predictor: the ONNX backend runs a graph the export step made."""

from __future__ import annotations

import pytest

from bintally.model.predictor import load_predictor


def test_an_artifact_without_model_onnx_is_refused_without_an_exporter(small_artifact):
    """Tried: the onnx backend on an artifact with no model.onnx, and no exporter. Must hold: a clear error naming the fix."""
    with pytest.raises(ValueError, match=r"has no model.onnx: `bintally export .*` writes one"):
        load_predictor(small_artifact)
