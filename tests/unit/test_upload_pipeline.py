"""HashWritePipeline: batches hashed and written in order on two threads, errors surfaced, an
abandoned upload leaves no thread behind touching the writer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import threading

import pytest

from cargohold.services.upload_pipeline import HashWritePipeline


class Recorder:
    def __init__(self, fail_at: int | None = None, delay: float = 0.0) -> None:
        self.parts: list[bytes] = []
        self.fail_at = fail_at
        self.delay = delay
        self.threads: set[str] = set()
        self.closed = False

    def write(self, *parts: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail_at is not None and len(self.parts) >= self.fail_at:
            raise OSError(28, "No space left on device")
        self.parts.extend(parts)

    def close(self) -> None:
        self.closed = True


def batches(count: int, size: int = 64 << 10) -> list[list[bytes]]:
    return [[os.urandom(size), os.urandom(size // 3 + i)] for i in range(count)]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_every_batch_hashed_and_written_in_order() -> None:
    data = batches(200)
    writer, hasher = Recorder(), hashlib.sha256()

    async def main() -> None:
        pipeline = HashWritePipeline(writer, hasher, budget=256 << 10)  # small: feed must wait
        for parts in data:
            await pipeline.feed(parts, sum(map(len, parts)))
        await pipeline.close()

    run(main())
    flat = [part for parts in data for part in parts]
    assert writer.parts == flat
    assert hasher.hexdigest() == hashlib.sha256(b"".join(flat)).hexdigest()
    assert writer.threads == {"upload-write"}


def test_queued_bytes_stay_under_the_budget() -> None:
    """Memory is flat: feed() does not return while more than the budget is queued."""
    writer = Recorder(delay=0.002)
    budget = 200 << 10
    peak = 0

    async def main() -> None:
        nonlocal peak
        pipeline = HashWritePipeline(writer, hashlib.sha256(), budget=budget)
        for parts in batches(30):
            await pipeline.feed(parts, sum(map(len, parts)))
            peak = max(peak, pipeline._queued)
        await pipeline.close()

    run(main())
    assert peak < 2 * budget
    assert len(writer.parts) == 60


def test_a_write_error_reaches_the_caller() -> None:
    writer = Recorder(fail_at=4)

    async def main() -> None:
        pipeline = HashWritePipeline(writer, hashlib.sha256(), budget=128 << 10)
        try:
            for parts in batches(50):
                await pipeline.feed(parts, sum(map(len, parts)))
            await pipeline.close()
        finally:
            await pipeline.abort()

    with pytest.raises(OSError, match="No space left"):
        run(main())
    assert len(writer.parts) == 4  # nothing written after the failure


def test_abort_stops_both_threads_before_returning() -> None:
    writer = Recorder(delay=0.01)

    async def main() -> None:
        pipeline = HashWritePipeline(writer, hashlib.sha256(), budget=1 << 30)
        for parts in batches(40):
            await pipeline.feed(parts, sum(map(len, parts)))
        await pipeline.abort()
        count = len(writer.parts)
        await asyncio.sleep(0.05)
        assert len(writer.parts) == count  # no lane is still writing
        assert count < 80  # queued batches were dropped, not worked through

    run(main())
    for _ in range(100):  # a lane's thread ends just after it reports being finished
        if not [t for t in threading.enumerate() if t.name.startswith("upload-")]:
            break
        threading.Event().wait(0.01)
    assert not [t for t in threading.enumerate() if t.name.startswith("upload-")]



class SlowHasher:
    """sha256 that takes its time, to show what waits for hashing and what does not."""

    def __init__(self, delay: float) -> None:
        self.inner = hashlib.sha256()
        self.delay = delay
        self.updates = 0

    def update(self, data: bytes) -> None:
        threading.Event().wait(self.delay)
        self.inner.update(data)
        self.updates += 1


def test_chunks_chain_their_hashing_in_order_without_waiting_for_it() -> None:
    """close_writes() returns once the bytes are written, before they are hashed; the next chunk's
    pipeline, given that hashing as `after`, hashes its bytes only when it is done."""
    first, second = batches(4), batches(3)
    writer, hasher = Recorder(), SlowHasher(0.02)

    async def main() -> None:
        one = HashWritePipeline(writer, hasher, budget=64 << 20)
        for parts in first:
            await one.feed(parts, sum(map(len, parts)))
        seen_by_then: list[int] = []
        result, pending = await one.close_writes(lambda: seen_by_then.append(len(writer.parts)) or "closed")
        assert result == "closed" and seen_by_then == [8]  # `then` ran after the last write...
        assert len(writer.parts) == 8  # written...
        assert not pending.done()  # ...while the hashing goes on
        two = HashWritePipeline(writer, hasher, budget=64 << 20, after=pending)
        for parts in second:
            await two.feed(parts, sum(map(len, parts)))
        await asyncio.wrap_future((await two.close_writes(lambda: None))[1])

    run(main())
    flat = [part for parts in first + second for part in parts]
    assert writer.parts == flat
    assert hasher.inner.hexdigest() == hashlib.sha256(b"".join(flat)).hexdigest()


def test_a_failing_then_is_raised_by_close_writes_and_a_failed_write_skips_it() -> None:
    async def main() -> None:
        one = HashWritePipeline(Recorder(), hashlib.sha256(), budget=64 << 20)
        await one.feed([b"a" * 10], 10)

        def boom() -> None:
            raise OSError("offset commit failed")

        with pytest.raises(OSError, match="offset commit failed"):
            await one.close_writes(boom)

        class FailingWriter(Recorder):
            def write(self, *parts: bytes) -> None:
                raise OSError("disk full")

        ran: list[bool] = []
        two = HashWritePipeline(FailingWriter(), hashlib.sha256(), budget=64 << 20)
        await two.feed([b"b" * 10], 10)
        with pytest.raises(OSError, match="disk full"):
            await two.close_writes(lambda: ran.append(True))
        assert ran == []  # the offset is never recorded for bytes that were not written

    run(main())


def test_a_failed_earlier_hashing_fails_the_next_chunk() -> None:
    async def main() -> None:
        failed: concurrent.futures.Future[None] = concurrent.futures.Future()
        failed.set_exception(MemoryError("earlier chunk"))
        pipeline = HashWritePipeline(Recorder(), hashlib.sha256(), after=failed)
        await pipeline.feed([b"x" * 100], 100)
        await pipeline.close()

    with pytest.raises(MemoryError, match="earlier chunk"):
        run(main())
