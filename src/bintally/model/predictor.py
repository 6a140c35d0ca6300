"""Predictor backends over a model artifact: ONNX Runtime (the fast CPU path) and PyTorch.

Both map the preprocessed batch float32 [N, 3, size, size] to [N, K] calibrated logits;
`score` turns one row of logits into the count, its confidence and the
probability of each count. Serving and batch scoring share both.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel

from bintally.model.artifact import ONNX_INPUT, ONNX_OUTPUT, ModelArtifact, ModelSpec, load_artifact
from bintally.model.calibration import softmax

log = logging.getLogger(__name__)

Backend = Literal["onnx", "torch"]


class CountScore(BaseModel):
    count: int
    confidence: float
    probabilities: dict[str, float]  # count (as text, a JSON key) -> probability


def score(logits: np.ndarray, classes: list[int]) -> CountScore:
    """One row of logits -> the most probable count and every count's probability."""
    probs = softmax(logits)
    best = int(probs.argmax())
    return CountScore(
        count=classes[best],
        confidence=float(probs[best]),
        probabilities={str(c): float(p) for c, p in zip(classes, probs)},
    )


@dataclass(frozen=True)
class Predictor:
    spec: ModelSpec
    backend: Backend
    forward: Callable[[np.ndarray], np.ndarray]  # [N, 3, S, S] float32 -> [N, K] logits

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated logits (the network's divided by the artifact's temperature): their softmax is the
        probability of each count, so `/invocations` and `/v1/count` always agree."""
        return self.forward(np.ascontiguousarray(batch, dtype=np.float32)) / np.float32(self.spec.temperature)

    def score(self, logits: np.ndarray) -> CountScore:
        return score(logits, self.spec.classes)

    def warm_up(self, max_batch: int) -> None:
        """Run the shapes serving will see once, so the first request is not the slow one."""
        size = self.spec.preprocess.size
        for n in sorted({1, max_batch}):
            self.logits(np.zeros((n, 3, size, size), np.float32))


def load_predictor(model_url: str, backend: Backend = "onnx") -> Predictor:
    artifact = load_artifact(model_url)
    forward = _onnx_forward(artifact) if backend == "onnx" else _torch_forward(artifact)
    return Predictor(artifact.spec, backend, forward)


def _onnx_forward(artifact: ModelArtifact) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    path = artifact.onnx_path or _export_to_temp(artifact)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle inference threads sleep instead of spinning: decoding and HTTP need the same cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(path, options, providers=providers)
    return lambda batch: session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0]


def _export_to_temp(artifact: ModelArtifact) -> str:
    """An artifact without model.onnx is exported once per process, to a temporary file (the artifact stays as it is)."""
    from bintally.model.export import export_onnx

    out = str(Path(tempfile.mkdtemp(prefix="bintally-onnx-")) / "model.onnx")
    log.warning("%s has no model.onnx; exporting to %s (`bintally export` does it once)", artifact.path, out)
    # The check needs no real photo: a wrong graph shows on random pixels too.
    size = artifact.spec.preprocess.size
    noise = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    export_onnx(artifact, out, check_images=[Image.fromarray(img) for img in noise])
    return out


def _torch_forward(artifact: ModelArtifact) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = artifact.torch_model(device)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return forward
