"""Blob upload sessions: streamed to a staging area, hashed on the fly, committed durably.

The session (repository, offset) lives in the metadata store, so any worker process or node
can take the next request and a restart can resume. The running hash is kept in-process as a
cache keyed by offset; a worker that lacks it re-hashes the staged bytes once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

from anyio import to_thread

from cargohold.domain.digests import algorithm_of, new_hasher, parse_digest
from cargohold.errors import Kind, RegistryError
from cargohold.services.repositories import Caller, Repositories
from cargohold.services.upload_pipeline import HashWritePipeline
from cargohold.storage.blobs.base import BlobStore, UploadBusy, UploadLock, UploadWriter
from cargohold.storage.meta.store import MetadataStore

_UPLOAD_ID_RE = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")
_BATCH = 4 << 20  # bytes handed to the hashing and writing threads at a time
_CACHE_LIMIT = 1024

T = TypeVar("T")

PUSH_ACTIONS = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload")


async def _run(func: Callable[..., T], *args: Any) -> T:
    return await to_thread.run_sync(func, *args)


def _failed(hashing: Future[None] | None) -> bool:
    return hashing is not None and hashing.done() and hashing.exception() is not None


def _sink_then(writer: UploadWriter, hasher: Any, parts: list[bytes], then: Callable[[], T]) -> T:
    if parts:
        writer.write(*parts)
        for part in parts:
            hasher.update(part)
    return then()


_Begun = tuple[Any, Future[None] | None, UploadWriter]  # running hash, its hashing still under way, staging file


class _Held(NamedTuple):
    repo_id: int
    hold: UploadLock
    offset: int
    begun: _Begun | None


class Uploads:
    def __init__(self, meta: MetadataStore, blobs: BlobStore, repos: Repositories) -> None:
        self.meta = meta
        self.blobs = blobs
        self.repos = repos
        # upload id -> (offset, hasher, hashing still running on it or None), for the next chunk
        self._hashers: dict[str, tuple[int, Any, Future[None] | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _unknown(self) -> RegistryError:
        return RegistryError(Kind.BLOB_UPLOAD_UNKNOWN, "blob upload unknown to registry")

    # -- sync parts -------------------------------------------------------------------------

    def start(self, caller: Caller, name: str) -> str:
        repo = self.repos.resolve(caller, name, "ecr:InitiateLayerUpload", create=True)
        upload_id = str(uuid.uuid4())  # ECR's uploadId pattern is a dashed UUID
        # Row first: the garbage collector takes a staging file without a row for a stray.
        self.meta.create_upload(upload_id, repo.id, self.repos.now_ms())
        self.blobs.start_upload(upload_id)
        return upload_id

    def mount(self, caller: Caller, name: str, digest: str, source: str) -> int | None:
        """Link a blob from another repository; the blob size when mounted, None otherwise."""
        parse_digest(digest)
        repo = self.repos.resolve(caller, name, "ecr:InitiateLayerUpload", create=True)
        try:
            src = self.repos.resolve(caller, source, "ecr:GetDownloadUrlForLayer")
        except RegistryError:
            return None  # unreadable or unknown source: fall back to a normal upload
        return self.meta.mount_blob(src.id, repo.id, digest, self.repos.now_ms())

    def _session(self, caller: Caller, name: str, upload_id: str, action: str) -> tuple[int, int]:
        repo = self.repos.resolve(caller, name, action)
        if not _UPLOAD_ID_RE.fullmatch(upload_id):
            raise self._unknown()
        found = self.meta.get_upload(upload_id)
        if found is None or found[0] != repo.id:
            raise self._unknown()
        return found

    def status(self, caller: Caller, name: str, upload_id: str) -> int:
        return self._session(caller, name, upload_id, "ecr:UploadLayerPart")[1]

    def cancel(self, caller: Caller, name: str, upload_id: str) -> None:
        self._session(caller, name, upload_id, "ecr:UploadLayerPart")
        self.meta.delete_upload(upload_id)
        self.blobs.abort(upload_id)
        self._hashers.pop(upload_id, None)

    def _hasher_at(self, upload_id: str, offset: int) -> tuple[Any, Future[None] | None]:
        """The running hash at offset (and the hashing still finishing on it), or a new one over
        the staged bytes when this process has none: another worker took the earlier chunks."""
        cached = self._hashers.pop(upload_id, None)
        if cached is not None and cached[0] == offset and not _failed(cached[2]):
            return cached[1], cached[2]
        if cached is not None and cached[2] is not None:
            with contextlib.suppress(Exception):
                cached[2].result()  # let it stop touching the staged bytes' old hash first
        hasher = new_hasher("sha256")
        remaining = offset
        for chunk in self.blobs.read_upload(upload_id):
            piece = chunk[:remaining]
            hasher.update(piece)
            remaining -= len(piece)
            if remaining <= 0:
                break
        if remaining > 0:
            raise RegistryError(Kind.BLOB_UPLOAD_INVALID, "staged data is shorter than the session offset")
        return hasher, None

    # -- streaming --------------------------------------------------------------------------

    async def _stream(self, writer: UploadWriter, body: AsyncIterator[bytes], hasher: Any,
                      after: Future[None] | None, finish: Callable[[int], T],
                      expected: int | None = None) -> tuple[T, Future[None] | None]:
        """Append body through writer. Large bodies are hashed and written on two threads while
        the next bytes arrive; a small one is handled in one go. Once every byte is staged (and
        the length is what `expected` says), `finish(bytes written)` runs on the thread that wrote
        the last of them. Returns its result and the hashing still running on `hasher`, if any
        (`after`: the same for the previous chunk)."""
        pipeline: HashWritePipeline | None = None
        parts: list[bytes] = []
        size = written = 0
        try:
            async for chunk in body:
                if not chunk:
                    continue
                parts.append(chunk)
                size += len(chunk)
                if size >= _BATCH:
                    pipeline = pipeline or HashWritePipeline(writer, hasher, after=after)
                    await pipeline.feed(parts, size)
                    written += size
                    parts, size = [], 0
            total = written + size
            if expected is not None and expected != total:
                raise RegistryError(Kind.RANGE_INVALID, "chunk length does not match Content-Range")
            if pipeline is not None:
                if parts:
                    await pipeline.feed(parts, size)
                done, pipeline = pipeline, None
                return await done.close_writes(lambda: finish(total))
            if after is not None:
                await asyncio.wrap_future(after)
            return await _run(_sink_then, writer, hasher, parts, lambda: finish(total)), None
        finally:
            if pipeline is not None:
                await pipeline.abort()

    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            if len(self._locks) > _CACHE_LIMIT:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    def _hold(self, caller: Caller, name: str, upload_id: str, action: str, digest: str | None = None,
              content_range: tuple[int, int] | None = None, begin: bool = False) -> _Held:
        """Check the session (and the digest to complete it with), then hold the upload against
        requests in other worker processes (the asyncio lock only covers this one) and read its
        offset; with `begin`, also check where the chunk starts and open the staging file there
        with the running hash. One thread hop for all of it: each hop cost ~1 ms while another
        chunk was being hashed, several per PATCH.

        Without the hold two workers could write the same staged bytes at once: the one that loses
        the offset compare-and-set has still overwritten the winner's bytes, and the winner's cached
        hash would then commit a blob whose content does not match its digest."""
        repo_id, _ = self._session(caller, name, upload_id, action)
        if digest is not None:
            parse_digest(digest)
        try:
            hold = self.blobs.lock_upload(upload_id)
        except FileNotFoundError:
            raise self._unknown() from None
        except UploadBusy:
            found = self.meta.get_upload(upload_id)
            raise RegistryError(Kind.RANGE_INVALID, "a concurrent request is writing this upload",
                                headers=range_headers(found[1] if found else 0)) from None
        try:
            found = self.meta.get_upload(upload_id)
            if found is None:
                raise self._unknown()
            offset = found[1]
            begun = self._begin_append(upload_id, offset, content_range) if begin else None
        except BaseException:
            hold.close()
            raise
        return _Held(repo_id, hold, offset, begun)

    @contextlib.asynccontextmanager
    async def _exclusive(self, caller: Caller, name: str, upload_id: str, action: str,
                         digest: str | None = None, content_range: tuple[int, int] | None = None,
                         begin: bool = False) -> AsyncIterator[_Held]:
        """The upload held (see _hold) while the body runs."""
        held = await _run(self._hold, caller, name, upload_id, action, digest, content_range, begin)
        try:
            yield held
        finally:
            held.hold.close()

    async def append(self, caller: Caller, name: str, upload_id: str, body: AsyncIterator[bytes],
                     content_range: tuple[int, int] | None = None) -> int:
        """PATCH: append a chunk; returns the new offset. Out-of-order chunks raise 416."""
        async with self._lock(upload_id), self._exclusive(caller, name, upload_id, "ecr:UploadLayerPart",
                                                          content_range=content_range, begin=True) as held:
            return await self._append_locked(upload_id, held.offset, body, content_range, held.begun)

    async def _append_locked(self, upload_id: str, offset: int, body: AsyncIterator[bytes],
                             content_range: tuple[int, int] | None, begun: _Begun | None = None) -> int:
        if begun is None:
            begun = await _run(self._begin_append, upload_id, offset, content_range)
        hasher, after, writer = begun
        expected = None if content_range is None else content_range[1] - content_range[0] + 1
        closed = False
        try:
            try:
                (moved, new_offset), hashing = await self._stream(
                    writer, body, hasher, after,
                    lambda written: (self._close_and_advance(writer, upload_id, offset, offset + written),
                                     offset + written),
                    expected)
                closed = True
            except RegistryError as err:
                self._hashers.pop(upload_id, None)
                if err.kind is Kind.RANGE_INVALID and not err.headers:
                    err.headers = range_headers(offset)  # the length check in _stream knows no offset
                raise
            except BaseException:
                self._hashers.pop(upload_id, None)
                raise
        finally:
            if not closed:
                await _run(writer.close)
        if not moved:
            raise RegistryError(Kind.RANGE_INVALID, "a concurrent request changed this upload",
                                headers=range_headers(offset))
        if len(self._hashers) >= _CACHE_LIMIT:
            self._hashers.clear()
        self._hashers[upload_id] = (new_offset, hasher, hashing)
        return new_offset

    def _begin_append(self, upload_id: str, offset: int, content_range: tuple[int, int] | None) -> _Begun:
        """The running hash at offset and the staging file opened there."""
        if content_range is not None and content_range[0] != offset:
            raise RegistryError(Kind.RANGE_INVALID, f"chunk starts at {content_range[0]}, expected {offset}",
                                headers=range_headers(offset))
        hasher, after = self._hasher_at(upload_id, offset)
        return hasher, after, self.blobs.upload_writer(upload_id, offset)

    def _close_and_advance(self, writer: UploadWriter, upload_id: str, offset: int, new_offset: int) -> bool:
        writer.close()
        return self.meta.advance_upload(upload_id, offset, new_offset, self.repos.now_ms())

    async def complete(self, caller: Caller, name: str, upload_id: str, digest: str,
                       body: AsyncIterator[bytes] | None,
                       content_range: tuple[int, int] | None = None) -> int:
        """PUT: optional last chunk, then verify the digest and commit. Returns the blob size."""
        async with self._lock(upload_id), self._exclusive(caller, name, upload_id, "ecr:CompleteLayerUpload",
                                                          digest, content_range, begin=body is not None) as held:
            offset = held.offset
            if body is not None:
                offset = await self._append_locked(upload_id, offset, body, content_range, held.begun)
            return await self._finish(upload_id, held.repo_id, digest, offset)

    async def _finish(self, upload_id: str, repo_id: int, digest: str, size: int) -> int:
        cached = self._hashers.pop(upload_id, None)
        if cached is not None and cached[2] is not None:
            await asyncio.gather(asyncio.wrap_future(cached[2]), return_exceptions=True)
        if algorithm_of(digest) == "sha256" and cached is not None and cached[0] == size \
                and not _failed(cached[2]):
            actual = "sha256:" + cached[1].hexdigest()
        else:
            actual = await _run(self._rehash, upload_id, algorithm_of(digest))
        if actual != digest:
            await _run(self._discard, upload_id)
            raise RegistryError(Kind.DIGEST_INVALID,
                                f"provided digest {digest} did not match uploaded content {actual}")
        await _run(self._commit, upload_id, repo_id, digest, size)
        return size

    def _commit(self, upload_id: str, repo_id: int, digest: str, size: int) -> None:
        """Make the staged bytes durable, place them and record the blob, in one thread hop."""
        self.blobs.prepare(upload_id)  # fsync outside the metadata write lock
        self.meta.commit_blob(repo_id, digest, size, self.repos.now_ms(),
                              lambda: self.blobs.place(upload_id, digest))
        self.meta.delete_upload(upload_id)

    def _rehash(self, upload_id: str, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        for chunk in self.blobs.read_upload(upload_id):
            hasher.update(chunk)
        return f"{algorithm}:{hasher.hexdigest()}"

    def _discard(self, upload_id: str) -> None:
        self.meta.delete_upload(upload_id)
        self.blobs.abort(upload_id)

    async def monolithic(self, caller: Caller, name: str, digest: str, body: AsyncIterator[bytes]) -> int:
        """POST with ?digest=: the whole blob in one request."""
        parse_digest(digest)
        upload_id = await _run(self.start, caller, name)
        async with self._lock(upload_id):
            repo_id = (await _run(self.meta.get_upload, upload_id) or (0, 0))[0]
            try:
                offset = await self._append_locked(upload_id, 0, body, None)
            except BaseException:  # nobody can resume a session they never saw: drop it now
                await asyncio.shield(_run(self._discard, upload_id))
                raise
            return await self._finish(upload_id, repo_id, digest, offset)


def range_headers(offset: int) -> dict[str, str]:
    return {"Range": f"0-{max(offset - 1, 0)}"}
