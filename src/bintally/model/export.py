"""ONNX export, checked against PyTorch on real photos before it is trusted."""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image
from timm.layers import Conv2dSame
from timm.layers.padding import pad_same_arg
from torch import nn

from bintally import storage
from bintally.data.images import decode_image
from bintally.data.manifest import read_manifest
from bintally.errors import BintallyError
from bintally.model.artifact import ONNX_FILE, ONNX_INPUT, ONNX_OUTPUT, ModelArtifact, write_spec
from bintally.model.predictor import onnx_session
from bintally.model.preprocess import prepare_batch

MAX_ABS_DIFF = 1e-3
OPSET = 17
CHECK_IMAGES = 8
log = logging.getLogger(__name__)


class ExportMismatch(BintallyError):
    """The ONNX graph's logits differ from PyTorch's by more than MAX_ABS_DIFF."""


def manifest_check_images(artifact: ModelArtifact, n: int = CHECK_IMAGES) -> list[Image.Image]:
    """Real photos for the check: the first n of the manifest the model was trained on (val split first)."""
    manifest_url = artifact.spec.train_config.get("manifest")
    if not manifest_url or not storage.exists(manifest_url):
        raise ValueError(f"{artifact.path} records no readable training manifest; pass check images explicitly")
    manifest = read_manifest(manifest_url)
    rows = (manifest.split("val") + manifest.split("test") + manifest.split("train"))[:n]
    return [decode_image(storage.read_bytes(r.uri)) for r in rows]


def with_static_padding(model: nn.Module, size: int) -> nn.Module:
    """`model` with each of timm's TF-style 'same' convolutions (Conv2dSame) as a fixed ZeroPad2d + Conv2d.

    Conv2dSame works out its padding from the input's shape on every call, which ONNX records as
    float shape arithmetic (Shape, Ceil, Sub, Pad) before each stride-2 convolution: slower, and the
    int8 quantiser would quantise that arithmetic too, shifting the padding by a pixel. The input
    size is fixed (only the batch varies), so each padding is a constant."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda _, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
        for name, module in model.named_modules()
        if isinstance(module, Conv2dSame)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    for name, input_size in sizes.items():
        same = model.get_submodule(name)
        assert isinstance(same, Conv2dSame)
        kernel, stride, dilation = (cast(tuple[int, int], t) for t in (same.kernel_size, same.stride, same.dilation))
        conv = nn.Conv2d(same.in_channels, same.out_channels, kernel, stride, 0, dilation, same.groups, same.bias is not None)
        conv.load_state_dict(same.state_dict())
        left, right, top, bottom = pad_same_arg(list(input_size), list(kernel), list(stride), list(dilation))
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv))
    return model


def onnx_bytes(model: torch.nn.Module, size: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns it is legacy; the dynamo one takes ~15x longer on this model for the same graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        # A strided Slice it cannot fold stays an op in the graph: the same logits (export_onnx checks them), nothing to act on.
        warnings.filterwarnings("ignore", r"Constant folding - Only steps=1 can be constant folded", UserWarning)
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
    session = onnx_session(onnx_model, cpu_only=True)
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
    data = onnx_bytes(with_static_padding(model, pp.size), pp.size)
    diff = max_abs_diff(model, data, prepare_batch(images, pp))
    if diff > MAX_ABS_DIFF:
        raise ExportMismatch(f"ONNX logits differ from PyTorch by {diff:.2e} (limit {MAX_ABS_DIFF:.0e}); not written")
    storage.write_bytes(out_path, data)
    if out_path == storage.join(artifact.path, ONNX_FILE) and artifact.spec.int8:
        # model.int8.onnx was quantised from the graph just replaced: forget it (`export --int8` makes a new one).
        artifact.spec.int8 = None
        write_spec(artifact.path, artifact.spec)
    return diff


def export_to_temp(artifact: ModelArtifact) -> str:
    """The artifact's model.onnx written to a temporary file, for scoring an artifact that has none (it stays as it is)."""
    out = str(Path(tempfile.mkdtemp(prefix="bintally-onnx-")) / ONNX_FILE)
    log.warning("%s has no model.onnx; exporting to %s (`bintally export` does it once)", artifact.path, out)
    # The check needs no real photo: a wrong graph shows on random pixels too.
    size = artifact.spec.preprocess.size
    noise = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    export_onnx(artifact, out, check_images=[Image.fromarray(img) for img in noise])
    return out
