"""Dynamic micro-batching: concurrent requests share one forward pass.

A request's image waits in a bounded queue; one worker takes the first waiting
image, gathers more until `max_batch` or `max_wait_ms` has passed, and runs the
batch on one inference thread. A full queue refuses at once (503 + Retry-After)
instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydantic import BaseModel, Field

from bintally.serve.errors import unavailable


class BatchConfig(BaseModel):
    max_batch: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(5.0, ge=0)
    queue_size: int = Field(256, ge=1)  # images waiting for a forward pass


def overloaded():
    return unavailable("overloaded", "the server is at capacity; retry shortly")


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
        # One inference thread: batches run one after another, each using every core.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bintally-infer")
        self._worker: asyncio.Task | None = None

    def depth(self) -> int:
        return self._queue.qsize()

    def full(self) -> bool:
        return self._queue.full()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((x, future))
        except asyncio.QueueFull:
            raise overloaded() from None
        return await future

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
