"""The micro-batcher: concurrent submissions share a forward pass, each gets its own row, a full queue refuses."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from bintally.serve.batching import BatchConfig, MicroBatcher
from bintally.serve.errors import ApiError


def _row_sums(batch: np.ndarray) -> np.ndarray:
    return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


async def _with_batcher(cfg: BatchConfig, forward, work):
    sizes: list[int] = []
    batcher = MicroBatcher(forward, cfg, sizes.append)
    batcher.start()
    try:
        return await work(batcher), sizes
    finally:
        await batcher.stop()


def test_concurrent_submissions_share_a_batch_and_get_their_own_rows():
    """Ten inputs submitted at once with max_batch 4 and a 50 ms wait run as batches of 4, 4, 2, and each
    caller gets the row computed from its own input."""
    inputs = [np.full((3, 2, 2), i, np.float32) for i in range(10)]

    async def work(batcher):
        return await asyncio.gather(*(batcher.submit(x) for x in inputs))

    rows, sizes = asyncio.run(_with_batcher(BatchConfig(max_batch=4, max_wait_ms=50, queue_size=16), _row_sums, work))
    assert sizes == [4, 4, 2]
    assert [float(r[0]) for r in rows] == [12.0 * i for i in range(10)]


def test_full_queue_refuses_with_503_and_retry_after():
    """With room for 2 waiting images and a slow model, the later of 8 simultaneous submissions get 503 with
    Retry-After at once, and the admitted ones still get their answers."""

    def slow(batch):
        time.sleep(0.2)
        return _row_sums(batch)

    async def work(batcher):
        return await asyncio.gather(*(batcher.submit(np.ones((1,), np.float32)) for _ in range(8)), return_exceptions=True)

    results, _ = asyncio.run(_with_batcher(BatchConfig(max_batch=1, max_wait_ms=0, queue_size=2), slow, work))
    refused = [r for r in results if isinstance(r, ApiError)]
    assert refused and all(r.status == 503 and "Retry-After" in r.headers for r in refused)
    assert sum(isinstance(r, np.ndarray) for r in results) >= 2


def test_a_failing_model_fails_its_batch_and_the_batcher_goes_on():
    """If the forward pass raises, every caller in that batch gets the error; the next submission is served."""
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return _row_sums(batch)

    async def work(batcher):
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(np.ones((2,), np.float32))
        return await batcher.submit(np.ones((2,), np.float32))

    row, _ = asyncio.run(_with_batcher(BatchConfig(max_batch=2, max_wait_ms=0), flaky, work))
    assert float(row[0]) == 2.0


def test_two_workers_compute_two_batches_at_once_each_caller_getting_its_own_row():
    """Tried: 6 submissions with max_batch 1 and a model taking 0.2 s, with 2 workers (SageMaker's model-server
    workers). Must hold: two forward passes overlap at some point, never more, and each caller gets its own row."""
    running, most = [0], [0]

    def slow(batch):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.2)
        running[0] -= 1
        return _row_sums(batch)

    async def work(batcher):
        return await asyncio.gather(*(batcher.submit(np.full((2,), i, np.float32)) for i in range(6)))

    rows, sizes = asyncio.run(_with_batcher(BatchConfig(max_batch=1, max_wait_ms=0, workers=2), slow, work))
    assert most[0] == 2 and sizes == [1] * 6
    assert [float(r[0]) for r in rows] == [2.0 * i for i in range(6)]


def test_a_request_the_model_does_not_answer_in_time_gets_504_and_the_batcher_goes_on():
    """Tried: a model taking 0.5 s with timeout_s 0.1, then a quick model call. Must hold: the first caller gets
    504 "timeout" after about 0.1 s (not 0.5), naming the limit; the next submission is answered."""
    delays = [0.5, 0.0]

    def model(batch):
        time.sleep(delays.pop(0))
        return _row_sums(batch)

    async def work(batcher):
        started = time.monotonic()
        with pytest.raises(ApiError) as caught:
            await batcher.submit(np.ones((2,), np.float32))
        waited = time.monotonic() - started
        await asyncio.sleep(0.5)  # the slow batch finishes; its answer has no one waiting
        return caught.value, waited, await batcher.submit(np.ones((3,), np.float32))

    (err, waited, row), _ = asyncio.run(_with_batcher(BatchConfig(max_batch=1, max_wait_ms=0, timeout_s=0.1), model, work))
    assert err.status == 504 and err.code == "timeout" and "0.1 s" in err.message
    assert waited < 0.4
    assert float(row[0]) == 3.0
