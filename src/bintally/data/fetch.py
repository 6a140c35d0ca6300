"""Copy a subset of an ABID root (usually s3://) into a local cache.

Parallel, retried with exponential backoff, resumable and verified: a file is
written only after it decodes (image) or parses (metadata), and atomically
(`storage.write_bytes`), so whatever is at a final path is whole, and a second
run skips it; a killed run's partial files are removed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from pydantic import BaseModel

from bintally import storage
from bintally.data.abid import IMAGES_DIR, METADATA_DIR, AbidRoot, BadRecord, parse_metadata
from bintally.data.images import ImageError, decode_image
from bintally.data.subset import Problem, Subset, select_bins


class FetchResult(BaseModel):
    downloaded: int = 0
    skipped: int = 0
    failed: list[Problem] = []
    selected: int = 0


def _verify(data: bytes, kind: str, bin_id: str) -> None:
    """Raise unless the bytes are a whole image (decodes) or usable metadata (parses)."""
    if kind == IMAGES_DIR:
        decode_image(data)
    else:
        parse_metadata(bin_id, data)


def is_intact(path: str, kind: str, bin_id: str) -> bool:
    """True if a local file exists and decodes (image) or parses (metadata)."""
    if not os.path.exists(path):
        return False
    try:
        with open(path, "rb") as fh:
            _verify(fh.read(), kind, bin_id)
        return True
    except (ImageError, BadRecord, OSError):
        return False


def _download(source: AbidRoot, kind: str, bin_id: str, dest: str, retries: int, backoff_s: float) -> None:
    for attempt in range(retries + 1):
        try:
            data = source.read(kind, bin_id)
            _verify(data, kind, bin_id)
            break
        except FileNotFoundError:
            raise  # retrying will not make it appear
        except Exception:
            if attempt == retries:
                raise
            time.sleep(backoff_s * 2**attempt)
    storage.write_bytes(dest, data)


def _remove_partials(out_dir: str) -> None:
    """Leftovers of a killed run: never trusted, always fetched again."""
    for folder in (IMAGES_DIR, METADATA_DIR):
        for name in os.listdir(os.path.join(out_dir, folder)):
            if storage.PARTIAL_MARK in name:
                os.remove(os.path.join(out_dir, folder, name))


def fetch(
    source: AbidRoot,
    out_dir: str,
    subset: Subset,
    workers: int = 16,
    retries: int = 3,
    backoff_s: float = 0.5,
    on_progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """Download images and metadata of the selected bins into `out_dir` (ABID layout)."""
    selection = select_bins(source, subset)
    result = FetchResult(selected=len(selection.records), failed=list(selection.problems))
    for folder in (IMAGES_DIR, METADATA_DIR):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    _remove_partials(out_dir)
    jobs = []
    for record in selection.records:
        for kind, suffix in ((METADATA_DIR, ".json"), (IMAGES_DIR, ".jpg")):
            dest = os.path.join(out_dir, kind, record.id + suffix)
            if is_intact(dest, kind, record.id):
                result.skipped += 1
            else:
                jobs.append((kind, record.id, dest))
    done = result.skipped
    total = done + len(jobs)
    if on_progress:
        on_progress(done, total)
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(_download, source, kind, i, dest, retries, backoff_s): (kind, i) for kind, i, dest in jobs}
        for future in as_completed(futures):
            kind, bin_id = futures[future]
            try:
                future.result()
                result.downloaded += 1
            except Exception as exc:
                problem_kind = "missing" if isinstance(exc, FileNotFoundError) else "download_failed"
                result.failed.append(Problem(id=bin_id, kind=problem_kind, detail=f"{kind}: {type(exc).__name__}: {exc}"))
            done += 1
            if on_progress:
                on_progress(done, total)
    _write_fetch_report(out_dir, result)
    return result


def _write_fetch_report(out_dir: str, result: FetchResult) -> None:
    with open(os.path.join(out_dir, "fetch.report.json"), "w") as fh:
        json.dump(result.model_dump(), fh, indent=2)
