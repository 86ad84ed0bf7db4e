"""The pure cost arithmetic: calendar months, byte-time integration, prices, projections."""

from __future__ import annotations

import pytest

from cargohold.domain.cost import (
    GB,
    HOUR_MS,
    Prices,
    byte_ms,
    gb_months,
    month_bounds,
    month_ms,
    next_month,
    project_month,
    recent_months,
    split_evenly,
    storage_cost,
    transfer_cost,
    value_at,
)
from cargohold.errors import RegistryError
from tests.usage.conftest import ms


def test_calendar() -> None:
    assert month_bounds("2024-02") == (ms("2024-02-01T00:00"), ms("2024-03-01T00:00"))
    assert month_ms("2024-02") == 29 * 24 * HOUR_MS  # a leap year
    assert month_ms("2023-02") == 28 * 24 * HOUR_MS
    assert month_bounds("2024-12")[1] == ms("2025-01-01T00:00")
    assert next_month("2024-12") == "2025-01"
    assert recent_months(ms("2024-02-10T12:00"), 4) == ["2023-11", "2023-12", "2024-01", "2024-02"]
    for bad in ("2024-13", "24-01", "abc", "2024-1-1"):
        with pytest.raises(RegistryError):
            month_bounds(bad)


def test_step_integration() -> None:
    samples = [(10, 100), (20, 0), (30, 50)]  # 100 bytes during [10, 20), none during [20, 30), then 50
    assert byte_ms(samples, 0, 40) == 100 * 10 + 50 * 10
    assert byte_ms(samples, 15, 35) == 100 * 5 + 50 * 5
    assert byte_ms(samples, 35, 35) == 0
    assert value_at(samples, 10) == 0 and value_at(samples, 11) == 100 and value_at(samples, 40) == 50


def test_gb_months_are_prorated_by_the_hours_of_the_month() -> None:
    # 100 GB for the first 15 days of a 30-day month: 50 GB-months (AWS's own example).
    samples = [(ms("2024-04-01T00:00"), 100 * GB), (ms("2024-04-16T00:00"), 0)]
    assert gb_months(samples, "2024-04", ms("2024-05-01T00:00")) == pytest.approx(50.0)
    # Time is counted only up to `until`: a third of the way through the month.
    assert gb_months([(ms("2024-04-01T00:00"), 3 * GB)], "2024-04", ms("2024-04-11T00:00")) == pytest.approx(1.0)
    # A sample from before the month carries into it; the month is cut at its end.
    assert gb_months([(ms("2024-01-05T00:00"), GB)], "2024-02", ms("2024-06-01T00:00")) == pytest.approx(1.0)


def test_prices_and_projection() -> None:
    prices = Prices()
    assert (prices.storage_gb_month, prices.transfer_internet_gb) == (0.10, 0.09)  # ECR's published prices
    assert storage_cost(2.5, prices) == pytest.approx(0.25)
    assert transfer_cost(10 * GB, prices) == pytest.approx(0.9)
    # 4 GB stored all month, and 1 GB pulled from the internet in the last 7.75 days of a 31-day window.
    window = 31 * 24 * HOUR_MS // 4
    assert project_month("2024-05", 4 * GB, GB, window, prices) == pytest.approx(0.4 + 4 * 0.09)
    assert project_month("2024-05", 0, GB, 0, prices) == 0.0
    with pytest.raises(ValueError):
        Prices(-1, 0)


def test_split_evenly_sums_to_the_size() -> None:
    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(9, 3) == [3, 3, 3]
    assert split_evenly(1, 4) == [1, 0, 0, 0]
    assert split_evenly(5, 0) == []
    for size in range(0, 50):
        for n in range(1, 7):
            assert sum(split_evenly(size, n)) == size
