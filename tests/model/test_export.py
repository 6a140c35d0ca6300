"""ONNX export, checked against PyTorch on real photos."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bintally.model import export
from bintally.model.artifact import load_artifact
from bintally.model.preprocess import prepare_batch


def test_onnx_matches_torch_with_dynamic_batch(small_artifact, bin_photos, tmp_path):
    """Export, then run the ONNX file on 8 and on 3 real photos: same logits as PyTorch within 1e-3."""
    artifact = load_artifact(small_artifact)
    out = str(tmp_path / "model.onnx")
    diff = export.export_onnx(artifact, out, check_images=bin_photos)
    assert 0 <= diff <= export.MAX_ABS_DIFF
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    batch = prepare_batch(bin_photos[:3], artifact.spec.preprocess)
    (logits,) = session.run(["logits"], {"input": batch})
    with torch.no_grad():
        expected = artifact.torch_model()(torch.from_numpy(batch)).numpy()
    assert logits.shape == (3, 5)
    assert np.abs(logits - expected).max() <= export.MAX_ABS_DIFF


def test_mismatch_above_limit_fails_and_writes_nothing(small_artifact, bin_photos, tmp_path, monkeypatch):
    """If ONNX and PyTorch disagree beyond 1e-3, export raises and leaves no file behind."""
    monkeypatch.setattr(export, "max_abs_diff", lambda model, data, batch: 0.5)
    out = tmp_path / "model.onnx"
    with pytest.raises(export.ExportMismatch, match="5.00e-01"):
        export.export_onnx(load_artifact(small_artifact), str(out), check_images=bin_photos[:2])
    assert not out.exists()


def test_same_padding_is_exported_as_constants(small_artifact, bin_photos, tmp_path):
    """Tried: export the TF-'same'-padded Lite0. Must hold: no run-time shape arithmetic before its stride-2
    convolutions (no Shape or Ceil op, which the int8 quantiser would quantise), and the same logits as PyTorch."""
    out = tmp_path / "model.onnx"
    assert export.export_onnx(load_artifact(small_artifact), str(out), check_images=bin_photos[:2]) <= export.MAX_ABS_DIFF
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "Conv" in ops and not ops & {"Shape", "Ceil"}


def test_export_raises_no_warning(small_artifact, bin_photos, tmp_path):
    """Tried: an export with every warning shown. Must hold: none raised (torch.onnx's notes that it could not fold
    a strided Slice into a constant are expected and filtered where the exporter runs; anything else is news)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.export_onnx(load_artifact(small_artifact), str(tmp_path / "model.onnx"), check_images=bin_photos[:2])
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
