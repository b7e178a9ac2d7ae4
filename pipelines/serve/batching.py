"""Micro-batching for the server: descriptions that arrive together are decoded in one batch.

Requests put their descriptions on one queue and await a future per description. A single worker task
takes the first waiting description, then keeps taking more until it holds `max_batch_size` of them or
`max_wait_s` has passed since it took the first, and hands the batch to `decode` on a dedicated thread
(the event loop stays free to accept requests and answer health checks meanwhile). Descriptions that
arrive while a batch is decoding wait on the queue and form the next batch without any extra wait, so
under load batches fill up on their own and `max_wait_s` only matters when the server is nearly idle.

One decoding thread, not several: a CPU model already uses every core for one batch, and running two
batches at once would only make both slower. `max_batch_size=1` turns batching off (one description per
decode call), which is what the throughput benchmark compares against.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("sop2cmd.serve")


class QueueFull(Exception):
    """More descriptions are waiting than the batcher accepts; the caller should retry later."""


class BatcherStopped(Exception):
    """The batcher was stopped (server shutting down) before the description was decoded."""


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 16
    max_wait_s: float = 0.025
    # Descriptions waiting to be decoded, over all requests; beyond this the server answers 503 at once
    # rather than letting every caller wait longer and longer.
    max_queued: int = 1024

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {self.max_wait_s}")
        if self.max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {self.max_queued}")


@dataclass
class BatchStats:
    batches: int = 0
    decoded: int = 0
    largest_batch: int = 0
    failed_batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"batches": self.batches, "decoded": self.decoded, "largest_batch": self.largest_batch,
                "failed_batches": self.failed_batches}


@dataclass
class _Item:
    payload: Any
    future: asyncio.Future[Any] = field(repr=False)


class MicroBatcher(Generic[T]):
    """Collects submitted items into batches for `decode(items) -> results` (one result per item, in order)."""

    def __init__(self, decode: Callable[[list[Any]], Sequence[T]], config: BatchingConfig) -> None:
        self._decode = decode
        self.config = config
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._queued = 0  # submitted, not yet taken into a batch
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        return self._queued

    async def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("the batcher is already running")
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sop2cmd-decode")
        self._worker = asyncio.create_task(self._run(), name="sop2cmd-batcher")

    async def stop(self) -> None:
        """Stop taking batches; whatever is still queued fails with BatcherStopped."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(BatcherStopped("the server is shutting down"))
            self._queued = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def submit(self, payloads: Sequence[Any]) -> list[T]:
        """Decode `payloads` (possibly across several batches) and return their results in order."""
        if self._queue is None or self._worker is None:
            raise BatcherStopped("the batcher is not running")
        if self._queued + len(payloads) > self.config.max_queued:
            raise QueueFull(
                f"{self._queued} descriptions are already waiting (limit {self.config.max_queued}); retry later"
            )
        loop = asyncio.get_running_loop()
        items = [_Item(payload, loop.create_future()) for payload in payloads]
        for item in items:
            self._queue.put_nowait(item)
        self._queued += len(items)
        # If the caller goes away, gather cancels the futures and the worker skips those items.
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _next_batch(self) -> list[_Item]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        self._queued -= 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.max_wait_s
        try:
            while len(batch) < self.config.max_batch_size:
                try:
                    # Whatever is already waiting joins at once, even after the deadline.
                    batch.append(self._queue.get_nowait())
                    self._queued -= 1
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                    self._queued -= 1
                except TimeoutError:
                    break
        except asyncio.CancelledError:
            # Stopped while gathering: the items already taken are off the queue, so fail them here.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(BatcherStopped("the server is shutting down"))
            raise
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [item for item in batch if not item.future.done()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._decode, [item.payload for item in live])
                if len(results) != len(live):  # pairing results with the wrong callers would be worse than failing
                    raise RuntimeError(f"decode returned {len(results)} results for {len(live)} items")
            except asyncio.CancelledError:
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(BatcherStopped("the server is shutting down"))
                raise
            except Exception as error:  # one bad batch must not stop the server: its callers get the error
                log.exception("decoding a batch of %d failed", len(live))
                self.stats.failed_batches += 1
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            self.stats.batches += 1
            self.stats.decoded += len(live)
            self.stats.largest_batch = max(self.stats.largest_batch, len(live))
            for item, result in zip(live, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
