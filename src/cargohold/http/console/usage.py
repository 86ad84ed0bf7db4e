"""Usage and cost for the console: the usage API's report (GET /api/usage?months=N), as charts.

The console is a client of that API like any other: it asks the application in process, with
the session's own token as a Bearer credential and the browser's address, so the API's policy
decision is the person's. When the server has no such endpoint (404) or it fails, the console
falls back to the storage snapshot of services/usage.py and says that cost history is missing.

Contract (docs/usage-api.md): {"account_id", "currency", "prices": {"storage_gb_month",
"transfer_internet_gb"}, "months": [{"month": "YYYY-MM", "repositories": [{"repository",
"storage_gb_months", "storage_bytes_now", "shared_bytes", "storage_cost", "pull_bytes_same_region",
"pull_bytes_internet", "push_bytes", "transfer_cost", "total_cost"}], "totals": {...}}],
"principals": [...], "projection": {"month", "total_cost"}}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.types import ASGIApp, Message

from cargohold.http.console.charts import Chart, Series, bar_chart, hbar_chart, line_chart
from cargohold.http.console.views import human_bytes, money

USAGE_PATH = "/api/usage"
REPOSITORY_FIELDS = ("storage_gb_months", "storage_bytes_now", "shared_bytes", "storage_cost",
                     "pull_bytes_same_region", "pull_bytes_internet", "push_bytes", "transfer_cost", "total_cost")
MAX_BODY = 8 * 1024 * 1024


@dataclass
class UsageResult:
    report: dict[str, Any] | None = None
    error: str | None = None  # why there is no report: missing endpoint, denied, failure

    @property
    def available(self) -> bool:
        return self.report is not None


class UsageSource(Protocol):
    async def fetch(self, request: Request, session_token: str, months: int) -> UsageResult: ...


class InProcessUsageApi:
    """Calls the application's own GET /api/usage without a network hop."""

    def __init__(self, app: ASGIApp, path: str = USAGE_PATH) -> None:
        self.app = app
        self.path = path

    async def fetch(self, request: Request, session_token: str, months: int) -> UsageResult:
        outer = request.scope
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "GET", "scheme": outer.get("scheme", "http"), "path": self.path,
            "raw_path": self.path.encode(), "root_path": "", "query_string": f"months={months}".encode(),
            "headers": [(b"host", request.headers.get("host", "localhost").encode()),
                        (b"accept", b"application/json"),
                        (b"authorization", f"Bearer {session_token}".encode())],
            "client": outer.get("client"), "server": outer.get("server"), "extensions": {},
        }
        status = 0
        chunks: list[bytes] = []
        size = 0
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                size += len(body)
                if size <= MAX_BODY:
                    chunks.append(body)

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # the console page must render whatever the API does
            return UsageResult(error=f"the usage API failed: {type(exc).__name__}")
        body = b"".join(chunks)
        if status == 404:
            return UsageResult(error="this server has no usage metering (GET /api/usage) yet")
        if status != 200:
            return UsageResult(error=_error_text(status, body))
        try:
            report = json.loads(body)
        except ValueError:
            return UsageResult(error="the usage API answered with something that is not JSON")
        if not isinstance(report, dict) or not isinstance(report.get("months"), list):
            return UsageResult(error="the usage API answered in an unexpected shape")
        return UsageResult(report=report)


def _error_text(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    message = None
    if isinstance(doc, dict):
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message")
        message = message or doc.get("message") or doc.get("error")
    return str(message) if message else f"the usage API answered HTTP {status}"


# -- from the report to what the page shows ---------------------------------------------------------

def _f(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


@dataclass
class MonthRow:
    month: str
    totals: dict[str, float]
    repositories: dict[str, dict[str, float]]


@dataclass
class UsageView:
    currency: str
    prices: dict[str, float]
    months: list[MonthRow]
    projection: dict[str, Any] | None
    principals: list[dict[str, Any]] = field(default_factory=list)

    def money(self, value: float | None) -> str:
        return money(value, self.currency)

    @property
    def latest(self) -> MonthRow | None:
        return self.months[-1] if self.months else None

    def repository_costs(self) -> dict[str, float]:
        """Total cost per repository over the whole period."""
        out: dict[str, float] = {}
        for m in self.months:
            for name, values in m.repositories.items():
                out[name] = out.get(name, 0.0) + values.get("total_cost", 0.0)
        return out

    def principal_columns(self) -> list[str]:
        columns: list[str] = []
        for row in self.principals:
            columns.extend(k for k in row if k not in columns)
        return columns


def usage_view(report: dict[str, Any]) -> UsageView:
    months: list[MonthRow] = []
    for entry in report.get("months") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("month"), str):
            continue
        repos: dict[str, dict[str, float]] = {}
        for r in entry.get("repositories") or []:
            if isinstance(r, dict) and isinstance(r.get("repository"), str):
                repos[r["repository"]] = {k: _f(r.get(k)) for k in REPOSITORY_FIELDS}
        raw_totals = entry.get("totals") if isinstance(entry.get("totals"), dict) else {}
        assert isinstance(raw_totals, dict)
        totals = {k: _f(raw_totals[k]) if k in raw_totals else sum(v[k] for v in repos.values())
                  for k in REPOSITORY_FIELDS}
        months.append(MonthRow(entry["month"], totals, repos))
    months.sort(key=lambda m: m.month)
    prices_raw = report.get("prices") if isinstance(report.get("prices"), dict) else {}
    assert isinstance(prices_raw, dict)
    projection = report.get("projection") if isinstance(report.get("projection"), dict) else None
    principals = [p for p in report.get("principals") or [] if isinstance(p, dict)]
    return UsageView(str(report.get("currency") or "USD"), {k: _f(v) for k, v in prices_raw.items()},
                     months, projection, principals)


def gb(value: float) -> str:
    return f"{value:,.3f} GB-mo" if value < 10 else f"{value:,.1f} GB-mo"


def byte_axis(value: float) -> str:
    return human_bytes(value)


def usage_charts(view: UsageView) -> list[Chart]:
    """Storage GB-months per month, cost per month (with the projection), cost per repository,
    and pull/push bytes per month."""
    labels = [m.month for m in view.months]
    charts = [bar_chart("storage-gb-months", "Storage per month (GB-months)", labels,
                        [Series("Storage", [m.totals["storage_gb_months"] for m in view.months])], fmt=gb)]
    cost_series = [Series("Storage cost", [m.totals["storage_cost"] for m in view.months]),
                   Series("Transfer cost", [m.totals["transfer_cost"] for m in view.months])]
    charts.append(bar_chart("cost-per-month", "Cost per month", labels, cost_series, fmt=view.money, stacked=True))
    if view.projection and isinstance(view.projection.get("month"), str):
        proj_month = str(view.projection["month"])
        line_labels = labels + ([proj_month] if proj_month not in labels else [])
        actual: list[float | None] = [m.totals["total_cost"] for m in view.months]
        actual += [None] * (len(line_labels) - len(actual))
        projected: list[float | None] = [None] * len(line_labels)
        if len(labels) and proj_month != labels[-1]:
            projected[len(labels) - 1] = actual[len(labels) - 1]
        projected[line_labels.index(proj_month)] = _f(view.projection.get("total_cost"))
        charts.append(line_chart("cost-trend", "Total cost and projection", line_labels,
                                 [Series("Actual", actual), Series("Projected", projected)], fmt=view.money))
    charts.append(hbar_chart("cost-per-repository", "Cost per repository (whole period)",
                             list(view.repository_costs().items()), fmt=view.money, value_label="Cost"))
    charts.append(bar_chart("transfer-bytes", "Pulls and pushes per month (bytes)", labels, [
        Series("Pulls, same region", [m.totals["pull_bytes_same_region"] for m in view.months]),
        Series("Pulls, internet", [m.totals["pull_bytes_internet"] for m in view.months]),
        Series("Pushes", [m.totals["push_bytes"] for m in view.months])], fmt=byte_axis, binary=True))
    return charts


def storage_charts(rows: list[dict[str, Any]]) -> list[Chart]:
    """The fallback: what each repository stores now (services/usage.py), no history."""
    return [
        hbar_chart("storage-now", "Storage per repository now", [(r["repository"], float(r["stored_bytes"]))
                                                                  for r in rows],
                   fmt=byte_axis, value_label="Stored"),
        hbar_chart("exclusive-now", "Bytes each repository alone holds", [(r["repository"],
                                                                           float(r["exclusive_bytes"]))
                                                                          for r in rows],
                   fmt=byte_axis, value_label="Held alone"),
    ]
