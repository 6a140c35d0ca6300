"""The main job, small and fast: ingest -> train -> evaluate -> export, ready to serve.

Each step is the library function its own command calls; this module only
chooses small settings and chains the outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pydantic import BaseModel, Field

from bintally.data.abid import AbidRoot
from bintally.data.manifest import build_manifest, write_manifest
from bintally.data.subset import Subset
from bintally.evaluate.report import evaluate
from bintally.model.artifact import ONNX_FILE, load_artifact
from bintally.model.export import export_onnx
from bintally.train.config import TrainConfig
from bintally.train.loop import StepUpdate, train


class QuickstartConfig(BaseModel):
    data: str
    out: str = "runs/quickstart"
    counts: tuple[int, int] | None = None  # None: every count, the bins a warehouse has (0 to "10 or more")
    # Small photos and more of them: on 2 CPU cores more bins beat more pixels or more epochs in a few minutes
    # (docs/accuracy.md, "Every count": the measured time and accuracy of these defaults).
    # A balanced training sample (few bins of a rare count teach little), validated and tested on the bins of those
    # splits as they come: the decision policy is fitted, and the numbers reported, on the counts a warehouse has.
    per_count: int = Field(200, ge=10, description="training bins per count class (0, ..., 9, 10+)")
    max_held_out: int = Field(1000, ge=10, description="validation bins, and test bins, at most (the sample has 855 and 811)")
    epochs: int = Field(3, ge=1)
    image_size: int = Field(128, ge=32)
    endpoint_url: str | None = None


class QuickstartResult(BaseModel):
    manifest: str
    model: str
    report: str
    metrics: dict
    onnx_max_abs_diff: float


def run_quickstart(
    cfg: QuickstartConfig,
    on_step: Callable[[str], None] = lambda step: None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_train_step: Callable[[StepUpdate], None] | None = None,
) -> QuickstartResult:
    """The whole job on a small sample; `on_step` hears each stage, `on_epoch` and `on_train_step` the training."""
    manifest = os.path.join(cfg.out, "manifest.parquet")
    model = os.path.join(cfg.out, "model")
    report = os.path.join(cfg.out, "report")

    counts = "every count" if cfg.counts is None else "counts {}-{}".format(*cfg.counts)
    on_step(
        f"ingest: up to {cfg.per_count} training bins per count class, up to {cfg.max_held_out:,} validation and test bins "
        f"each ({counts}) from {cfg.data}"
    )
    top = TrainConfig().top_class  # a quota per count class: the open top class K+ is one
    subset = Subset(counts=cfg.counts, per_count=cfg.per_count, top_count=top, per_count_split="train", held_out_limit=cfg.max_held_out)
    build = build_manifest(AbidRoot(cfg.data, cfg.endpoint_url), subset)
    write_manifest(build, manifest)

    on_step(f"train: {len(build.manifest.split('train'))} bins, {cfg.epochs} epochs at {cfg.image_size} px")
    # The raw weights: in three short epochs an average of them trails the still-improving model (with the EMA, the
    # best validation epoch scored 34.3% against the raw weights' 35.7% in the same run).
    train_cfg = TrainConfig(epochs=cfg.epochs, image_size=cfg.image_size, ema_decay=None, name="bintally-quickstart")
    train(manifest, model, train_cfg, on_epoch=on_epoch, on_step=on_train_step)

    on_step("evaluate on the held-out test split")
    evaluation = evaluate(model, manifest, report)

    on_step("export ONNX (checked against PyTorch)")
    diff = export_onnx(load_artifact(model), os.path.join(model, ONNX_FILE))
    return QuickstartResult(manifest=manifest, model=model, report=report, metrics=evaluation.metrics, onnx_max_abs_diff=diff)
