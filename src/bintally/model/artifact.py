"""The model artifact: one directory that loads with nothing else.

    model.json          ModelSpec: name, version, creation time, backbone, head,
                        count classes, preprocessing, training config, manifest
                        digest, test metrics, temperature, decision policy,
                        test-time flips
    model.safetensors   the weights
    model.onnx          optional, written by `bintally export`
    model.int8.onnx     optional, the int8 graph, written by `bintally export --int8`
    history.json        optional, the training run's per-epoch metrics

Every path is a URL (local or s3://).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import torch
from pydantic import BaseModel, Field, ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from bintally import storage
from bintally.model.flips import Flip, FlipAveraged
from bintally.model.heads import Head, create_model
from bintally.model.preprocess import Preprocess
from bintally.reconcile.policy import DecisionPolicy

SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"  # the graph's tensor names: [N, 3, S, S] -> [N, K]
HISTORY_FILE = "history.json"


class ArtifactError(ValueError):
    """The path is not a (complete, valid) bintally model artifact."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Int8Check(BaseModel):
    """How model.int8.onnx compares with model.onnx, on photos it was not calibrated on (`model.quantize`)."""

    calibration_photos: int
    check_split: str
    check_photos: int
    agreement: float  # share of check photos on which both graphs give the same count
    accuracy_fp32: float
    accuracy_int8: float
    max_probability_diff: float  # over every photo and count, after the artifact's temperature


class ModelSpec(BaseModel):
    name: str
    version: str
    created_at: str = Field(default_factory=utc_now)
    backbone: str
    head: Head
    classes: list[int]  # class i is count classes[i]
    preprocess: Preprocess
    train_config: dict = Field(default_factory=dict)
    manifest_digest: str | None = None
    metrics: dict = Field(default_factory=dict)  # test-split metrics, written by `bintally evaluate`
    # Probabilities are softmax(logits / temperature); fitted on validation by `bintally calibrate` (and train).
    temperature: float = Field(1.0, gt=0)
    calibration: dict | None = None  # how the temperature was fitted: `evaluate.calibrate.CalibrationReport`
    decision_policy: DecisionPolicy | None = None  # fitted on validation; None: `DecisionPolicy()`'s defaults
    flips: list[Flip] = []  # test-time augmentation: logits averaged over these flips too (`bintally calibrate --flips`)
    int8: Int8Check | None = None  # set with model.int8.onnx by `bintally export --int8`


class ModelArtifact:
    def __init__(self, path: str, spec: ModelSpec):
        self.path = path
        self.spec = spec

    def state_dict(self) -> dict[str, torch.Tensor]:
        return load_safetensors(storage.read_bytes(storage.join(self.path, WEIGHTS_FILE)))

    def torch_model(self, device: str = "cpu", flips: list[Flip] | None = None) -> torch.nn.Module:
        """The model in eval mode, mapping [N, 3, size, size] to [N, K] logits: the network, averaged over the
        artifact's test-time flips (or over `flips`, if given: [] for the bare network)."""
        model: torch.nn.Module = create_model(self.spec.backbone, self.spec.head, self.spec.classes, weights="none")
        model.load_state_dict(self.state_dict(), strict=True)
        flips = self.spec.flips if flips is None else flips
        if flips:
            model = FlipAveraged(model, flips)
        return model.eval().to(device)

    @property
    def onnx_path(self) -> str | None:
        path = storage.join(self.path, ONNX_FILE)
        return path if storage.exists(path) else None

    @property
    def int8_onnx_path(self) -> str | None:
        path = storage.join(self.path, INT8_FILE)
        return path if self.spec.int8 and storage.exists(path) else None

    def history(self) -> list[dict]:
        """Per-epoch training metrics, if the artifact came from `bintally train`."""
        path = storage.join(self.path, HISTORY_FILE)
        return json.loads(storage.read_bytes(path)) if storage.exists(path) else []


def write_spec(out_dir: str, spec: ModelSpec) -> None:
    storage.write_bytes(storage.join(out_dir, SPEC_FILE), spec.model_dump_json(indent=2).encode())


def save_artifact(out_dir: str, model: torch.nn.Module, spec: ModelSpec) -> None:
    """Weights first, spec last: a directory with model.json always has its weights."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    storage.write_bytes(storage.join(out_dir, WEIGHTS_FILE), save_safetensors(state))
    write_spec(out_dir, spec)


def load_artifact(path: str) -> ModelArtifact:
    spec_url = storage.join(path, SPEC_FILE)
    if not storage.exists(spec_url):
        raise ArtifactError(f"{path} is not a bintally model artifact: it has no {SPEC_FILE}")
    if not storage.exists(storage.join(path, WEIGHTS_FILE)):
        raise ArtifactError(f"{path} is not a complete model artifact: it has no {WEIGHTS_FILE}")
    try:
        spec = ModelSpec.model_validate_json(storage.read_bytes(spec_url))
    except ValidationError as exc:
        raise ArtifactError(f"{spec_url} is not a valid model spec: {exc}") from exc
    return ModelArtifact(path, spec)
