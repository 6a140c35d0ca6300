"""Fixtures shared by every stage's tests: the real ABID sample and a local S3 endpoint."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

# The real ABID sample, read in place (CC BY-NC-SA 3.0 US; never copied into the repo).
ABID = Path(__file__).resolve().parents[2] / "shared" / "abid"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def abid_root() -> Path:
    assert (ABID / "bin-images").is_dir(), f"the ABID sample is expected at {ABID}"
    return ABID


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory, abid_root) -> Path:
    """A real manifest: 16 bins of each count 1-5 from the sample, split 80/10/10."""
    from bintally.data.abid import AbidRoot
    from bintally.data.manifest import build_manifest, write_manifest
    from bintally.data.subset import Subset

    out = tmp_path_factory.mktemp("manifest") / "small.parquet"
    build = build_manifest(AbidRoot(str(abid_root)), Subset(counts=(1, 5), per_count=16), seed=0)
    write_manifest(build, str(out))
    return out


@pytest.fixture(scope="session")
def small_shards(tmp_path_factory, small_manifest) -> str:
    """The small manifest's photos in shards of 8, as `bintally data shards` writes them."""
    from bintally.data.shards import ShardsConfig, write_shards

    out = str(tmp_path_factory.mktemp("shards"))
    write_shards(ShardsConfig(manifest=str(small_manifest), out=out, photos_per_shard=8))
    return out


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory) -> str:
    """Packaged EfficientNet-Lite0 with a fresh ordinal head for counts 1-5 at 96 px; no model.onnx,
    so the ONNX backend exports one when it loads. The head is seeded: its weights do not depend on which tests
    drew random numbers before this fixture was first asked for."""
    import torch

    from bintally.model.artifact import save_artifact
    from bintally.model.heads import create_model
    from bintally.model.preprocess import Preprocess
    from bintally.model.spec import ModelSpec

    out = str(tmp_path_factory.mktemp("artifact"))
    classes = [1, 2, 3, 4, 5]
    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", "ordinal", classes, weights="packaged")
    spec = ModelSpec(
        name="small-test", version="1", backbone="tf_efficientnet_lite0", head="ordinal", classes=classes, preprocess=Preprocess(size=96)
    )
    save_artifact(out, model, spec)
    return out


OPEN_TOP_LOGITS = [0.0, 1.0, 2.0, 1.0, 4.0]  # classes 0, 1, 2, 3 and 4+: P(4+) = 0.80, P(1) = P(3) = 0.04


@pytest.fixture(scope="session")
def open_top_artifact(tmp_path_factory, small_artifact) -> str:
    """A model with an open top class: the small artifact's spec as counts 0-3 and "4 or more", with a synthetic
    model.onnx whose logits are OPEN_TOP_LOGITS for every photo (so every answer is 4+, at 80%)."""
    import shutil

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bintally.model.artifact import ONNX_INPUT, ONNX_OUTPUT, load_artifact, write_spec

    out = str(tmp_path_factory.mktemp("open-top") / "model")
    shutil.copytree(small_artifact, out)
    spec = load_artifact(out).spec.model_copy(update={"name": "open-top-test", "classes": [0, 1, 2, 3, 4], "open_top": True})
    write_spec(out, spec)
    size = spec.preprocess.size
    weights = [
        numpy_helper.from_array(np.zeros((3, 5), np.float32), "w"),
        numpy_helper.from_array(np.array(OPEN_TOP_LOGITS, np.float32), "b"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", [ONNX_INPUT], ["pooled"], axes=[2, 3], keepdims=0),  # [N, 3]: ties the batch size
            helper.make_node("MatMul", ["pooled", "w"], ["zeros"]),
            helper.make_node("Add", ["zeros", "b"], [ONNX_OUTPUT]),
        ],
        "open-top",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", 5])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), f"{out}/model.onnx")
    return out


@pytest.fixture(scope="session")
def bin_photos(abid_root: Path) -> list:
    """Eight real ABID photos, decoded as every stage decodes them."""
    from bintally.data.images import decode_image

    paths = sorted((abid_root / "bin-images").glob("*.jpg"))[:8]
    return [decode_image(p.read_bytes()) for p in paths]


@pytest.fixture
def exported(small_artifact, small_manifest, bin_photos, tmp_path) -> str:
    """A copy of the small artifact, trained on the small manifest as far as its spec says, with its model.onnx."""
    import shutil

    from bintally.model.artifact import load_artifact, write_spec
    from bintally.model.export import export_onnx

    out = str(tmp_path / "model")
    shutil.copytree(small_artifact, out)
    artifact = load_artifact(out)
    artifact.spec.train_config = {"manifest": str(small_manifest)}
    write_spec(out, artifact.spec)
    export_onnx(load_artifact(out), f"{out}/model.onnx", bin_photos[:2])
    return out


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, with throwaway credentials in the environment."""
    from moto.server import ThreadedMotoServer

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
