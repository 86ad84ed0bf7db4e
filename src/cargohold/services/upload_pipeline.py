"""Hashing and writing an upload on two threads of their own while the event loop receives more.

A blob push costs three things per byte: receiving it (the server and the event loop), hashing it
and writing it. Done one after the other they add up; here each has a core's worth of time:
the event loop hands each batch, in order, to a hashing lane and a writing lane (hashlib and
os.pwritev release the GIL) and goes back to receiving. Memory stays flat: at most `budget`
bytes are queued, after which the event loop waits for the lanes (TCP back-pressure does the rest).
Measured in docs/benchmarks.md: 512 MiB pushes went from ~350 to ~550 MB/s on 2 cores.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cargohold.storage.blobs.base import UploadWriter

_DONE = None
T = TypeVar("T")


class _Lane:
    """One thread applying `step` to batches in the order they were queued."""

    def __init__(self, name: str, step: Callable[[Sequence[bytes]], None],
                 release: Callable[[int], None]) -> None:
        self._step = step
        self._release = release
        self._queue: queue.SimpleQueue[Sequence[bytes] | None] = queue.SimpleQueue()
        self.finished: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.error: BaseException | None = None
        self.skip = False  # set when the upload is abandoned: drain without working
        self.final: Callable[[], Any] | None = None  # run after the last batch; its result ends `finished`
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def put(self, parts: Sequence[bytes] | None) -> None:
        self._queue.put(parts)

    def _run(self) -> None:
        while (parts := self._queue.get()) is not _DONE:
            if self.error is None and not self.skip:
                try:
                    self._step(parts)
                except BaseException as exc:  # reported by HashWritePipeline.close
                    self.error = exc
            self._release(sum(map(len, parts)))
        result = None
        if self.error is None and self.final is not None and not self.skip:
            try:
                result = self.final()
            except BaseException as exc:
                self.error = exc
        if self.error is None:
            self.finished.set_result(result)
        else:
            self.finished.set_exception(self.error)


class HashWritePipeline:
    """`after`: hashing still running on the same hasher (the previous chunk of this upload,
    see close_writes); this pipeline's hashing starts when it is done."""

    def __init__(self, writer: UploadWriter, hasher: Any, budget: int = 16 << 20,
                 after: concurrent.futures.Future[None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._budget = 2 * budget  # every byte is queued on both lanes
        self._queued = 0
        self._room = asyncio.Event()
        waiting = [after] if after is not None else []

        def hash_parts(parts: Sequence[bytes]) -> None:
            if waiting:
                waiting.pop().result()  # on this lane's thread: the event loop never waits here
            for part in parts:
                hasher.update(part)

        self._lanes = (_Lane("upload-hash", hash_parts, self._released),
                       _Lane("upload-write", lambda parts: writer.write(*parts), self._released))

    def _released(self, nbytes: int) -> None:  # on a lane's thread
        with contextlib.suppress(RuntimeError):  # a closed loop (shutdown): nobody waits for room now
            self._loop.call_soon_threadsafe(self._free, nbytes)

    def _free(self, nbytes: int) -> None:
        self._queued -= nbytes
        if self._queued < self._budget:
            self._room.set()

    def _raise_lane_error(self) -> None:
        for lane in self._lanes:
            if lane.error is not None:
                raise lane.error

    async def feed(self, parts: Sequence[bytes], nbytes: int) -> None:
        """Queue one batch on both lanes; waits while too much is queued."""
        self._raise_lane_error()
        self._queued += 2 * nbytes
        for lane in self._lanes:
            lane.put(parts)
        while self._queued >= self._budget:
            self._room.clear()
            await self._room.wait()
            self._raise_lane_error()

    async def close(self) -> None:
        """Wait until every queued byte is hashed and written; raise the first lane's error."""
        await self._stop()
        self._raise_lane_error()

    async def close_writes(self, then: Callable[[], T]) -> tuple[T, concurrent.futures.Future[None]]:
        """Wait until every queued byte is written, not hashed, and `then` has run on the
        writing thread right after the last write (closing the file and recording the offset
        there saves a thread hop per chunk). Returns its result and the hashing's future.

        A chunked upload answers each PATCH once its bytes are staged; hashing the chunk's last
        queued megabytes goes on while the client sends the next one."""
        hashing, writing = self._lanes
        writing.final = then
        for lane in self._lanes:
            lane.put(_DONE)
        await asyncio.gather(asyncio.wrap_future(writing.finished), return_exceptions=True)
        if writing.error is not None:
            raise writing.error
        return writing.finished.result(), hashing.finished

    async def abort(self) -> None:
        """Drop what is still queued and wait for both threads to stop touching the writer."""
        for lane in self._lanes:
            lane.skip = True
        await self._stop()

    async def _stop(self) -> None:
        for lane in self._lanes:
            lane.put(_DONE)
        await asyncio.gather(*(asyncio.wrap_future(lane.finished) for lane in self._lanes),
                             return_exceptions=True)
