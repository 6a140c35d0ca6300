"""Scoring photos on a Ray cluster: `bintally predict|reconcile ... --ray [ADDRESS]` (the `ray` extra).

The driver lists the photos and leaves out those earlier shards already scored. Ray Data reads and
decodes photos in CPU tasks (to the model's input size, as uint8: a quarter of the float32 bytes
through the object store), and an actor pool runs the model: one ONNX Runtime session per actor, a
GPU each where the cluster has GPUs. The driver writes the rows it gets back as Parquet shards under
`<out>.shards/` (probabilities as float64, the very numbers one machine decides on), each written whole
and then renamed, so a killed job loses only rows not yet in a shard. Each shard records the model that
scored it (`model_key`): a rerun with another model is refused. The shards are removed once the rows are
merged into the output. A worker that dies has its tasks retried and its actor restarted by Ray; a photo
that cannot be read gets its error in its row, as on one machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from bintally import storage
from bintally.data.images import DEFAULT_MAX_PIXELS
from bintally.data.manifest import read_parquet
from bintally.errors import BintallyError
from bintally.model.artifact import INT8_FILE, ONNX_FILE, SPEC_FILE, WEIGHTS_FILE, ModelArtifact, load_artifact
from bintally.model.predictor import Backend, Precision, resolve_precision
from bintally.model.preprocess import Preprocess, normalise
from bintally.scoring.model import load_model
from bintally.scoring.one_machine import score_loaded
from bintally.scoring.photos import photo_ids, read_photo
from bintally.scoring.rows import arrow_schema, columns, is_scored, prediction_row

SHARDS_SUFFIX = ".shards"
MODEL_METADATA = b"bintally.model"  # a shard's Parquet metadata: the `model_key` of the model that scored it
READER_CPUS = 0.5  # a photo-reading task's CPUs
LOCAL_RAY = "local"  # `--ray` with no address: start Ray on this machine for the one job
log = logging.getLogger(__name__)


class RayConfig(BaseModel):
    """Scoring on a Ray cluster (the `ray` extra)."""

    address: str = LOCAL_RAY  # local | auto (the cluster `ray start` made here) | HOST:PORT of a cluster's head
    actors: int | None = Field(None, ge=1)  # model actors; default one per node, or one per GPU where the cluster has GPUs
    cpus_per_actor: float = Field(1, gt=0)  # a reservation: ONNX Runtime's threads use what the node has
    shard_rows: int = Field(1024, ge=1)  # rows per shard file: at most this many are lost with a killed driver


class RayScores(BaseModel):
    rows: dict[str, dict[str, Any]]  # uri -> its row (predict's columns, numbers as numbers), one per photo asked for
    skipped: int  # photos earlier shards had already scored


def shards_of(out: str) -> str:
    return out + SHARDS_SUFFIX


def remove_shards(out: str) -> None:
    """Once `out` holds the merged rows: the shards are only for resuming a run that did not get that far."""
    shutil.rmtree(shards_of(out), ignore_errors=True)


def model_key(artifact: ModelArtifact, files: dict[str, bytes], backend: Backend, precision: Literal["fp32", "int8"]) -> dict[str, Any]:
    """What a row's probabilities depend on: the weights and graphs, the temperature, the flips, the input and the
    classes from model.json (not its decision policy, which reads the probabilities), and the backend and
    precision that ran. Every file but model.json is digested, so re-exporting the int8 graph also counts."""
    digest = hashlib.sha256()
    for name in sorted(set(files) - {SPEC_FILE}):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    spec = artifact.spec
    return {
        "files": digest.hexdigest(),
        "temperature": spec.temperature,
        "flips": spec.flips,
        "preprocess": spec.preprocess.model_dump(mode="json"),
        "classes": spec.count_classes.model_dump(mode="json"),
        "backend": backend,
        "precision": precision,
    }


def read_shards(folder: str, key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of earlier runs, one per photo: a scored row wins over a failed one, a later failure over an earlier.
    A shard that cannot be read (cut short by a kill) is ignored: its photos are scored again. A shard another model
    scored (`key` differs) is refused rather than rescored: removing it ourselves could destroy the only copy of
    scores a user pointed the wrong model at, and keeping it would mix two models' numbers in one output."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("*.parquet")) if os.path.isdir(folder) else []:
        try:
            table = read_parquet(str(path))
        except (OSError, pa.ArrowInvalid) as exc:
            log.warning("ignoring unreadable shard %s: %s", path, exc)
            continue
        theirs = json.loads((table.schema.metadata or {}).get(MODEL_METADATA, b"{}"))
        if theirs != key:
            differ = ", ".join(sorted(k for k in key.keys() | theirs.keys() if theirs.get(k) != key.get(k)))
            raise ValueError(
                f"{path} was scored by another model (its {differ} differ from this one's): remove {folder} to score "
                "again with this model, or choose another --out"
            )
        header = table.column_names
        for row in table.to_pylist():
            if row["uri"] not in found or not is_scored(found[row["uri"]], header):
                found[row["uri"]] = row
    return found


class ShardWriter:
    """Rows to Parquet files of at most `rows` rows, each written to a temporary name and renamed when whole."""

    def __init__(self, folder: str, schema: pa.Schema, rows: int):
        self.folder, self.schema, self.rows = folder, schema, rows
        self.pending: list[dict[str, Any]] = []
        os.makedirs(folder, exist_ok=True)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.pending += rows
        while len(self.pending) >= self.rows:
            self._write(self.pending[: self.rows])
            self.pending = self.pending[self.rows :]

    def close(self) -> None:
        if self.pending:
            self._write(self.pending)
            self.pending = []

    def _write(self, rows: list[dict[str, Any]]) -> None:
        final = os.path.join(self.folder, f"{time.time_ns()}.parquet")  # names sort by time: later rows read later
        pq.write_table(pa.Table.from_pylist(rows, self.schema), final + ".tmp")
        os.replace(final + ".tmp", final)


def ray_module() -> ModuleType:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise BintallyError(f"--ray needs Ray: pip install 'bintally[ray]' ({exc})") from exc
    return ray


def connect(address: str) -> None:
    """Join the cluster at `address` (auto: the one `ray start` made here), or start Ray here for `local`."""
    ray = ray_module()
    if ray.is_initialized():
        return
    if address == LOCAL_RAY:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False


def artifact_files(model: str, backend: Backend) -> dict[str, bytes]:
    """The files an actor needs to load the model, read once by the driver: a model path need not exist on the nodes."""
    names = [SPEC_FILE, WEIGHTS_FILE] + ([ONNX_FILE, INT8_FILE] if backend == "onnx" else [])
    found = [n for n in names if storage.exists(storage.join(model, n))]
    return {n: storage.read_bytes(storage.join(model, n)) for n in found}


def read_photos(batch: dict[str, np.ndarray], pp: Preprocess, endpoint_url: str | None, max_pixels: int) -> dict[str, np.ndarray]:
    """A Ray Data batch of uris -> each photo at the model's size (uint8 HWC, zeros where it failed) and its error."""
    pixels, errors = [], []
    for uri in batch["uri"]:
        photo = read_photo(str(uri), pp, endpoint_url, max_pixels)
        ok = not isinstance(photo, str)
        pixels.append(np.asarray(photo, np.uint8) if ok else np.zeros((pp.size, pp.size, 3), np.uint8))
        errors.append("" if ok else photo)
    return {"id": batch["id"], "uri": batch["uri"], "pixels": np.stack(pixels), "error": np.array(errors, dtype=object)}


class Scorer:
    """A Ray Data actor: the model loaded once (its files from the object store), then batch after batch."""

    def __init__(self, files: list, backend: Backend, precision: Precision):
        import ray

        self.folder = tempfile.TemporaryDirectory(prefix="bintally-model-")
        for name, data in ray.get(files[0]).items():  # in a list, so Ray hands over the reference, not the bytes
            Path(self.folder.name, name).write_bytes(data)
        self.predictor = load_model(self.folder.name, backend, precision)
        self.schema = arrow_schema(columns(self.predictor.spec.count_classes))

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        pp = self.predictor.spec.preprocess
        loaded = [str(e) if e else normalise(px, pp) for px, e in zip(batch["pixels"], batch["error"])]
        scored = zip(batch["id"], batch["uri"], score_loaded(self.predictor, loaded))
        rows = [prediction_row(str(i), str(u), o) for i, u, o in scored]
        return pa.Table.from_pylist(rows, self.schema)


def _actors(cfg: RayConfig, blocks: int) -> tuple[int, float]:
    """How many model actors (no more than there are blocks to score), and the GPUs each holds. Actors that
    would hold every CPU are refused: the reading tasks would never be scheduled and the job would wait forever."""
    ray = ray_module()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    nodes = sum(1 for n in ray.nodes() if n["Alive"])
    actors = min(cfg.actors or gpus or nodes, blocks)
    cpus = resources.get("CPU", 0)
    if actors * cfg.cpus_per_actor > cpus - READER_CPUS:
        raise BintallyError(
            f"{actors} model actors of {cfg.cpus_per_actor:g} CPUs leave no CPU for reading photos on this cluster's "
            f"{cpus:g} CPUs: ask for fewer actors or fewer CPUs each"
        )
    return actors, (1.0 if gpus else 0.0)


class ScoringJob(Protocol):
    """What `predict` and `reconcile` configs share, and scoring on Ray reads from either."""

    model: str
    out: str  # local: the shards live beside it
    backend: Backend
    precision: Precision
    batch_size: int
    endpoint_url: str | None
    ray: RayConfig | None


def score_on_ray(
    job: ScoringJob,
    uris: list[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> RayScores:
    """Every photo's row, scored on the cluster or read from `<out>.shards` where an earlier run scored it."""
    if job.ray is None or storage.is_remote(job.out):
        raise ValueError("scoring on Ray needs a Ray config and a local --out: the shards are kept beside it")
    cfg, model, shards = job.ray, job.model, shards_of(job.out)
    backend, precision, batch_size, endpoint_url = job.backend, job.precision, job.batch_size, job.endpoint_url
    ray = ray_module()

    artifact = load_artifact(model)
    spec, files = artifact.spec, artifact_files(model, backend)
    # Chosen once here, so every actor runs the same graph whatever CPU its node has, and the shards say which.
    chosen = resolve_precision(artifact, backend, precision)
    key = model_key(artifact, files, backend, chosen)
    header = columns(spec.count_classes)
    rows = read_shards(shards, key)
    todo, ids = [u for u in uris if not (u in rows and is_scored(rows[u], header))], photo_ids(uris)
    if todo:
        connect(cfg.address)
        blocks = max(1, len(todo) // batch_size)
        actors, gpus = _actors(cfg, blocks)
        refs = [ray.put(files)]
        scored = (
            ray.data.from_items([{"id": ids[u], "uri": u} for u in todo], override_num_blocks=blocks)
            # Reading waits on storage half the time, so two readers share a CPU; the different resources also keep
            # reading a stage of its own (Ray would otherwise fuse it into the actors, one reader per model).
            .map_batches(
                partial(read_photos, pp=spec.preprocess, endpoint_url=endpoint_url, max_pixels=max_pixels),
                batch_size=batch_size,
                num_cpus=READER_CPUS,
            )
            .map_batches(
                Scorer,
                fn_constructor_args=(refs, backend, chosen),
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cfg.cpus_per_actor,
                num_gpus=gpus,
                batch_size=batch_size,
            )
        )
        writer = ShardWriter(shards, arrow_schema(header).with_metadata({MODEL_METADATA: json.dumps(key)}), cfg.shard_rows)
        done = 0
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            new = cast(pa.Table, batch).to_pylist()
            writer.add(new)
            rows.update({r["uri"]: r for r in new})
            done += len(new)
            on_progress(done, len(todo))
        writer.close()
    return RayScores(rows={u: rows[u] | {"id": ids[u]} for u in uris}, skipped=len(uris) - len(todo))  # shards of another job's ids
