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
import shutil
import signal
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
# An artifact takes a few hundred MB at most; an archive that unpacks to more is refused (a tar bomb).
MAX_UNPACKED_BYTES = 4 * 2**30


def _plain_members(archive: tarfile.TarFile, out: str, packed: str, max_bytes: int) -> list[tarfile.TarInfo]:
    """Every member, if each is a plain file or folder that lands inside `out` (Python before 3.11.4, e.g.
    Debian 12's, has no extraction filter to say so) and together they unpack to at most `max_bytes`."""
    root = os.path.realpath(out)
    members = archive.getmembers()
    for member in members:
        target = os.path.realpath(os.path.join(root, member.name))
        if not (member.isfile() or member.isdir()) or os.path.commonpath([root, target]) != root:
            raise ArtifactError(f"{packed} is not a model archive that unpacks safely: {member.name!r} is not a plain file inside it")
    size = sum(member.size for member in members)  # what extraction writes: each member's declared size
    if size > max_bytes:
        raise ArtifactError(f"{packed} unpacks to {size:,} bytes, more than the {max_bytes:,} a model artifact may take")
    return members


def _one_artifact(root: str, where: str) -> str | None:
    """The one folder under `root` (itself, or at any depth, as an archive may nest it) with a model.json; None if
    there is none."""
    found = [folder for folder, _, files in os.walk(root) if SPEC_FILE in files]
    if len(found) > 1:
        raise ArtifactError(f"{where} holds {len(found)} model artifacts (folders with {SPEC_FILE}); it needs exactly one")
    return found[0] if found else None


@contextmanager
def _removed_on_sigterm(folder: str) -> Iterator[None]:
    """While the block runs, SIGTERM (how a server is stopped) removes `folder` first and then ends the process as
    it would have: a signal's default action ends Python without running `finally` blocks. uvicorn keeps this
    handler and raises the signal again when it has shut down."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def remove_then_end(signum: int, _frame: object) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, remove_then_end)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def unpacked(path: str, max_bytes: int = MAX_UNPACKED_BYTES) -> Iterator[str]:
    """`path` as an artifact directory for the block, in every layout SageMaker presents: the artifact itself; a
    folder holding it further down (SageMaker unpacks model.tar.gz into /opt/ml/model itself, subfolders and all);
    or a local model.tar.gz (the file, or one in the folder), extracted to a temporary folder that is removed after
    the block (or on SIGTERM). An archive's members must land inside that folder and unpack to at most `max_bytes`."""
    packed = path if path.endswith((".tar.gz", ".tgz")) else os.path.join(path, PACKED_FILE)
    if storage.is_remote(path) or storage.exists(storage.join(path, SPEC_FILE)):
        yield path
        return
    if not os.path.isfile(packed):  # a folder holding the artifact further down, or a path load_artifact refuses
        yield _one_artifact(path, path) or path
        return
    with tempfile.TemporaryDirectory(prefix="bintally-model-") as out, _removed_on_sigterm(out):
        try:
            with tarfile.open(packed) as archive:
                archive.extractall(out, members=_plain_members(archive, out, packed, max_bytes))
        except tarfile.TarError as exc:
            raise ArtifactError(f"{packed} is not a model archive that unpacks safely: {exc}") from exc
        found = _one_artifact(out, packed)
        if found is None:
            raise ArtifactError(f"{packed} holds 0 model artifacts (folders with {SPEC_FILE}); it needs exactly one")
        yield found


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
