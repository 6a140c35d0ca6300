"""The model and photos the benchmarks run on (a helper module, not a benchmark)."""

from __future__ import annotations

import tempfile
from pathlib import Path

ABID = Path(__file__).resolve().parents[2] / "shared" / "abid"


def benchmark_artifact(model: str | None, size: int = 224) -> str:
    """`model` if given; else EfficientNet-Lite0 (packaged weights, fresh ordinal head) at `size` px with its
    fp32 and int8 ONNX graphs (int8 calibrated on real photos of the sample).

    Speed does not depend on trained weights, so an untrained head measures the same network.
    """
    if model:
        return model
    from bintally.data.abid import AbidRoot
    from bintally.data.images import decode_image
    from bintally.data.manifest import build_manifest, write_manifest
    from bintally.data.subset import Subset
    from bintally.model.artifact import load_artifact, save_artifact
    from bintally.model.export import export_onnx
    from bintally.model.heads import create_model
    from bintally.model.preprocess import Preprocess
    from bintally.model.quantize import Int8Config, export_int8
    from bintally.model.spec import ModelSpec

    out = tempfile.mkdtemp(prefix="bintally-bench-")
    manifest = f"{out}/manifest.parquet"
    write_manifest(build_manifest(AbidRoot(str(ABID)), Subset(counts=(1, 5), per_count=40), seed=0), manifest)
    classes = [1, 2, 3, 4, 5]
    spec = ModelSpec(
        name="bench-lite0",
        version="0",
        backbone="tf_efficientnet_lite0",
        head="ordinal",
        classes=classes,
        preprocess=Preprocess(size=size),
        train_config={"manifest": manifest},
    )
    save_artifact(out, create_model("tf_efficientnet_lite0", "ordinal", classes), spec)
    export_onnx(load_artifact(out), f"{out}/model.onnx", [decode_image(p) for p in photo_bytes(4)])
    # The head is untrained, so accuracy says nothing here: only speed is measured on this model.
    export_int8(load_artifact(out), Int8Config(check_photos=16, max_accuracy_drop=1.0))
    return out


def photo_paths(n: int) -> list[Path]:
    """The first n real bin JPEGs of the sample (read in place)."""
    return sorted((ABID / "bin-images").glob("*.jpg"))[:n]


def photo_bytes(n: int) -> list[bytes]:
    return [p.read_bytes() for p in photo_paths(n)]
