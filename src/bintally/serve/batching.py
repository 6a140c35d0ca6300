"""Dynamic micro-batching: concurrent requests share one forward pass.

A request's image waits in a bounded queue; a worker takes the first waiting
image, gathers more until `max_batch` or `max_wait_ms` has passed, and runs the
batch on its inference thread (`workers` of them, SageMaker's model-server
workers: one is fastest on few cores, since each batch uses every core). A full
queue refuses at once (503 + Retry-After) instead of growing memory without
bound; a request not answered within `timeout_s` gets 504.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydantic import BaseModel, Field

from bintally.serve.errors import ApiError, unavailable


class BatchConfig(BaseModel):
    max_batch: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(5.0, ge=0)
    queue_size: int = Field(256, ge=1)  # images waiting for a forward pass
    workers: int = Field(1, ge=1, le=64)  # batches computed at once (SAGEMAKER_MODEL_SERVER_WORKERS)
    timeout_s: float = Field(60.0, gt=0)  # a request's wait for its row, queue included (SAGEMAKER_MODEL_SERVER_TIMEOUT)


def overloaded():
    return unavailable("overloaded", "the server is at capacity; retry shortly")


def timed_out(seconds: float) -> ApiError:
    return ApiError(504, "timeout", f"the model did not answer within {seconds:g} s; retry, or raise the server's --timeout")


class MicroBatcher:
    """`await submit(x)` -> the logits row for x, computed in a batch with its neighbours."""

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        cfg: BatchConfig,
        on_batch: Callable[[int], None] = lambda n: None,
    ):
        self._forward, self.cfg, self._on_batch = forward, cfg, on_batch
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue(cfg.queue_size)
        # One inference thread per worker: with one, batches run one after another, each using every core.
        self._executor = ThreadPoolExecutor(cfg.workers, thread_name_prefix="bintally-infer")
        self._workers: list[asyncio.Task] = []

    def depth(self) -> int:
        return self._queue.qsize()

    def full(self) -> bool:
        return self._queue.full()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._run()) for _ in range(self.cfg.workers)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((x, future))
        except asyncio.QueueFull:
            raise overloaded() from None
        try:
            return await asyncio.wait_for(future, self.cfg.timeout_s)  # cancels the future: no worker computes it then
        except TimeoutError:
            raise timed_out(self.cfg.timeout_s) from None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(loop)
            live = [(x, f) for x, f in batch if not f.done()]  # a client that went away needs no answer
            if not live:
                continue
            self._on_batch(len(live))
            try:
                logits = await loop.run_in_executor(self._executor, self._forward, np.stack([x for x, _ in live]))
            except Exception as exc:  # the model failed: every waiting request learns why
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), row in zip(live, logits):
                if not future.done():
                    future.set_result(row)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [await self._queue.get()]
        deadline = loop.time() + self.cfg.max_wait_ms / 1000
        while len(batch) < self.cfg.max_batch:
            remaining = deadline - loop.time()
            try:
                item = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            batch.append(item)
        return batch
