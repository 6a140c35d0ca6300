"""A scored photo's row (id, uri, count, confidence, p_<count> for each count, error), and the files of rows:
a CSV appended to, resumed and locked, or the whole table at once as CSV or Parquet."""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq

from bintally import storage
from bintally.counts import CountClasses
from bintally.model.predictor import CountScore
from bintally.scoring.photos import photo_ids

LOCK_SUFFIX = ".lock"  # beside the output: held by the run writing it


def columns(classes: CountClasses) -> list[str]:
    """The output's columns: `at_least` (the count is the open top class, "K or more") only for a model that has one."""
    at_least = ["at_least"] if classes.open_top else []
    return ["id", "uri", "count", *at_least, "confidence", *(f"p_{label}" for label in classes.labels), "error"]


def prediction_row(photo_id: str, uri: str, outcome: CountScore | str) -> dict:
    """A photo's row (its id from `photos.photo_ids`) with its numbers as numbers: Ray's shards keep the very
    floats one machine decides on, and only a CSV rounds them (`csv_cells`)."""
    row = {"id": photo_id, "uri": uri}
    if isinstance(outcome, str):
        return row | {"error": outcome}
    probabilities = {f"p_{c}": p for c, p in outcome.probabilities.items()}
    # `at_least` is written only where the header has it (a model with an open top class): writers ignore extras.
    return row | {"count": outcome.count, "at_least": outcome.at_least, "confidence": outcome.confidence, **probabilities, "error": ""}


def arrow_schema(header: list[str]) -> pa.Schema:
    """The columns as Parquet holds them (shards and a .parquet output): counts and probabilities as numbers,
    null where the photo failed."""
    numbers = {k: pa.float64() for k in header if k == "confidence" or k.startswith("p_")} | {"count": pa.int64(), "at_least": pa.bool_()}
    return pa.schema([(k, numbers.get(k, pa.string())) for k in header])


def outcome_of(row: dict, classes: CountClasses) -> CountScore | str:
    """A prediction row back to its score, or its error (the inverse of `prediction_row`)."""
    if row["error"]:
        return row["error"]
    probabilities = {label: float(row[f"p_{label}"]) for label in classes.labels}
    count = int(row["count"])
    return CountScore(count=count, at_least=classes.is_open(count), confidence=float(row["confidence"]), probabilities=probabilities)


def is_complete(row: dict, header: list[str]) -> bool:
    """Every column and no more, and a uri. A row cut short by a kill during a write fails this (csv fills its
    missing fields with None, and puts extra ones under None)."""
    return None not in row and all(row.get(k) is not None for k in header) and bool(row["uri"])


def is_scored(row: dict, header: list[str]) -> bool:
    """A complete, well-formed row of a scored photo: no error, numbers where numbers go."""
    if not is_complete(row, header) or row["error"]:
        return False
    try:
        int(row["count"])
        [float(row[k]) for k in header if k == "confidence" or k.startswith("p_")]
    except ValueError:
        return False
    return True


def is_failed(row: dict, header: list[str]) -> bool:
    """A complete row of a photo that could not be scored, with its error."""
    return is_complete(row, header) and bool(row["error"])


def resume(out: str, header: list[str], uris: list[str]) -> tuple[set[str], dict[str, str]]:
    """The URIs an earlier run scored, and every photo's id (`photos.photo_ids`) over the file's and `uris` together.
    Rows torn or malformed, and failed rows of photos in `uris`, are removed from the file, to be tried again (failed
    rows of other photos stay: they still name them). A row counts only once its newline is written: a kill can cut
    the last line anywhere, even where it parses whole (right after its final comma), and the next row appended must
    start on a line of its own. An earlier row whose id the new inputs change (its 00585 now beside another folder's)
    is rewritten with the new id, so the file never holds one id twice, and an id only grows."""
    if not os.path.exists(out):
        return set(), photo_ids(uris)
    with open(out, newline="") as fh:
        text = fh.read()
    ended = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(ended))
    if ended and reader.fieldnames != header:
        raise ValueError(f"{out} has columns {reader.fieldnames}, not this model's {header}; choose another --out")
    rows, retried = list(reader), set(uris)
    kept = [row for row in rows if is_scored(row, header) or (is_failed(row, header) and row["uri"] not in retried)]
    ids = photo_ids([*(row["uri"] for row in kept), *uris])
    renamed = [row | {"id": ids[row["uri"]]} for row in kept]
    if ended != text or len(kept) < len(rows) or renamed != kept:
        storage.write_bytes(out, csv_text(header, renamed).encode())
    return {row["uri"] for row in kept if not row["error"]}, ids


@contextmanager
def locked(out: str) -> Iterator[None]:
    """Holds `OUT.lock` for a whole run, so a second run on the same output fails at once: two runs appending to
    one CSV (and replacing it on resume), or merging and removing one folder of shards, lose each other's rows.
    The lock file stays: removed, a third run could lock a new file while the second still holds the old one."""
    if storage.is_remote(out):
        raise ValueError(f"--out {out}: must be a local path, where a run can lock it and resume beside it")
    lock = out + LOCK_SUFFIX
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ValueError(f"{out} is being written by another run (it holds {lock}): wait for it, or choose another --out") from exc
        yield


def csv_cells(row: dict) -> dict:
    """A row's cells as a CSV shows them: probabilities to six decimals, `at_least` as true/false; text as it is."""
    return {k: str(v).lower() if isinstance(v, bool) else f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()}


def csv_text(header: list[str], rows: list[dict]) -> str:
    """Rows as CSV text with a header line."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(map(csv_cells, rows))
    return buf.getvalue()


def write_predictions(out: str, header: list[str], rows: list[dict]) -> None:
    """The whole table at once: CSV, or Parquet (counts and probabilities as numbers) where `out` ends with .parquet."""
    if not out.endswith(".parquet"):
        storage.write_bytes(out, csv_text(header, rows).encode())
        return
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, arrow_schema(header)), out)
