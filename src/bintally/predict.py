"""Batch scoring: `bintally predict MODEL INPUT... --out predictions.csv`.

Scores every photo under folders, globs and s3:// prefixes. Photos are read and
decoded on a thread pool one batch ahead of the model, so reading overlaps
inference. The CSV gets one row per photo (id, uri, count, confidence, p_<count>
for each count, error) and is flushed after every batch: a rerun skips photos
already scored and retries only those that failed.
"""

from __future__ import annotations

import csv
import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import has_magic
from PIL import Image
from pydantic import BaseModel, Field

from bintally import storage
from bintally.counts import CountClasses
from bintally.data.images import DEFAULT_MAX_PIXELS, ImageError, decode_image
from bintally.data.manifest import read_manifest
from bintally.model.artifact import load_artifact
from bintally.model.predictor import Backend, CountScore, Precision, Predictor, load_predictor
from bintally.model.preprocess import Preprocess, normalise, resize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


LOCAL_RAY = "local"  # `--ray` with no address: start Ray on this machine for the one job


class RayConfig(BaseModel):
    """Scoring on a Ray cluster (`bintally.ray_scoring`, the `ray` extra)."""

    address: str = LOCAL_RAY  # local | auto (the cluster `ray start` made here) | HOST:PORT of a cluster's head
    actors: int | None = Field(None, ge=1)  # model actors; default one per node, or one per GPU where the cluster has GPUs
    cpus_per_actor: float = Field(1, gt=0)  # a reservation: ONNX Runtime's threads use what the node has
    shard_rows: int = Field(1024, ge=1)  # rows per shard file: at most this many are lost with a killed driver


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


def list_images(inputs: Iterable[str], endpoint_url: str | None = None) -> list[str]:
    """Every photo named: a file as given, a folder or prefix recursively, a glob by its matches, a manifest
    (.parquet) by its rows' photos."""
    found: set[str] = set()
    for url in inputs:
        if url.endswith(".parquet"):
            found.update(row.uri for row in read_manifest(url, endpoint_url).rows)
            continue
        fs, path = storage.resolve(url, endpoint_url)
        if has_magic(path):
            paths = fs.glob(path)
        elif fs.isdir(path):
            paths = fs.find(path)
        else:
            if not fs.exists(path):
                raise FileNotFoundError(f"{url} does not exist")
            found.add(url)
            continue
        found.update(_as_url(fs, p, url) for p in paths if p.lower().endswith(IMAGE_SUFFIXES))
    return sorted(found)


def _as_url(fs, path: str, given: str) -> str:
    return fs.unstrip_protocol(path) if storage.is_remote(given) else path


def columns(classes: CountClasses) -> list[str]:
    """The output's columns: `at_least` (the count is the open top class, "K or more") only for a model that has one."""
    at_least = ["at_least"] if classes.open_top else []
    return ["id", "uri", "count", *at_least, "confidence", *(f"p_{label}" for label in classes.labels), "error"]


def is_scored(row: dict, header: list[str]) -> bool:
    """A complete, well-formed row of a scored photo: every column, no error, numbers where numbers go.
    A row cut short by a kill during a write fails this (csv fills its missing fields with None)."""
    if None in row or any(row.get(k) is None for k in header) or row["error"] or not row["uri"]:
        return False
    try:
        int(row["count"])
        [float(row[k]) for k in header if k == "confidence" or k.startswith("p_")]
    except ValueError:
        return False
    return True


def resume(out: str, header: list[str]) -> set[str]:
    """The URIs an earlier run scored. Rows that failed, or are torn or malformed, are removed from the file,
    to be tried again."""
    if not os.path.exists(out):
        return set()
    with open(out, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != header:
            raise ValueError(f"{out} has columns {reader.fieldnames}, not this model's {header}; choose another --out")
        rows = list(reader)
    done = [row for row in rows if is_scored(row, header)]
    if len(done) < len(rows):
        storage.write_bytes(out, csv_text(header, done).encode())
    return {row["uri"] for row in done}


def csv_text(header: list[str], rows: list[dict]) -> str:
    """Rows as CSV text with a header line."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_photo(uri: str, pp: Preprocess, endpoint_url: str | None, max_pixels: int) -> Image.Image | str:
    """One photo decoded and resized to the model's input size, or why it could not be read."""
    try:
        return resize(decode_image(storage.read_bytes(uri, endpoint_url), max_pixels), pp)
    except (ImageError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _load(uri: str, pp: Preprocess, endpoint_url: str | None, max_pixels: int) -> np.ndarray | str:
    """The model input for one photo, or why it could not be read."""
    photo = read_photo(uri, pp, endpoint_url, max_pixels)
    return photo if isinstance(photo, str) else normalise(photo, pp)


def _read_ahead(pool: ThreadPoolExecutor, batches: Iterable[list[str]], load: Callable) -> Iterator[tuple[list[str], list]]:
    """Yields each batch loaded while the next one is already being read: at most two batches in memory."""
    ahead: deque[tuple[list[str], list[Future]]] = deque()
    for batch in batches:
        ahead.append((batch, [pool.submit(load, uri) for uri in batch]))
        if len(ahead) == 2:
            uris, futures = ahead.popleft()
            yield uris, [f.result() for f in futures]
    for uris, futures in ahead:
        yield uris, [f.result() for f in futures]


def predict(cfg: PredictConfig, on_progress: Callable[[int, int], None] = lambda done, total: None) -> PredictSummary:
    if storage.is_remote(cfg.out):
        raise ValueError("--out must be a local path: the CSV is appended to after every batch")
    if cfg.ray:
        return _predict_on_ray(cfg, on_progress)
    if cfg.out.endswith(".parquet"):
        raise ValueError("--out .parquet needs --ray (the merged table is written once); without it --out is a CSV appended batch by batch")
    predictor = load_predictor(cfg.model, cfg.backend, cfg.precision)
    header = columns(predictor.spec.count_classes)
    uris = list_images(cfg.inputs, cfg.endpoint_url)
    done = resume(cfg.out, header)
    todo = [u for u in uris if u not in done]
    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    failed = scored = 0
    with open(cfg.out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, header, extrasaction="ignore")
        if fh.tell() == 0:
            writer.writeheader()
        for batch in score_images(predictor, todo, cfg.batch_size, cfg.workers, cfg.endpoint_url, cfg.max_pixels):
            rows = [prediction_row(uri, outcome) for uri, outcome in batch]
            failed += sum(1 for row in rows if row["error"])
            scored += len(rows)
            writer.writerows(rows)
            fh.flush()
            on_progress(scored, len(todo))
    return PredictSummary(out=cfg.out, found=len(uris), skipped=len(uris) - len(todo), scored=len(todo) - failed, failed=failed)


def _predict_on_ray(cfg: PredictConfig, on_progress: Callable[[int, int], None]) -> PredictSummary:
    from bintally.ray_scoring import score_on_ray  # the ray extra

    uris = list_images(cfg.inputs, cfg.endpoint_url)
    scores = score_on_ray(cfg, uris, cfg.max_pixels, on_progress)
    header = columns(load_artifact(cfg.model).spec.count_classes)
    write_predictions(cfg.out, header, [scores.rows[u] for u in uris])
    failed = sum(1 for row in scores.rows.values() if row["error"])
    return PredictSummary(out=cfg.out, found=len(uris), skipped=scores.skipped, scored=len(uris) - scores.skipped - failed, failed=failed)


def write_predictions(out: str, header: list[str], rows: list[dict]) -> None:
    """The whole table at once: CSV, or Parquet (counts and probabilities as numbers) where `out` ends with .parquet."""
    if not out.endswith(".parquet"):
        storage.write_bytes(out, csv_text(header, rows).encode())
        return
    numbers = {k: pa.float64() for k in header if k == "confidence" or k.startswith("p_")} | {"count": pa.int64(), "at_least": pa.bool_()}

    def column(k: str) -> pa.Array:
        if k in numbers:  # empty where the photo failed
            return pa.array([r.get(k) or None for r in rows], pa.string()).cast(numbers[k])
        return pa.array([r.get(k, "") for r in rows], pa.string())

    table = pa.table({k: column(k) for k in header})
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    pq.write_table(table, out)


def outcome_of(row: dict, classes: CountClasses) -> CountScore | str:
    """A prediction row back to its score, or its error (the inverse of `prediction_row`)."""
    if row["error"]:
        return row["error"]
    probabilities = {label: float(row[f"p_{label}"]) for label in classes.labels}
    count = int(row["count"])
    return CountScore(count=count, at_least=classes.is_open(count), confidence=float(row["confidence"]), probabilities=probabilities)


def score_images(
    predictor: Predictor,
    uris: list[str],
    batch_size: int = 32,
    workers: int = 4,
    endpoint_url: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[list[tuple[str, CountScore | str]]]:
    """Scores photos batch by batch: each (uri, its score or why it could not be read)."""
    batches = [uris[i : i + batch_size] for i in range(0, len(uris), batch_size)]
    load = partial(_load, pp=predictor.spec.preprocess, endpoint_url=endpoint_url, max_pixels=max_pixels)
    with ThreadPoolExecutor(workers) as pool:
        for batch, loaded in _read_ahead(pool, batches, load):
            yield list(zip(batch, score_loaded(predictor, loaded)))


def score_loaded(predictor: Predictor, loaded: list[np.ndarray | str]) -> list[CountScore | str]:
    good = [i for i, x in enumerate(loaded) if isinstance(x, np.ndarray)]
    logits = predictor.logits(np.stack([loaded[i] for i in good])) if good else np.zeros((0, 0))
    # The error text stays where a photo could not be read; every other place gets its score below.
    outcomes: list[CountScore | str] = [x if isinstance(x, str) else "" for x in loaded]
    for i, row in zip(good, logits):
        outcomes[i] = predictor.score(row)
    return outcomes


def prediction_row(uri: str, outcome: CountScore | str) -> dict:
    row = {"id": PurePosixPath(uri).stem, "uri": uri}
    if isinstance(outcome, str):
        return row | {"error": outcome}
    probabilities = {f"p_{c}": f"{p:.6f}" for c, p in outcome.probabilities.items()}
    # `at_least` is written only where the header has it (a model with an open top class): writers ignore extras.
    at_least = str(outcome.at_least).lower()
    return row | {"count": outcome.count, "at_least": at_least, "confidence": f"{outcome.confidence:.6f}", **probabilities, "error": ""}
