"""Deleting large files off the request path.

Freeing a file's blocks happens when its last link and last descriptor are gone, and it is not
cheap: on this project's machines (ext4 mounted with `discard`) dropping a 512 MiB staging file
waits ~130 ms for the disk. When that last close was the upload's hold, closed on the event loop,
every request of the worker stalled for that long, and a push of a blob that was already stored
answered 130-180 ms late (docs/benchmarks.md, session 4).

So unwanted files are first renamed into a directory of their own (cheap, atomic) and a thread
deletes them. It takes each file's flock before unlinking it, which waits until whoever still
holds the file (an upload's hold, in any process) lets go: the freeing then happens on this
thread, never in a request. What a crash leaves in the directory is deleted at the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import threading
from pathlib import Path

INLINE_MAX = 1 << 20


class Reaper:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def take(self, path: Path, name: str) -> bool:
        """Delete `path`: at once when it is small, else moved into the folder as `name` and
        deleted in the background. False when there was no such file."""
        target = self.folder / name
        try:
            if os.stat(path).st_size < INLINE_MAX:
                os.unlink(path)  # a few blocks: no stall worth a thread, and nothing left behind
                return True
            os.replace(path, target)
        except FileNotFoundError:
            return False
        self._put(str(target))
        return True

    def sweep(self) -> None:
        """Queue whatever is in the folder (left by a crash, or by another process that stopped)."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                self._put(entry.path)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is deleted; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def _put(self, path: str) -> None:
        with self._lock:
            self._pending += 1
            self._queue.put(path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="blob-reaper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                path = self._queue.get(timeout=5.0)
            except queue.Empty:
                with self._lock:  # ends only when nothing was queued meanwhile (_put holds the lock)
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                delete(path)
            except OSError:
                pass  # left for the next start's sweep
            finally:
                with self._lock:
                    self._pending -= 1
                    self._lock.notify_all()


STEP = 32 << 20


def delete(path: str, step: int = STEP) -> None:
    """Unlink `path` once nobody holds its flock, freeing its blocks from the end a step at a
    time: one discard of the whole file held up every other write to the disk (a SQLite commit
    waited ~100 ms behind 512 MiB), a step of 32 MiB holds them up a few milliseconds."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return  # another process's reaper took it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for a request still holding the upload
        size = os.fstat(fd).st_size
        while size > step:
            size -= step
            os.ftruncate(fd, size)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    finally:
        os.close(fd)
