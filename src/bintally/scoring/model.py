"""The predictor a scoring job runs: the artifact's own graph, or, where it has no model.onnx, one exported to a
temporary file as it loads (which needs torch, the `train` extra; the artifact stays as it is)."""

from __future__ import annotations

from bintally.model.artifact import ModelArtifact
from bintally.model.predictor import Backend, Precision, Predictor, load_predictor


def load_model(model_url: str, backend: Backend = "onnx", precision: Precision = "auto", threads: int | None = None) -> Predictor:
    return load_predictor(model_url, backend, precision, threads, exporter=_export_to_temp)


def _export_to_temp(artifact: ModelArtifact) -> str:
    from bintally.model.export import export_to_temp  # torch: imported only for an artifact without model.onnx

    return export_to_temp(artifact)
