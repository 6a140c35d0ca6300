"""Which bins a command works on: a file list, an id list, count filters, limits.

`select_bins` reads the metadata of every candidate and sorts out the bins that
cannot be used, each with a reason, so that no bad record is dropped silently.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from bintally.data.abid import IMAGES_DIR, METADATA_DIR, AbidRoot, BadRecord, BinRecord, parse_metadata, read_file_list, read_ids_file


class Subset(BaseModel):
    file_list: str | None = Field(None, description="capstone file_list.json")
    ids_file: str | None = Field(None, description="one id per line, or a JSON list")
    counts: tuple[int, int] | None = Field(None, description="inclusive count range")
    per_count: int | None = Field(None, ge=1)
    # With per_count: counts of this or more share one quota, as they share the open top class "K+", so that class
    # holds bins of 10 or more as they come (mostly 10-15), not as many 80s as 10s.
    top_count: int | None = Field(None, ge=1)
    # With per_count: only the bins of this split are held to the quota; the other splits keep every bin, so that a
    # balanced training sample is validated and tested on the bins as they come (the quickstart).
    per_count_split: Literal["train", "val", "test"] | None = None
    # With per_count_split: each other split keeps at most this many bins (picked by a hash of the id, spread over the
    # whole source), so a quickstart pointed at the whole ABID (some 50,000 validation bins) does not score them all
    # after every epoch.
    held_out_limit: int | None = Field(None, ge=1)
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _quota_to_split(self) -> Subset:
        if self.per_count_split is not None and self.per_count is None:
            raise ValueError("per_count_split holds one split to the per_count quota: give per_count too")
        if self.held_out_limit is not None and self.per_count_split is None:
            raise ValueError("held_out_limit bounds the splits per_count_split leaves whole: give per_count_split too")
        return self


def _within_quotas(records: list[BinRecord], subset: Subset, split_of: Callable[[str], str] | None) -> list[BinRecord]:
    """`subset.per_count` bins per count (of `per_count_split` only, where given; the other splits whole, or at most
    `held_out_limit` bins each), in their order."""
    assert subset.per_count is not None
    splits = {r.id: split_of(r.id) for r in records} if subset.per_count_split is not None and split_of is not None else {}
    held_out: dict[str, list[BinRecord]] = defaultdict(list)
    for r in records:
        if r.id in splits and splits[r.id] != subset.per_count_split:
            held_out[splits[r.id]].append(r)
    picked = {r.id for rows in held_out.values() for r in _hash_pick(rows, subset.held_out_limit)}
    taken: dict[int, int] = defaultdict(int)
    kept = []
    for r in records:
        if r.id in splits and splits[r.id] != subset.per_count_split:
            if r.id in picked:
                kept.append(r)
            continue
        quota = r.count if subset.top_count is None else min(r.count, subset.top_count)
        if taken[quota] < subset.per_count:
            taken[quota] += 1
            kept.append(r)
    return kept


def _hash_pick(records: list[BinRecord], limit: int | None) -> list[BinRecord]:
    """At most `limit` of `records` (all for None), ordered by a hash of the id: spread over the whole source, where
    the lowest ids would be its oldest photos (ABID's ids follow capture order)."""
    return sorted(records, key=lambda r: hashlib.sha256(r.id.encode()).digest())[:limit]


def parse_counts(text: str | None) -> tuple[int, int] | None:
    """'1-5' -> (1, 5); '3' -> (3, 3)."""
    if not text:
        return None
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError as exc:
        raise ValueError(f"--counts must look like 1-5 or 3, got {text!r}") from exc
    if bounds[0] < 0 or bounds[0] > bounds[1]:
        raise ValueError(f"--counts range {text!r} is empty or negative")
    return bounds


class Problem(BaseModel):
    """A bin that was skipped, and why."""

    id: str
    kind: str
    detail: str = ""


class Selection(BaseModel):
    records: list[BinRecord]
    problems: list[Problem]

    def problem_counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for p in self.problems:
            out[p.kind] += 1
        return dict(sorted(out.items()))


def _candidates(root: AbidRoot, subset: Subset) -> tuple[list[str], list[Problem]]:
    """Ids that have metadata to read, and problems found from listings alone."""
    if subset.file_list:
        wanted = set(read_file_list(subset.file_list, root.endpoint_url))
    elif subset.ids_file:
        wanted = set(read_ids_file(subset.ids_file, root.endpoint_url))
    else:
        wanted = None
    if wanted is not None and root.is_remote():
        # Listing a remote bucket of 500k objects costs more than reading the
        # wanted metadata; missing objects show up as read errors instead.
        return sorted(wanted), []
    images, metadata = root.list_ids(IMAGES_DIR), root.list_ids(METADATA_DIR)
    if not images and not metadata:
        # A mistyped root is not a dataset of no bins: a manifest of 0 rows would only fail later, less clearly.
        raise FileNotFoundError(f"no ABID bins at {root.url}: expected {IMAGES_DIR}/*.jpg and {METADATA_DIR}/*.json there")
    universe = wanted if wanted is not None else images | metadata
    problems = [Problem(id=i, kind="not_in_source", detail="neither image nor metadata") for i in sorted(universe - images - metadata)]
    problems += [
        Problem(id=i, kind="image_without_metadata", detail=f"no {METADATA_DIR}/{i}.json") for i in sorted((universe & images) - metadata)
    ]
    problems += [
        Problem(id=i, kind="metadata_without_image", detail=f"no {IMAGES_DIR}/{i}.jpg") for i in sorted((universe & metadata) - images)
    ]
    return sorted(universe & images & metadata), problems


def select_bins(root: AbidRoot, subset: Subset, split_of: Callable[[str], str] | None = None) -> Selection:
    """The bins `subset` names, read and sorted out; `split_of(id)` gives a bin's split (`per_count_split` needs it)."""
    if subset.per_count_split is not None and split_of is None:
        raise ValueError("per_count_split needs each bin's split (split_of)")
    ids, problems = _candidates(root, subset)
    records: list[BinRecord] = []
    for bin_id, raw in sorted(root.read_many(METADATA_DIR, ids).items()):
        if isinstance(raw, FileNotFoundError):
            problems.append(Problem(id=bin_id, kind="missing_metadata", detail=str(raw)))
        elif isinstance(raw, Exception):
            problems.append(Problem(id=bin_id, kind="unreadable", detail=f"{type(raw).__name__}: {raw}"))
        else:
            try:
                records.append(parse_metadata(bin_id, raw))
            except BadRecord as exc:
                problems.append(Problem(id=bin_id, kind="bad_metadata", detail=str(exc)))
    if subset.counts:
        low, high = subset.counts
        records = [r for r in records if low <= r.count <= high]
    if subset.per_count:
        records = _within_quotas(records, subset, split_of)
    if subset.limit:
        records = records[: subset.limit]
    return Selection(records=records, problems=problems)
