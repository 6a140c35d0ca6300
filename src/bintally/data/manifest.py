"""The manifest: one Parquet table per dataset, the input of every later stage.

Columns: id, uri, count, sha256, width, height, split, source, and the metadata's
summed item volume and weight (nullable; manifests written before them read as
null). A bin's split is
a pure function of (seed, id), so adding images never moves an existing one,
and within each count the proportions follow the ratios.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from bintally import storage
from bintally.data.abid import IMAGES_DIR, AbidRoot
from bintally.data.images import DEFAULT_MAX_PIXELS, ImageError, decode_image
from bintally.data.subset import Problem, Subset, select_bins

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
READ_CHUNK = 256  # images held in memory at once while building a manifest


class ManifestRow(BaseModel):
    id: str
    uri: str
    count: int
    sha256: str
    width: int
    height: int
    split: Split
    source: str
    items_volume: float | None = None  # cubic inches, summed over the metadata's items (BinRecord.items_volume)
    items_weight: float | None = None  # pounds


ARROW_TYPES: dict[object, pa.DataType] = {int: pa.int32(), float | None: pa.float64()}
# The Parquet columns are ManifestRow's fields, in order: integers as int32, measurements as float64, the rest strings.
SCHEMA = pa.schema([(name, ARROW_TYPES.get(f.annotation, pa.string())) for name, f in ManifestRow.model_fields.items()])
REQUIRED_COLUMNS = [name for name, f in ManifestRow.model_fields.items() if f.is_required()]


class SplitRatios(BaseModel):
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    @classmethod
    def parse(cls, text: str) -> SplitRatios:
        """'80/10/10' (any scale) -> fractions."""
        try:
            parts = [float(p) for p in text.split("/")]
        except ValueError as exc:
            raise ValueError(f"--split must look like 80/10/10, got {text!r}") from exc
        if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
            raise ValueError(f"--split must be three non-negative numbers, got {text!r}")
        total = sum(parts)
        return cls(train=parts[0] / total, val=parts[1] / total, test=parts[2] / total)


def assign_split(bin_id: str, seed: int, ratios: SplitRatios) -> Split:
    digest = hashlib.sha256(f"{seed}:{bin_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < ratios.train:
        return "train"
    return "val" if u < ratios.train + ratios.val else "test"


class Manifest(BaseModel):
    rows: list[ManifestRow]

    def split(self, name: str) -> list[ManifestRow]:
        if name == "all":
            return list(self.rows)
        return [r for r in self.rows if r.split == name]

    def counts(self, split: str = "all") -> dict[int, int]:
        return dict(sorted(Counter(r.count for r in self.split(split)).items()))

    def digest(self) -> str:
        """Content digest of the table: which images, labels and splits."""
        h = hashlib.sha256()
        for r in sorted(self.rows, key=lambda r: r.id):
            h.update(f"{r.id}\t{r.sha256}\t{r.count}\t{r.split}\n".encode())
        return h.hexdigest()


class ManifestBuild(BaseModel):
    manifest: Manifest
    problems: list[Problem]


def _inspect(bin_id: str, data: bytes | Exception, max_pixels: int) -> tuple[str, int, int] | Problem:
    if isinstance(data, Exception):
        kind = "metadata_without_image" if isinstance(data, FileNotFoundError) else "unreadable"
        return Problem(id=bin_id, kind=kind, detail=f"{type(data).__name__}: {data}")
    try:
        img = decode_image(data, max_pixels)
    except ImageError as exc:
        return Problem(id=bin_id, kind="bad_image", detail=str(exc))
    return hashlib.sha256(data).hexdigest(), img.width, img.height


def build_manifest(
    root: AbidRoot,
    subset: Subset,
    ratios: SplitRatios | None = None,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 8,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ManifestBuild:
    """Every selected bin's photo inspected (decodes, size, digest; duplicates and bad photos become problems),
    each assigned its split by id. `on_progress(done, total)` hears after each chunk of photos."""
    ratios = ratios or SplitRatios()
    selection = select_bins(root, subset, lambda bin_id: assign_split(bin_id, seed, ratios))
    problems = list(selection.problems)
    rows: list[ManifestRow] = []
    first_by_hash: dict[str, str] = {}
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(selection.records), READ_CHUNK):
            chunk = selection.records[start : start + READ_CHUNK]
            ids = [r.id for r in chunk]
            blobs = root.read_many(IMAGES_DIR, ids)
            results = pool.map(_inspect, ids, [blobs[i] for i in ids], repeat(max_pixels))
            for record, result in zip(chunk, results):
                if isinstance(result, Problem):
                    problems.append(result)
                    continue
                sha, width, height = result
                if sha in first_by_hash:
                    problems.append(Problem(id=record.id, kind="duplicate", detail=f"same bytes as {first_by_hash[sha]}"))
                    continue
                first_by_hash[sha] = record.id
                rows.append(
                    ManifestRow(
                        id=record.id,
                        uri=root.image_url(record.id),
                        count=record.count,
                        sha256=sha,
                        width=width,
                        height=height,
                        split=assign_split(record.id, seed, ratios),
                        source=root.url,
                        items_volume=record.items_volume(),
                        items_weight=record.items_weight(),
                    )
                )
            if on_progress:
                on_progress(start + len(chunk), len(selection.records))
    return ManifestBuild(manifest=Manifest(rows=rows), problems=problems)


def report_url(manifest_url: str) -> str:
    """The skipped-bins report sits beside the manifest."""
    base = str(manifest_url)
    return (base[: -len(".parquet")] if base.endswith(".parquet") else base) + ".report.json"


def problems_report(problems: list[Problem], kept: int) -> dict:
    return {
        "kept": kept,
        "skipped": len(problems),
        "skipped_by_kind": dict(sorted(Counter(p.kind for p in problems).items())),
        "problems": [p.model_dump() for p in problems],
    }


def write_manifest(build: ManifestBuild, url: str, endpoint_url: str | None = None) -> str:
    """Write the Parquet table and its report; returns the report's URL."""
    table = pa.Table.from_pylist([r.model_dump() for r in build.manifest.rows], schema=SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes(url, sink.getvalue().to_pybytes(), endpoint_url)
    report = report_url(url)
    body = problems_report(build.problems, kept=len(build.manifest.rows))
    storage.write_bytes(report, json.dumps(body, indent=2).encode(), endpoint_url)
    return report


def read_parquet(source: str | pa.NativeFile) -> pa.Table:
    """A Parquet file's table, read on this thread. With torch loaded, a process that had started Arrow's thread
    pools (`pq.read_table`, or reading with threads) aborted at exit about half the time, after finishing its work
    (exit 134, "terminate called without an active exception"; apache/arrow#34314). Our tables are small."""
    with pq.ParquetFile(source) as parquet:
        return parquet.read(use_threads=False)


def read_manifest(url: str, endpoint_url: str | None = None) -> Manifest:
    try:
        table = read_parquet(pa.BufferReader(storage.read_bytes(url, endpoint_url)))
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{url} is not a bintally manifest (Parquet): {exc}") from exc
    missing = set(REQUIRED_COLUMNS) - set(table.column_names)
    if missing:
        raise ValueError(f"{url} lacks manifest columns {sorted(missing)}")
    return Manifest(rows=[ManifestRow(**row) for row in table.select([n for n in SCHEMA.names if n in table.column_names]).to_pylist()])
