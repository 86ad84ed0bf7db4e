"""Usage metering: bytes pulled and pushed, storage over time, and the usage report built from them.

Transfer: the request path only adds to an in-process counter (a dict update under a lock),
keyed by hour, repository, principal, direction and network class. A background thread adds the
counters to the metadata store every few seconds and once more at shutdown; counts of several
worker processes or nodes add up. A crash loses at most the last interval.

Network class: a client address inside `same_region_networks` is "same_region" (free, as transfer
within an AWS region is); any other address, or one that cannot be parsed, is "internet".

Storage: the background job samples every repository's figures (at most one sample per hour and
repository is kept, and only when the figures changed). A sample stands for its whole hour and
holds until the next one; a month's GB-months integrate those samples over the month's whole
hours so far. The current hour counts once it is over, so two reports within an hour agree.

Deduplication: a blob linked by n repositories is billed 1/n to each of them (whole bytes, the
remainder to the lowest repository ids), so billed bytes add up to what the registry stores
once. Each repository also shows its shared bytes: the blob bytes it shares with another repository.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from cargohold.domain.cost import (
    DAY_MS,
    PROJECTION_WINDOW_MS,
    Prices,
    gb_months,
    hour_floor,
    month_bounds,
    month_of,
    next_month,
    project_month,
    recent_months,
    storage_cost,
    transfer_cost,
)
from cargohold.storage.meta.metering import MeteringStore, StorageFigures, StorageSample, TransferRow

log = logging.getLogger("cargohold.metering")

PULL, PUSH = "pull", "push"
SAME_REGION, INTERNET = "same_region", "internet"
DEFAULT_SAME_REGION_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                "fc00::/7")
MAX_MONTHS = 120
_CACHE_LIMIT = 10_000
_ZERO = StorageFigures(0, 0, 0)

CounterKey = tuple[int, str, str, str, str, str]  # hour, account, repository, principal, direction, network


class NetworkClassifier:
    """same_region or internet for a client address; results are cached per address."""

    def __init__(self, networks: Sequence[str] = DEFAULT_SAME_REGION_NETWORKS) -> None:
        self.networks = [ipaddress.ip_network(n.strip(), strict=False) for n in networks]
        self._cache: dict[str, str] = {}

    def _classify(self, address: str) -> str:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return INTERNET
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d
        return SAME_REGION if any(ip in net for net in self.networks) else INTERNET

    def __call__(self, address: str) -> str:
        found = self._cache.get(address)
        if found is None:
            found = self._classify(address)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[address] = found
        return found


class Metering:
    """In-process transfer counters, their periodic flush, and storage snapshots."""

    def __init__(self, store: MeteringStore, classify: NetworkClassifier, clock: Callable[[], float] = time.time,
                 *, flush_seconds: float = 5.0, snapshot_seconds: float = 900.0,
                 lock_path: Path | None = None) -> None:
        self.store = store
        self.classify = classify
        self.clock = clock
        self.flush_seconds = flush_seconds
        self.snapshot_seconds = snapshot_seconds
        self.lock_path = lock_path
        self._counts: dict[CounterKey, list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader: TextIO | None = None

    # -- the request path -------------------------------------------------------------------------

    def record(self, account_id: str, repository: str, principal_arn: str, source_ip: str, direction: str,
               nbytes: int) -> None:
        """Count nbytes moved for a request. Cheap: no I/O, one dict update."""
        if nbytes <= 0:
            return
        key = (hour_floor(int(self.clock() * 1000)), account_id, repository, principal_arn, direction,
               self.classify(source_ip))
        with self._lock:
            entry = self._counts.get(key)
            if entry is None:
                self._counts[key] = [nbytes, 1]
            else:
                entry[0] += nbytes
                entry[1] += 1
        if self._thread is None and self.flush_seconds > 0:
            self.start()

    def pending(self) -> int:
        with self._lock:
            return len(self._counts)

    def flush(self) -> int:
        """Add the counters to the store; returns the buckets written. On failure they are kept for later."""
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return 0
        rows = [TransferRow(*key, nbytes, requests) for key, (nbytes, requests) in counts.items()]
        try:
            self.store.add_transfer(rows)
        except Exception:
            log.exception("could not write %d usage counters; keeping them for the next flush", len(rows))
            with self._lock:
                for key, (nbytes, requests) in counts.items():
                    entry = self._counts.setdefault(key, [0, 0])
                    entry[0] += nbytes
                    entry[1] += requests
            return 0
        return len(rows)

    # -- storage ----------------------------------------------------------------------------------

    def snapshot(self, now_ms: int | None = None) -> int:
        """Sample every repository's storage for the current hour; returns the samples written (changes only)."""
        now = int(self.clock() * 1000) if now_ms is None else now_ms
        hour = hour_floor(now)
        current = self.store.storage_now()
        latest = self.store.latest_samples()
        changed: dict[tuple[str, str], StorageFigures] = {}
        for key, figures in current.items():
            previous = latest.get(key)
            if (previous.figures if previous else _ZERO) != figures:
                changed[key] = figures
        for key, previous in latest.items():
            if key not in current and previous.figures != _ZERO:
                changed[key] = _ZERO  # the repository is gone: it stores nothing from now on
        self.store.put_samples(hour, changed)
        return len(changed)

    # -- background thread ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or (self.flush_seconds <= 0 and self.snapshot_seconds <= 0):
                return
            self._thread = threading.Thread(target=self._loop, name="cargohold-metering", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is still counted."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()

    def _is_leader(self) -> bool:
        """One process per data directory takes snapshots: the one holding the lock (kept until exit)."""
        if self._leader is not None or self.lock_path is None:
            return True
        handle = open(self.lock_path, "a")  # noqa: SIM115 - held open for the life of the process
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._leader = handle
        return True

    def _loop(self) -> None:
        tick = min([t for t in (self.flush_seconds, self.snapshot_seconds) if t > 0] + [1.0])
        now = time.monotonic()
        next_flush = now + self.flush_seconds
        next_snapshot = now + tick  # a first sample soon after start
        while not self._stop.wait(tick):
            now = time.monotonic()
            if self.flush_seconds > 0 and now >= next_flush:
                next_flush = now + self.flush_seconds
                self.flush()
            if self.snapshot_seconds > 0 and now >= next_snapshot:
                next_snapshot = now + self.snapshot_seconds
                try:
                    if self._is_leader():
                        self.snapshot()
                except Exception:
                    log.exception("storage snapshot failed")


class UsageReports:
    """The usage document shared by `cargohold usage --format json` and GET /api/usage (docs/usage-api.md)."""

    def __init__(self, store: MeteringStore, prices: Prices, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.prices = prices
        self.clock = clock

    def report(self, account_id: str, months: int, now_ms: int | None = None) -> dict[str, Any]:
        if not 1 <= months <= MAX_MONTHS:
            raise ValueError(f"months must be between 1 and {MAX_MONTHS}")
        now = int(self.clock() * 1000) if now_ms is None else now_ms
        month_list = recent_months(now, months)
        start = month_bounds(month_list[0])[0]
        end = month_bounds(month_list[-1])[1]
        settled = hour_floor(now)  # storage counts whole hours that are over
        samples = self.store.samples(account_id, start, end)
        live = {name: fig for (account, name), fig in self.store.storage_now().items() if account == account_id}
        window_start = hour_floor(now - PROJECTION_WINDOW_MS)
        rows = self.store.transfer(account_id, min(start, window_start), end)

        out_months = [self._month(month, samples, live, rows, settled, current=month == month_of(now))
                      for month in month_list]
        principals: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.hour < start:
                continue
            entry = principals.setdefault(row.principal_arn, {"principal": row.principal_arn, "pull_bytes": 0,
                                                              "push_bytes": 0, "pull_bytes_internet": 0})
            if row.direction == PULL:
                entry["pull_bytes"] += row.bytes
                if row.network == INTERNET:
                    entry["pull_bytes_internet"] += row.bytes
            else:
                entry["push_bytes"] += row.bytes

        recent = [r for r in rows if r.hour >= window_start]
        internet = sum(r.bytes for r in recent if r.direction == PULL and r.network == INTERNET)
        first = min((r.hour for r in recent), default=now)
        window = max(now - max(window_start, first), DAY_MS)  # never extrapolate from less than a day
        upcoming = next_month(month_of(now))
        projected = project_month(upcoming, sum(f.billed_bytes for f in live.values()), internet, window,
                                  self.prices)
        return {
            "account_id": account_id,
            "currency": "USD",
            "prices": {"storage_gb_month": self.prices.storage_gb_month,
                       "transfer_internet_gb": self.prices.transfer_internet_gb},
            "months": out_months,
            "principals": sorted(principals.values(),
                                 key=lambda p: (-(p["pull_bytes"] + p["push_bytes"]), p["principal"])),
            "projection": {"month": upcoming, "total_cost": projected},
        }

    def _month(self, month: str, samples: dict[str, list[StorageSample]], live: dict[str, StorageFigures],
               rows: list[TransferRow], settled: int, *, current: bool) -> dict[str, Any]:
        start, end = month_bounds(month)
        repos: dict[str, dict[str, Any]] = defaultdict(_empty_line)
        for name, series in samples.items():
            steps = [(s.hour, s.figures.billed_bytes) for s in series]
            line = repos[name]
            line["storage_gb_months"] = gb_months(steps, month, settled)
            if not current:  # a past month shows the figures in force at its end
                at_end = [s.figures for s in series if s.hour < end]
                figures = at_end[-1] if at_end else _ZERO
                line["storage_bytes_now"] = figures.billed_bytes
                line["shared_bytes"] = figures.shared_bytes
        if current:
            for name, figures in live.items():
                line = repos[name]
                line["storage_bytes_now"] = figures.billed_bytes
                line["shared_bytes"] = figures.shared_bytes
        for row in rows:
            if not start <= row.hour < end:
                continue
            line = repos[row.repository]
            if row.direction == PUSH:
                line["push_bytes"] += row.bytes
            elif row.network == INTERNET:
                line["pull_bytes_internet"] += row.bytes
            else:
                line["pull_bytes_same_region"] += row.bytes
        lines = []
        for name in sorted(repos):
            line = repos[name]
            if not any(line[k] for k in line):
                continue  # nothing stored, shared or moved this month
            line["storage_cost"] = storage_cost(line["storage_gb_months"], self.prices)
            line["transfer_cost"] = transfer_cost(line["pull_bytes_internet"], self.prices)
            line["total_cost"] = line["storage_cost"] + line["transfer_cost"]
            lines.append(ordered_line({"repository": name, **line}))
        totals = _empty_line()
        totals.update({"storage_cost": 0.0, "transfer_cost": 0.0, "total_cost": 0.0})
        for line in lines:
            for key in totals:
                totals[key] += line[key]
        return {"month": month, "repositories": lines, "totals": ordered_line(totals)}


def _empty_line() -> dict[str, Any]:
    return {"storage_gb_months": 0.0, "storage_bytes_now": 0, "shared_bytes": 0, "pull_bytes_same_region": 0,
            "pull_bytes_internet": 0, "push_bytes": 0}


LINE_KEYS = ("storage_gb_months", "storage_bytes_now", "shared_bytes", "storage_cost", "pull_bytes_same_region",
             "pull_bytes_internet", "push_bytes", "transfer_cost", "total_cost")


def ordered_line(line: dict[str, Any]) -> dict[str, Any]:
    """A repository line or totals in the documented key order."""
    head = {"repository": line["repository"]} if "repository" in line else {}
    return {**head, **{k: line[k] for k in LINE_KEYS}}
