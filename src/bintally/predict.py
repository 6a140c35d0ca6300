"""Batch scoring: `bintally predict MODEL INPUT... --out predictions.csv`.

Scores every photo under folders, globs and s3:// prefixes (`scoring/`). In this process the CSV gets one
row per photo (id, uri, count, confidence, p_<count> for each count, error) and is flushed after every batch:
a rerun skips photos already scored and retries only those that failed. A run holds `OUT.lock` throughout: a
second run on the same --out is refused at once. With Ray the rows come from the
cluster's shards and are written once, as CSV or Parquet.
"""

from __future__ import annotations

import csv
from collections.abc import Callable

from pydantic import BaseModel, Field

from bintally import storage
from bintally.data.images import DEFAULT_MAX_PIXELS
from bintally.model.artifact import load_artifact
from bintally.model.predictor import Backend, Precision
from bintally.scoring.model import load_model
from bintally.scoring.on_ray import RayConfig, remove_shards, score_on_ray
from bintally.scoring.one_machine import score_images
from bintally.scoring.photos import list_images
from bintally.scoring.rows import columns, csv_cells, locked, prediction_row, resume, write_predictions


class PredictConfig(BaseModel):
    model: str
    inputs: list[str] = Field(min_length=1)
    out: str  # a local CSV path: it is appended to batch by batch (with Ray: CSV or .parquet, from the shards)
    backend: Backend = "onnx"
    precision: Precision = "auto"
    batch_size: int = Field(32, ge=1)
    workers: int = Field(4, ge=1)
    endpoint_url: str | None = None
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    ray: RayConfig | None = None  # None: this process alone


class PredictSummary(BaseModel):
    out: str
    found: int
    skipped: int  # scored by an earlier run
    scored: int
    failed: int


def predict(cfg: PredictConfig, on_progress: Callable[[int, int], None] = lambda done, total: None) -> PredictSummary:
    if storage.is_remote(cfg.out):
        raise ValueError("--out must be a local path: the CSV is appended to after every batch")
    if not cfg.ray and cfg.out.endswith(".parquet"):
        raise ValueError("--out .parquet needs --ray (the merged table is written once); without it --out is a CSV appended batch by batch")
    with locked(cfg.out):
        return _predict_on_ray(cfg, on_progress) if cfg.ray else _predict_here(cfg, on_progress)


def _predict_here(cfg: PredictConfig, on_progress: Callable[[int, int], None]) -> PredictSummary:
    predictor = load_model(cfg.model, cfg.backend, cfg.precision)
    header = columns(predictor.spec.count_classes)
    uris = list_images(cfg.inputs, cfg.endpoint_url)
    done, ids = resume(cfg.out, header, uris)
    todo = [u for u in uris if u not in done]
    failed = scored = 0
    with open(cfg.out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, header, extrasaction="ignore")
        if fh.tell() == 0:
            writer.writeheader()
        for batch in score_images(predictor, todo, cfg.batch_size, cfg.workers, cfg.endpoint_url, cfg.max_pixels):
            rows = [prediction_row(ids[uri], uri, outcome) for uri, outcome in batch]
            failed += sum(1 for row in rows if row["error"])
            scored += len(rows)
            writer.writerows(map(csv_cells, rows))
            fh.flush()
            on_progress(scored, len(todo))
    return PredictSummary(out=cfg.out, found=len(uris), skipped=len(uris) - len(todo), scored=len(todo) - failed, failed=failed)


def _predict_on_ray(cfg: PredictConfig, on_progress: Callable[[int, int], None]) -> PredictSummary:
    uris = list_images(cfg.inputs, cfg.endpoint_url)
    scores = score_on_ray(cfg, uris, cfg.max_pixels, on_progress)
    header = columns(load_artifact(cfg.model).spec.count_classes)
    write_predictions(cfg.out, header, [scores.rows[u] for u in uris])
    remove_shards(cfg.out)
    failed = sum(1 for row in scores.rows.values() if row["error"])
    return PredictSummary(out=cfg.out, found=len(uris), skipped=scores.skipped, scored=len(uris) - scores.skipped - failed, failed=failed)
