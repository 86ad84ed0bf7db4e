"""The console's pages: repositories, images, permissions, lifecycle, settings, push commands, usage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from cargohold.errors import Kind, RegistryError
from cargohold.http.console.routes import (
    PREFIX,
    REPO_PATH,
    ConsoleBase,
    HttpError,
    Session,
    notice_for,
    run,
    status_of,
)
from cargohold.http.console.session import Sessions
from cargohold.http.console.usage import UsageResult, UsageSource, storage_charts, usage_charts, usage_view
from cargohold.http.console.views import manifest_view, push_commands, registry_host
from cargohold.http.context import ContextFactory
from cargohold.services.identity import Identity
from cargohold.services.images import Image, Images
from cargohold.services.lifecycle import Lifecycle
from cargohold.services.policies import Policies
from cargohold.services.repositories import Caller, RepositoryAdmin, check_mutability
from cargohold.services.usage import StorageUsage
from cargohold.storage.meta.store import Repository

IMAGES_PAGE = 100
MUTABILITY_LABELS = {
    "MUTABLE": "Mutable: tags can be moved to another image",
    "IMMUTABLE": "Immutable: a tag, once pushed, always names the same image",
    "IMMUTABLE_WITH_EXCLUSION": "Immutable, except tags matching the exclusion filters",
    "MUTABLE_WITH_EXCLUSION": "Mutable, except tags matching the exclusion filters (those are immutable)",
}
LIFECYCLE_EXAMPLE = json.dumps({"rules": [{
    "rulePriority": 1, "description": "Expire untagged images older than 14 days",
    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
    "action": {"type": "expire"}}]}, indent=2)
POLICY_EXAMPLE = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "AllowPull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]}, indent=2)
PREVIEW_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ScanSummary:
    status: str  # e.g. COMPLETE, IN_PROGRESS, FAILED
    counts: dict[str, int] = field(default_factory=dict)
    completed_at: int | None = None  # ms


@dataclass(frozen=True)
class ScanDetail:
    summary: ScanSummary
    findings: list[dict[str, Any]] = field(default_factory=list)  # name, severity, uri, description, package, fixed
    description: str | None = None


class FindingsSource(Protocol):
    """Scanning results, when the server has a scanner (else every image shows "Not scanned")."""

    def summaries(self, caller: Caller, name: str, digests: list[str]) -> dict[str, ScanSummary]: ...

    def detail(self, caller: Caller, name: str, digest: str) -> ScanDetail | None: ...

    def start(self, caller: Caller, name: str, digest: str) -> None: ...


@dataclass
class ConsoleDeps:
    identity: Identity
    sessions: Sessions
    contexts: ContextFactory
    admin: RepositoryAdmin
    images: Images
    policies: Policies
    lifecycle: Lifecycle
    storage: StorageUsage
    public_host: str
    scheme: str
    region: str
    usage: UsageSource | None = None
    findings: FindingsSource | None = None


def _missing(kinds: tuple[Kind, ...], fn: Callable[[], Any]) -> Any:
    """fn(), or None when it fails with one of these kinds (e.g. no policy set)."""
    try:
        return fn()
    except RegistryError as err:
        if err.kind in kinds:
            return None
        raise


def _denied(fn: Callable[[], Any]) -> tuple[Any, str | None]:
    """fn() and no message, or None and the policy engine's message when the caller may not."""
    try:
        return fn(), None
    except RegistryError as err:
        if err.kind is Kind.DENIED:
            return None, err.message
        raise


class Console(ConsoleBase):
    def __init__(self, deps: ConsoleDeps) -> None:
        super().__init__(deps.identity, deps.sessions, deps.contexts)
        self.deps = deps
        self.admin = deps.admin
        self.home_account = deps.admin.repos.account_id

    def page_for(self, path: str) -> tuple[Callable[..., Awaitable[Response]], tuple[str, ...]] | None:
        simple: dict[str, Callable[..., Awaitable[Response]]] = {
            "/repositories": self.repositories, "/create-repository": self.create_repository,
            "/usage": self.usage}
        if path.rstrip("/") in simple:
            return simple[path.rstrip("/")], ()
        m = REPO_PATH.fullmatch(path)
        if m is None:
            return None
        rest = m["rest"] or ""
        pages: dict[str, Callable[..., Awaitable[Response]]] = {
            "": self.repository, "delete": self.delete_repository, "permissions": self.permissions,
            "lifecycle": self.lifecycle, "settings": self.settings, "push-commands": self.push_commands}
        if rest.startswith("images/"):
            return self.image, (m["name"], rest[len("images/"):])
        return (pages[rest], (m["name"],)) if rest in pages else None

    # -- helpers --------------------------------------------------------------------------------

    def uri(self, repo: Repository) -> str:
        return f"{registry_host(self.deps.public_host, self.home_account, repo.account_id)}/{repo.name}"

    def _repo(self, caller: Caller, name: str) -> Repository:
        return self.admin.describe(caller, [name], None, 1)[0]

    def _all_repositories(self, caller: Caller) -> list[Repository]:
        out: list[Repository] = []
        after: str | None = None
        while True:
            page = self.admin.describe(caller, None, after, 1000)
            out.extend(page)
            if len(page) < 1000:
                return out
            after = page[-1].name

    def _storage(self, account: str) -> dict[str, dict[str, Any]]:
        return {r["repository"]: r for r in self.deps.storage.report().repositories if r["account_id"] == account}

    async def _usage(self, request: Request, session: Session, months: int) -> UsageResult | None:
        if self.deps.usage is None:
            return None
        return await self.deps.usage.fetch(request, session.token, months)

    def repo_page(self, request: Request, session: Session, template: str, repo: Repository, tab: str,
                  status: int = 200, **context: Any) -> Response:
        return self.render(request, template, status=status, session=session, nav="repositories", repo=repo,
                           uri=self.uri(repo), tab=tab, notice=context.pop("notice", notice_for(request)), **context)

    # -- repositories ---------------------------------------------------------------------------

    async def repositories(self, request: Request, session: Session) -> Response:
        self._methods(request, "GET")
        caller = session.caller
        repos = await run(self._all_repositories, caller)
        storage = await run(self._storage, caller.registry_id)
        usage = await self._usage(request, session, 1)
        costs: dict[str, float] | None = None
        currency = "USD"
        if usage is not None and usage.report is not None:
            view = usage_view(usage.report)
            currency = view.currency
            costs = {k: v.get("total_cost", 0.0) for k, v in view.latest.repositories.items()} if view.latest else {}
        rows = [{"repo": r, "uri": self.uri(r), "usage": storage.get(r.name, {}),
                 "cost": None if costs is None else costs.get(r.name, 0.0)} for r in repos]
        return self.render(request, "repositories.html", session=session, nav="repositories", rows=rows,
                           costs_available=costs is not None, currency=currency,
                           usage_error=usage.error if usage else None, notice=notice_for(request))

    async def create_repository(self, request: Request, session: Session) -> Response:
        self._methods(request, "GET", "POST")
        values = {"name": "", "mutability": "MUTABLE", "scan_on_push": ""}
        if request.method == "GET":
            return self.render(request, "create.html", session=session, nav="repositories", values=values,
                               labels=MUTABILITY_LABELS)
        form = await self.form(request, session.token)
        values.update({k: form.get(k, "").strip() for k in values})
        if values["mutability"] not in ("MUTABLE", "IMMUTABLE"):
            values["mutability"] = "MUTABLE"
        try:
            repo = await run(self.admin.create, session.caller, values["name"], mutability=values["mutability"],
                             scan_on_push=values["scan_on_push"] == "on")
        except RegistryError as err:
            if err.kind is Kind.UNAUTHORIZED:
                raise
            return self.render(request, "create.html", status=status_of(err),
                               session=session, nav="repositories", values=values, labels=MUTABILITY_LABELS,
                               error=err.message)
        return self.redirect(f"{PREFIX}/repositories/{repo.name}", notice="created")

    async def repository(self, request: Request, session: Session, name: str) -> Response:
        self._methods(request, "GET")
        caller = session.caller
        repo = await run(self._repo, caller, name)
        after = request.query_params.get("after") or None
        (images, cursor), denied = await run(self._images_or_denied, caller, name, after)
        images.sort(key=lambda i: i.row.pushed_at, reverse=True)
        scans = await run(self._scans, caller, name, [i.row.digest for i in images])
        storage = (await run(self._storage, repo.account_id)).get(repo.name, {})
        return self.repo_page(request, session, "repository.html", repo, "images", images=images, cursor=cursor,
                              scans=scans, denied=denied, storage=storage, first_page=after is None)

    def _images_or_denied(self, caller: Caller, name: str, after: str | None
                          ) -> tuple[tuple[list[Image], str | None], str | None]:
        found, message = _denied(lambda: self.deps.images.describe_images(caller, name, None, "ANY", after,
                                                                         IMAGES_PAGE))
        return (found if found is not None else ([], None)), message

    def _scans(self, caller: Caller, name: str, digests: list[str]) -> dict[str, ScanSummary]:
        if self.deps.findings is None or not digests:
            return {}
        try:
            return self.deps.findings.summaries(caller, name, digests)
        except RegistryError as err:
            if err.kind is Kind.DENIED:
                return {}
            raise

    async def delete_repository(self, request: Request, session: Session, name: str) -> Response:
        self._methods(request, "GET", "POST")
        repo = await run(self._repo, session.caller, name)
        if request.method == "GET":
            return self.repo_page(request, session, "delete.html", repo, "")
        form = await self.form(request, session.token)
        if form.get("confirm", "").strip() != "delete":
            return self.repo_page(request, session, "delete.html", repo, "", status=400,
                                  error='To delete the repository, type "delete" in the field.')
        await run(self.admin.delete, session.caller, name, True)
        return self.redirect(f"{PREFIX}/repositories", notice="deleted")

    # -- an image -------------------------------------------------------------------------------

    async def image(self, request: Request, session: Session, name: str, digest: str) -> Response:
        self._methods(request, "GET", "POST")
        caller = session.caller
        repo = await run(self._repo, caller, name)
        findings = self.deps.findings
        failure: RegistryError | None = None
        if request.method == "POST":
            form = await self.form(request, session.token)
            if form.get("action") != "scan" or findings is None:
                raise HttpError(400, "This page accepts only a scan request.")
            try:
                await run(findings.start, caller, name, digest)
                return self.redirect(f"{PREFIX}/repositories/{name}/-/images/{digest}", "findings",
                                     notice="scan-started")
            except RegistryError as err:
                if err.kind is Kind.UNAUTHORIZED:
                    raise
                failure = err
        image = await run(self.deps.images.inspect, caller, name, digest)
        view = manifest_view(image.row.content, image.row.media_type)
        referrers, referrers_denied = await run(
            lambda: _denied(lambda: self.deps.images.referrers(caller, name, digest, None, None, 100)[0]))
        scan: ScanDetail | None = None
        scan_denied: str | None = None
        if findings is not None:
            scan, scan_denied = await run(lambda: _denied(lambda: findings.detail(caller, name, digest)))
        return self.repo_page(request, session, "image.html", repo, "images",
                              status=status_of(failure) if failure else 200,
                              error=failure.message if failure else None, image=image, view=view,
                              referrers=referrers or [], referrers_denied=referrers_denied, scan=scan,
                              scan_denied=scan_denied, scanning=findings is not None)

    # -- permissions (the repository policy) ----------------------------------------------------

    async def permissions(self, request: Request, session: Session, name: str) -> Response:
        self._methods(request, "GET", "POST")
        caller = session.caller
        repo = await run(self._repo, caller, name)
        failure: RegistryError | None = None
        text = None
        if request.method == "POST":
            form = await self.form(request, session.token)
            action = form.get("action")
            try:
                if action == "delete":
                    await run(self.deps.policies.delete_repository_policy, caller, name)
                    return self.redirect(f"{PREFIX}/repositories/{name}/-/permissions", notice="policy-deleted")
                text = form.get("policy", "")
                await run(self.deps.policies.set_repository_policy, caller, name, text, form.get("force") == "on")
                return self.redirect(f"{PREFIX}/repositories/{name}/-/permissions", notice="policy-saved")
            except RegistryError as err:
                if err.kind is Kind.UNAUTHORIZED:
                    raise
                failure = err
        current, denied = await run(lambda: _denied(lambda: _missing(
            (Kind.POLICY_NOT_FOUND,), lambda: self.deps.policies.get_repository_policy(caller, name).policy)))
        pretty = _pretty(current) if current else None
        return self.repo_page(request, session, "permissions.html", repo, "permissions",
                              status=status_of(failure) if failure else 200, current=pretty, denied=denied,
                              error=failure.message if failure else None,
                              text=text if text is not None else (pretty or POLICY_EXAMPLE))

    # -- lifecycle policy and preview -----------------------------------------------------------

    async def lifecycle(self, request: Request, session: Session, name: str) -> Response:
        self._methods(request, "GET", "POST")
        caller = session.caller
        lifecycle = self.deps.lifecycle
        repo = await run(self._repo, caller, name)
        failure: RegistryError | None = None
        text = None
        if request.method == "POST":
            form = await self.form(request, session.token)
            action = form.get("action")
            text = form.get("policy", "")
            target = f"{PREFIX}/repositories/{name}/-/lifecycle"
            try:
                if action == "delete":
                    await run(lifecycle.delete, caller, name)
                    return self.redirect(target, notice="lifecycle-deleted")
                if action == "preview":
                    await run(lifecycle.start_preview, caller, name, text or None)
                    done = await self._wait_preview(caller, name)
                    return self.redirect(target, "preview", notice="preview" if done else "preview-running")
                await run(lifecycle.put, caller, name, text)
                return self.redirect(target, notice="lifecycle-saved")
            except RegistryError as err:
                if err.kind is Kind.UNAUTHORIZED:
                    raise
                failure = err
        current, denied = await run(lambda: _denied(lambda: _missing(
            (Kind.LIFECYCLE_POLICY_NOT_FOUND,), lambda: lifecycle.get(caller, name).lifecycle_policy)))
        preview, _ = await run(lambda: _denied(lambda: _missing(
            (Kind.LIFECYCLE_PREVIEW_NOT_FOUND,), lambda: lifecycle.get_preview(caller, name))))
        pretty = _pretty(current) if current else None
        if text is None and preview and request.query_params.get("notice", "").startswith("preview"):
            text = _pretty(preview[1])  # just previewed: the text that was previewed, ready to save
        return self.repo_page(request, session, "lifecycle.html", repo, "lifecycle",
                              status=status_of(failure) if failure else 200, current=pretty, denied=denied,
                              error=failure.message if failure else None, rules=_rules(current),
                              text=text if text is not None else (pretty or LIFECYCLE_EXAMPLE),
                              preview=_preview(preview))

    async def _wait_preview(self, caller: Caller, name: str) -> bool:
        """Previews run off the request path; wait a little so the page usually shows results at once."""
        deadline = time.monotonic() + PREVIEW_WAIT_SECONDS
        while time.monotonic() < deadline:
            _, _, status, _ = await run(self.deps.lifecycle.get_preview, caller, name)
            if status != "IN_PROGRESS":
                return True
            await asyncio.sleep(0.1)
        return False

    # -- settings: tag immutability, scanning ---------------------------------------------------

    async def settings(self, request: Request, session: Session, name: str) -> Response:
        self._methods(request, "GET", "POST")
        caller = session.caller
        repo = await run(self._repo, caller, name)
        failure: RegistryError | None = None
        if request.method == "POST":
            form = await self.form(request, session.token)
            target = f"{PREFIX}/repositories/{name}/-/settings"
            try:
                if form.get("action") == "scanning":
                    await run(self.admin.set_scanning, caller, name, form.get("scan_on_push") == "on")
                    return self.redirect(target, notice="scanning-saved")
                mode = form.get("mutability", "")
                if mode not in MUTABILITY_LABELS:
                    raise RegistryError(Kind.INVALID_PARAMETER, "Choose one of the tag immutability settings.")
                filters = [{"filterType": "WILDCARD", "filter": f.strip()}
                           for f in form.get("exclusions", "").replace(",", "\n").splitlines() if f.strip()]
                check_mutability(mode, filters)
                await run(self.admin.set_mutability, caller, name, mode, filters)
                return self.redirect(target, notice="mutability-saved")
            except RegistryError as err:
                if err.kind is Kind.UNAUTHORIZED:
                    raise
                failure = err
        return self.repo_page(request, session, "settings.html", repo, "settings",
                              status=status_of(failure) if failure else 200,
                              error=failure.message if failure else None,
                              labels=MUTABILITY_LABELS,
                              exclusions="\n".join(f.get("filter", "") for f in repo.mutability_exclusions))

    # -- push commands --------------------------------------------------------------------------

    async def push_commands(self, request: Request, session: Session, name: str) -> Response:
        self._methods(request, "GET")
        repo = await run(self._repo, session.caller, name)
        host = registry_host(self.deps.public_host, self.home_account, repo.account_id)
        endpoint = f"{self.deps.scheme}://{self.deps.public_host}"
        commands = push_commands(self.uri(repo), repo.name, endpoint, self.deps.region, host)
        return self.repo_page(request, session, "push.html", repo, "push", commands=commands,
                              plain_http=self.deps.scheme == "http", host=host)

    # -- usage and cost -------------------------------------------------------------------------

    async def usage(self, request: Request, session: Session) -> Response:
        self._methods(request, "GET")
        raw = request.query_params.get("months", "6")
        months = int(raw) if raw.isdigit() and 1 <= int(raw) <= 36 else 6
        usage = await self._usage(request, session, months)
        caller = session.caller
        repos = {r.name for r in await run(self._all_repositories, caller)}
        storage = [row for name, row in sorted((await run(self._storage, caller.registry_id)).items())
                   if name in repos]
        view = usage_view(usage.report) if usage is not None and usage.report is not None else None
        charts = usage_charts(view) if view is not None else storage_charts(storage)
        return self.render(request, "usage.html", session=session, nav="usage", months=months, view=view,
                           charts=charts, storage=storage,
                           usage_error=usage.error if usage else "this server has no usage metering yet")


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def _rules(text: str | None) -> list[dict[str, Any]]:
    """A lifecycle policy's rules, for a readable table beside the JSON."""
    try:
        doc = json.loads(text or "")
    except ValueError:
        return []
    rules = doc.get("rules") if isinstance(doc, dict) else None
    out = []
    for rule in rules if isinstance(rules, list) else []:
        if not isinstance(rule, dict):
            continue
        sel = rule.get("selection") if isinstance(rule.get("selection"), dict) else {}
        assert isinstance(sel, dict)
        tags = sel.get("tagPrefixList") or sel.get("tagPatternList") or []
        count = f"more than {sel.get('countNumber')} images" if sel.get("countType") == "imageCountMoreThan" else \
            f"older than {sel.get('countNumber')} {sel.get('countUnit', 'days')} since " + \
            ("last pull" if sel.get("countType") == "sinceImagePulled" else "push")
        out.append({"priority": rule.get("rulePriority"), "description": rule.get("description") or "",
                    "status": sel.get("tagStatus", ""), "tags": ", ".join(map(str, tags)), "count": count,
                    "action": (rule.get("action") or {}).get("type", "expire")})
    return sorted(out, key=lambda r: r["priority"] if isinstance(r["priority"], int) else 0)


def _preview(found: Any) -> dict[str, Any] | None:
    if not found:
        return None
    _, _, status, results = found
    rows = sorted(results, key=lambda r: (r.get("appliedRulePriority") or 0, -(r.get("imagePushedAt") or 0)))
    return {"status": status, "results": rows}
