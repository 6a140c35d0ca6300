"""ONNX export, checked against PyTorch on real photos before it is trusted."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from bintally import storage
from bintally.data.images import decode_image
from bintally.data.manifest import read_manifest
from bintally.model.artifact import ONNX_INPUT, ONNX_OUTPUT, ModelArtifact
from bintally.model.preprocess import prepare_batch

MAX_ABS_DIFF = 1e-3
OPSET = 17
CHECK_IMAGES = 8


class ExportMismatch(RuntimeError):
    """The ONNX graph's logits differ from PyTorch's by more than MAX_ABS_DIFF."""


def manifest_check_images(artifact: ModelArtifact, n: int = CHECK_IMAGES) -> list[Image.Image]:
    """Real photos for the check: the first n of the manifest the model was trained on (val split first)."""
    manifest_url = artifact.spec.train_config.get("manifest")
    if not manifest_url or not storage.exists(manifest_url):
        raise ValueError(f"{artifact.path} records no readable training manifest; pass check images explicitly")
    manifest = read_manifest(manifest_url)
    rows = (manifest.split("val") + manifest.split("test") + manifest.split("train"))[:n]
    return [decode_image(storage.read_bytes(r.uri)) for r in rows]


def onnx_bytes(model: torch.nn.Module, size: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns it is legacy; the dynamo one takes ~15x longer on this model for the same graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            buf,  # type: ignore[arg-type]  # a file object works; the stub names only paths
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def max_abs_diff(model: torch.nn.Module, onnx_model: bytes, batch: np.ndarray) -> float:
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"input": batch})
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(batch)).numpy()
    return float(np.abs(onnx_logits - torch_logits).max())


def export_onnx(artifact: ModelArtifact, out_path: str, check_images: list[Image.Image] | None = None) -> float:
    """Write the model as ONNX (input "input" [N,3,H,W], dynamic N; output "logits").

    Returns the max |onnx - torch| over the check images (by default real photos
    from the training manifest); raises ExportMismatch above MAX_ABS_DIFF, and
    then writes nothing.
    """
    model = artifact.torch_model("cpu")
    pp = artifact.spec.preprocess
    images = check_images if check_images is not None else manifest_check_images(artifact)
    if not images:
        raise ValueError("at least one check image is needed to verify the export")
    data = onnx_bytes(model, pp.size)
    diff = max_abs_diff(model, data, prepare_batch(images, pp))
    if diff > MAX_ABS_DIFF:
        raise ExportMismatch(f"ONNX logits differ from PyTorch by {diff:.2e} (limit {MAX_ABS_DIFF:.0e}); not written")
    storage.write_bytes(out_path, data)
    return diff
