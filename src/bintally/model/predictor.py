"""Predictor backends over a model artifact: ONNX Runtime (the fast CPU path) and PyTorch.

Both map the preprocessed batch float32 [N, 3, size, size] to [N, K] calibrated logits;
`score` turns one row of logits into the count, its confidence and the
probability of each count. Serving and batch scoring share both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from bintally.counts import CountClasses
from bintally.hardware import int8_pays
from bintally.model.artifact import ONNX_INPUT, ONNX_OUTPUT, ModelArtifact, load_artifact
from bintally.model.calibration import softmax
from bintally.model.spec import ModelSpec

log = logging.getLogger(__name__)

Backend = Literal["onnx", "torch"]
# auto: the int8 graph where the artifact has one that this CPU runs faster and counts with as checked
# (`hardware.int8_pays`: VNNI or AMX, or AVX2 for 7-bit weights), else fp32.
Precision = Literal["auto", "fp32", "int8"]
# Writes an artifact's fp32 ONNX graph somewhere and answers its path: `model.export` needs torch, so only a
# caller that may import it passes one (`scoring.model.load_model`).
Exporter = Callable[[ModelArtifact], str]


class CountScore(BaseModel):
    count: int
    at_least: bool = Field(False, description="the count is the model's open top class: this many or more")
    confidence: float
    probabilities: dict[str, float] = Field(description='count class label ("3", or "10+" for an open top class) -> probability')


def score(logits: np.ndarray, classes: CountClasses) -> CountScore:
    """One row of logits -> the most probable count and every count class's probability."""
    return score_probabilities(softmax(logits), classes)


def score_probabilities(probs: np.ndarray, classes: CountClasses) -> CountScore:
    best = int(probs.argmax())
    count = classes.values[best]
    return CountScore(
        count=count,
        at_least=classes.is_open(count),
        confidence=float(probs[best]),
        probabilities=dict(zip(classes.labels, map(float, probs))),
    )


@dataclass(frozen=True)
class Predictor:
    spec: ModelSpec
    backend: Backend
    precision: Literal["fp32", "int8"]
    forward: Callable[[np.ndarray], np.ndarray]  # [N, 3, S, S] float32 -> [N, K] logits

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated logits (the network's divided by the artifact's temperature): their softmax is the
        probability of each count, so `/invocations` and `/v1/count` always agree."""
        return self.forward(np.ascontiguousarray(batch, dtype=np.float32)) / np.float32(self.spec.temperature)

    def score(self, logits: np.ndarray) -> CountScore:
        return score(logits, self.spec.count_classes)

    def warm_up(self, max_batch: int) -> None:
        """Run the shapes serving will see once, so the first request is not the slow one."""
        size = self.spec.preprocess.size
        for n in sorted({1, max_batch}):
            self.logits(np.zeros((n, 3, size, size), np.float32))


def load_predictor(
    model_url: str, backend: Backend = "onnx", precision: Precision = "auto", threads: int | None = None, exporter: Exporter | None = None
) -> Predictor:
    """The artifact's model ready to score; `threads`: ONNX Runtime's intra-op threads (default: one per core).
    An artifact without model.onnx runs the fp32 graph `exporter` writes, and without one is refused."""
    artifact = load_artifact(model_url)
    chosen = resolve_precision(artifact, backend, precision)
    if backend == "torch":
        return Predictor(artifact.spec, backend, chosen, _torch_forward(artifact))
    path = artifact.int8_onnx_path if chosen == "int8" else artifact.onnx_path or _exported(artifact, exporter)
    return Predictor(artifact.spec, backend, chosen, _onnx_forward(path, threads))  # type: ignore[arg-type]  # int8: checked


def resolve_precision(artifact: ModelArtifact, backend: Backend, precision: Precision) -> Literal["fp32", "int8"]:
    """fp32 or int8, as asked; `auto` picks int8 only where the artifact has it, this CPU runs it fast and right, and
    its check judged the artifact's decision policy (fitted on fp32's probabilities) on int8's."""
    check = artifact.spec.int8 if artifact.int8_onnx_path else None
    if precision == "int8" and (backend != "onnx" or not check):
        why = "the torch backend runs fp32 only" if backend != "onnx" else f"{artifact.path} has no int8 graph"
        raise ValueError(f"--precision int8: {why}; `bintally export {artifact.path} --int8` writes one for the onnx backend")
    if precision == "fp32" or backend != "onnx" or not check:
        return "fp32"
    if precision == "auto" and not int8_pays(check.weight_bits):
        return "fp32"
    if not check.covers(artifact.spec.decision_policy):
        log.warning(
            "%s: its decision policy was not checked on its int8 graph's probabilities (`bintally export %s --int8` checks it); %s",
            artifact.path,
            artifact.path,
            "auto serves fp32" if precision == "auto" else "serving int8 as asked",
        )
        if precision == "auto":
            return "fp32"
    if precision == "int8" and check.weight_bits == 8 and not int8_pays(8):
        log.warning(
            "%s: its int8 graph has %d-bit weights, which this CPU's int8 kernels may count differently "
            "from its check (`bintally export --int8` writes 7-bit ones)",
            artifact.path,
            check.weight_bits,
        )
    return "int8"


# ONNX Runtime 1.32's WeightBiasQuantization pass quantises the float weights of a layer that reads an int8
# activation, and gets grouped convolutions wrong: an int8 graph keeping its depthwise convolutions float32
# agreed with fp32 on 50% of counts with the pass, 100% without it (tests/model/test_quantize.py).
BROKEN_ORT_PASSES = ["WeightBiasQuantization"]


def onnx_session(model: str | bytes, threads: int | None = None, cpu_only: bool = False):
    """An ONNX Runtime session of one of bintally's graphs, as every caller runs them: all graph optimisations
    but the broken ones, CUDA first where installed (unless `cpu_only`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle inference threads sleep instead of spinning: decoding and HTTP need the same cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    wanted = ("CPUExecutionProvider",) if cpu_only else ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()]
    return ort.InferenceSession(model, options, providers=providers, disabled_optimizers=BROKEN_ORT_PASSES)


def _onnx_forward(path: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    session = onnx_session(path, threads)
    return lambda batch: session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0]


def _exported(artifact: ModelArtifact, exporter: Exporter | None) -> str:
    if exporter is None:
        raise ValueError(f"{artifact.path} has no model.onnx: `bintally export {artifact.path}` writes one")
    return exporter(artifact)


def _torch_forward(artifact: ModelArtifact) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = artifact.torch_model(device)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return forward
