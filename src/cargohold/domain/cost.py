"""Cost arithmetic: calendar months, byte-time integration into GB-months, prices, projections.

Pure and clock-free: every function is given the instants it needs (UTC, integer milliseconds).

Units follow AWS billing: a GB is 2**30 bytes, and a GB-month is one GB stored for a whole
calendar month, whatever its length (S3 and ECR prorate by the hours of that month), so
100 GB kept for 15 days of a 30-day month is 50 GB-months.

Storage is known from samples: (instant, bytes) pairs, each holding until the next one
(a step function). Before the first sample nothing is stored.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cargohold.errors import Kind, RegistryError

GB = 1 << 30  # AWS bills GB of 2**30 bytes
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
PROJECTION_WINDOW_MS = 30 * DAY_MS  # the recent past a projection extrapolates from

# ECR's published prices (us-east-1): storage per GB-month, data transfer out to the internet per GB.
# Transfer within the region and data in (pushes) are free.
DEFAULT_STORAGE_GB_MONTH = 0.10
DEFAULT_TRANSFER_INTERNET_GB = 0.09


@dataclass(frozen=True)
class Prices:
    storage_gb_month: float = DEFAULT_STORAGE_GB_MONTH
    transfer_internet_gb: float = DEFAULT_TRANSFER_INTERNET_GB

    def __post_init__(self) -> None:
        if self.storage_gb_month < 0 or self.transfer_internet_gb < 0:
            raise ValueError("prices cannot be negative")


# -- calendar -------------------------------------------------------------------------------------

def _utc(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)


def _ms(when: datetime.datetime) -> int:
    return int(when.timestamp()) * 1000


def hour_floor(ms: int) -> int:
    """The start of the hour holding the instant."""
    return ms - ms % HOUR_MS


def month_of(ms: int) -> str:
    """The calendar month (UTC) holding the instant, as YYYY-MM."""
    return _utc(ms).strftime("%Y-%m")


def parse_month(month: str) -> tuple[int, int]:
    try:
        year, mon = month.split("-")
        parsed = int(year), int(mon)
    except ValueError:
        raise RegistryError(Kind.INVALID_PARAMETER, f"invalid month {month[:20]!r} (YYYY-MM)") from None
    if len(year) != 4 or not 1 <= parsed[1] <= 12:
        raise RegistryError(Kind.INVALID_PARAMETER, f"invalid month {month[:20]!r} (YYYY-MM)")
    return parsed


def month_bounds(month: str) -> tuple[int, int]:
    """[start, end) of a month in milliseconds."""
    year, mon = parse_month(month)
    start = datetime.datetime(year, mon, 1, tzinfo=datetime.UTC)
    end = datetime.datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=datetime.UTC)
    return _ms(start), _ms(end)


def month_ms(month: str) -> int:
    start, end = month_bounds(month)
    return end - start


def next_month(month: str) -> str:
    year, mon = parse_month(month)
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def previous_month(month: str) -> str:
    year, mon = parse_month(month)
    return f"{year - 1:04d}-12" if mon == 1 else f"{year:04d}-{mon - 1:02d}"


def recent_months(now_ms: int, count: int) -> list[str]:
    """The `count` months ending with the one holding now, oldest first."""
    months = [month_of(now_ms)]
    while len(months) < count:
        months.append(previous_month(months[-1]))
    return months[::-1]


# -- integration ----------------------------------------------------------------------------------

def byte_ms(samples: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """The integral of stored bytes over [start, end), in byte-milliseconds (exact).

    samples: (instant, bytes) sorted by instant; each value holds until the next sample.
    """
    if end <= start:
        return 0
    total = 0
    for i, (at, value) in enumerate(samples):
        until = samples[i + 1][0] if i + 1 < len(samples) else end
        lo, hi = max(at, start), min(until, end)
        if hi > lo:
            total += value * (hi - lo)
    return total


def value_at(samples: Sequence[tuple[int, int]], instant: int) -> int:
    """The bytes in force just before `instant` (0 before the first sample)."""
    value = 0
    for at, bytes_ in samples:
        if at >= instant:
            break
        value = bytes_
    return value


def gb_months(samples: Sequence[tuple[int, int]], month: str, until: int) -> float:
    """GB-months stored in `month`, counting time up to `until` (e.g. the last whole hour)."""
    start, end = month_bounds(month)
    return byte_ms(samples, start, min(end, until)) / (GB * (end - start))


# -- prices ---------------------------------------------------------------------------------------

def storage_cost(gb_month: float, prices: Prices) -> float:
    return gb_month * prices.storage_gb_month


def transfer_cost(internet_bytes: int, prices: Prices) -> float:
    """Data out to the internet; same-region transfer and pushes are free (flat rate, no tiers)."""
    return internet_bytes / GB * prices.transfer_internet_gb


def project_month(month: str, storage_bytes: int, internet_bytes: int, window_ms: int, prices: Prices) -> float:
    """What `month` costs if storage stays at `storage_bytes` and internet pulls keep their recent rate.

    internet_bytes were pulled over the last window_ms; they are scaled to the month's length.
    """
    length = month_ms(month)
    storage = storage_cost(storage_bytes / GB, prices)  # kept for the whole month: bytes/GB GB-months
    transfer = 0.0
    if window_ms > 0 and internet_bytes > 0:
        transfer = transfer_cost(round(internet_bytes * length / window_ms), prices)
    return storage + transfer


def split_evenly(size: int, holders: int) -> list[int]:
    """Divide size bytes among holders in whole bytes, the remainder to the first ones (sums to size)."""
    if holders <= 0:
        return []
    share, rest = divmod(size, holders)
    return [share + (1 if i < rest else 0) for i in range(holders)]
