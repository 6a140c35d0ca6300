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

import io
import json
import os
import tarfile
import tempfile
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from bintally import storage
from bintally.model.spec import Flip, ModelSpec

if TYPE_CHECKING:  # torch is imported where weights are used: serving runs on ONNX Runtime without it
    import torch


SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"  # the graph's tensor names: [N, 3, S, S] -> [N, K]
HISTORY_FILE = "history.json"
# The validation bins' calibrated probabilities and counts the decision policy was fitted on (`bintally calibrate`):
# reconcile fits the policy again on them, re-weighted to a batch's count distribution (reconcile/prior.py).
FIT_FILE = "fit.npz"


class ArtifactError(ValueError):
    """The path is not a (complete, valid) bintally model artifact."""


class ModelArtifact:
    def __init__(self, path: str, spec: ModelSpec):
        self.path = path
        self.spec = spec

    def state_dict(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        return load(storage.read_bytes(storage.join(self.path, WEIGHTS_FILE)))

    def torch_model(self, device: str = "cpu", flips: list[Flip] | None = None) -> torch.nn.Module:
        """The model in eval mode, mapping [N, 3, size, size] to [N, K] logits: the network, averaged over the
        artifact's test-time flips (or over `flips`, if given: [] for the bare network)."""
        from bintally.model.flips import FlipAveraged
        from bintally.model.heads import create_model

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

    def fit_data(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The policy's fitting bins: calibrated probabilities [N, K] and counts [N] (None: written before them)."""
        path = storage.join(self.path, FIT_FILE)
        if not storage.exists(path):
            return None
        with np.load(io.BytesIO(storage.read_bytes(path))) as data:
            return data["probabilities"], data["counts"]

    def history(self) -> list[dict]:
        """Per-epoch training metrics, if the artifact came from `bintally train`."""
        path = storage.join(self.path, HISTORY_FILE)
        return json.loads(storage.read_bytes(path)) if storage.exists(path) else []


def write_fit_data(out_dir: str, probabilities: np.ndarray, counts: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, probabilities=probabilities.astype(np.float32), counts=counts.astype(np.int64))
    storage.write_bytes(storage.join(out_dir, FIT_FILE), buf.getvalue())


def write_spec(out_dir: str, spec: ModelSpec) -> None:
    storage.write_bytes(storage.join(out_dir, SPEC_FILE), spec.model_dump_json(indent=2).encode())


def save_artifact(out_dir: str, model: torch.nn.Module, spec: ModelSpec) -> None:
    """Weights first, spec last: a directory with model.json always has its weights."""
    from safetensors.torch import save as save_safetensors

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    storage.write_bytes(storage.join(out_dir, WEIGHTS_FILE), save_safetensors(state))
    write_spec(out_dir, spec)


PACKED_FILE = "model.tar.gz"  # how SageMaker hands a model over (MODEL/model.tar.gz, or the file itself)


def _plain_members(archive: tarfile.TarFile, out: str, packed: str) -> list[tarfile.TarInfo]:
    """Every member, if each is a plain file or folder that lands inside `out` (Python before 3.11.4, e.g.
    Debian 12's, has no extraction filter to say so)."""
    root = os.path.realpath(out)
    for member in archive.getmembers():
        target = os.path.realpath(os.path.join(root, member.name))
        if not (member.isfile() or member.isdir()) or os.path.commonpath([root, target]) != root:
            raise ArtifactError(f"{packed} is not a model archive that unpacks safely: {member.name!r} is not a plain file inside it")
    return archive.getmembers()


def unpacked(path: str) -> str:
    """`path` as an artifact directory: itself, or the contents of a local model.tar.gz (the file, or one in the
    folder), extracted once to a temporary folder (members that would land outside it are refused)."""
    packed = path if path.endswith((".tar.gz", ".tgz")) else os.path.join(path, PACKED_FILE)
    if storage.is_remote(path) or storage.exists(storage.join(path, SPEC_FILE)) or not os.path.isfile(packed):
        return path
    out = tempfile.mkdtemp(prefix="bintally-model-")
    try:
        with tarfile.open(packed) as archive:
            archive.extractall(out, members=_plain_members(archive, out, packed))
    except tarfile.TarError as exc:
        raise ArtifactError(f"{packed} is not a model archive that unpacks safely: {exc}") from exc
    found = [root for root, _, files in os.walk(out) if SPEC_FILE in files]
    if len(found) != 1:
        raise ArtifactError(f"{packed} holds {len(found)} model artifacts (folders with {SPEC_FILE}); it needs exactly one")
    return found[0]


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
