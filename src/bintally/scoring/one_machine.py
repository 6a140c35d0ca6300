"""Scoring in this process: photos are read and decoded on a thread pool one batch ahead of the model, so
reading overlaps inference."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np

from bintally.data.images import DEFAULT_MAX_PIXELS
from bintally.model.predictor import CountScore, Predictor
from bintally.model.preprocess import Preprocess, normalise
from bintally.scoring.photos import read_photo


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
