"""The `cargohold` command line."""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cargohold.config import Config, load_config, to_environ

app = typer.Typer(help="cargohold: a self-hosted container registry that speaks Amazon ECR's language.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file (or CARGOHOLD_CONFIG).")]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Data directory (or CARGOHOLD_DATA_DIR).")]


def _config(config_file: str | None, **overrides: object) -> Config:
    try:
        return load_config(config_file, overrides)
    except (ValueError, OSError) as exc:
        typer.echo(f"cargohold: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    database_url: Annotated[str | None, typer.Option(help="postgresql://… (default: SQLite in the data dir).")] = None,
    account_id: Annotated[str | None, typer.Option(help="12-digit account id.")] = None,
    region: Annotated[str | None, typer.Option(help="Region name, e.g. us-east-1.")] = None,
    registry_host: Annotated[str | None, typer.Option(help="host[:port] used in repository URIs.")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="PEM certificate (chain) to serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key for --tls-cert.")] = None,
    tls_self_signed: Annotated[bool | None, typer.Option(
        "--tls-self-signed/--no-tls-self-signed", help="Generate a CA and certificate into the data dir.")] = None,
    tls_name: Annotated[list[str] | None, typer.Option(help="Extra certificate name or address (repeatable).")] = None,
    endpoint: Annotated[list[str] | None, typer.Option(
        help="Extra listener as a private endpoint, HOST:PORT=vpce-id (repeatable).")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="CIDR of a proxy whose X-Forwarded-For is trusted (repeatable).")] = None,
) -> None:
    """Run the registry: /v2 (OCI), the ECR API, /healthz and /metrics on one port."""
    cfg = _config(config, host=host, port=port, data_dir=data_dir, workers=workers,
                  database_url=database_url, account_id=account_id, region=region,
                  registry_host=registry_host, tls_cert=tls_cert, tls_key=tls_key,
                  tls_self_signed=tls_self_signed, tls_names=tls_name, endpoints=endpoint,
                  trusted_proxies=trusted_proxy)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    credentials = cfg.data_path / "root-credentials"  # services.identity.CREDENTIALS_FILE, not imported here

    # Migrations and seeding run in a short-lived child: the server's main process then never
    # imports the application (~70 MiB it would keep for its whole life just supervising workers).
    with multiprocessing.get_context("fork").Pool(1) as pool:  # fork: no resource-tracker process left
        created = pool.apply(_bootstrap, (cfg, os.environ.get("CARGOHOLD_ROOT_ACCESS_KEY_ID"),
                                          os.environ.get("CARGOHOLD_ROOT_SECRET_ACCESS_KEY")))

    ssl_cert = ssl_key = None
    scheme = "http"
    if cfg.tls_cert:
        if not cfg.tls_key:
            typer.echo("cargohold: --tls-cert needs --tls-key", err=True)
            raise typer.Exit(2)
        ssl_cert, ssl_key, scheme = Path(cfg.tls_cert), Path(cfg.tls_key), "https"
    elif cfg.tls_self_signed:
        from cargohold.tls import ensure_self_signed
        names = [cfg.public_host.rsplit(":", 1)[0].strip("[]"), *cfg.tls_names, "localhost", "127.0.0.1"]
        if cfg.host not in ("0.0.0.0", "::"):
            names.append(cfg.host)
        ca, ssl_cert, ssl_key = ensure_self_signed(cfg.data_path, names)
        scheme = "https"
    out = sys.stdout
    out.write(f"cargohold listening on {scheme}://{cfg.public_host} (data: {cfg.data_path})\n")
    if created and os.environ.get("CARGOHOLD_ROOT_SECRET_ACCESS_KEY"):
        # The operator chose the secret: never echo it into the console (and so into logs).
        out.write(f"Root access key {created[0]} created from CARGOHOLD_ROOT_ACCESS_KEY_ID/"
                  f"CARGOHOLD_ROOT_SECRET_ACCESS_KEY (saved with mode 0600 in {credentials}).\n")
    elif created:
        out.write("Root access key created (shown once; also saved with mode 0600 in "
                  f"{credentials}):\n"
                  f"  aws_access_key_id     = {created[0]}\n  aws_secret_access_key = {created[1]}\n")
    else:
        out.write(f"Root credentials: see {credentials} "
                  "(or the keys given at first start).\n")
    out.write(f"Log in:  docker login {cfg.public_host} -u <access key id>  (password: the secret)\n")
    if cfg.tls_self_signed:
        out.write(f"Trust the CA:  sudo mkdir -p /etc/docker/certs.d/{cfg.public_host} && "
                  f"sudo cp {ca} /etc/docker/certs.d/{cfg.public_host}/ca.crt\n")
    out.flush()

    listeners = [(cfg.host, cfg.port, cfg.endpoint_id)]
    _check_free(cfg.host, cfg.port)
    for spec in cfg.endpoints:
        address, _, endpoint_id = spec.partition("=")
        host_part, _, port_part = address.rpartition(":")
        if not host_part or not port_part.isdigit():
            typer.echo(f"cargohold: --endpoint wants HOST:PORT=ENDPOINT_ID, got {spec!r}", err=True)
            raise typer.Exit(2)
        listeners.append((host_part.strip("[]"), int(port_part), endpoint_id))
        _check_free(host_part.strip("[]"), int(port_part))
        out.write(f"private endpoint {endpoint_id or '(unnamed)'} on {address}\n")
    out.flush()
    children = []
    for host_, port_, endpoint_id in listeners[1:]:
        child = multiprocessing.get_context("spawn").Process(
            target=_serve_listener, args=(cfg, host_, port_, endpoint_id, ssl_cert, ssl_key), daemon=False)
        child.start()
        children.append(child)
    try:
        _serve_listener(cfg, cfg.host, cfg.port, cfg.endpoint_id, ssl_cert, ssl_key)
    finally:
        for child in children:
            child.terminate()
            child.join(10)


def _bootstrap(cfg: Config, key_id: str | None, secret: str | None) -> tuple[str, str] | None:
    from cargohold.app import build_services

    services = build_services(cfg, run_migrations=True)
    try:
        return services.identity.ensure_root_credentials(cfg.data_path, key_id, secret)
    finally:
        services.meta.engine.dispose()


def _check_free(host: str, port: int) -> None:
    """Refuse a port already in use, with a clear message (granian binds with SO_REUSEPORT, which
    would silently share it). SO_REUSEADDR as the server itself: connections of a previous run
    waiting out TIME_WAIT do not count as in use."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            typer.echo(f"cargohold: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None


HTTP1_BUFFER = 1 << 20


def _serve_listener(cfg: Config, host: str, port: int, endpoint_id: str, ssl_cert: Path | None,
                    ssl_key: Path | None) -> None:
    """One Granian server; its workers rebuild the config from CARGOHOLD_* (endpoint id included)."""
    os.environ.update(to_environ(cfg))
    os.environ["CARGOHOLD_ENDPOINT_ID"] = endpoint_id
    if cfg.http_server == "cargohold":
        from cargohold.http import supervisor
        supervisor.run(host, port, cfg.workers, ssl_cert, ssl_key, idle_timeout=cfg.http_idle_timeout)
        return
    from granian import Granian
    from granian.constants import Interfaces, SSLProtocols
    from granian.http import HTTP1Settings

    Granian(
        "cargohold.app:worker_app", factory=True, address=host, port=port,
        interface=Interfaces.ASGI, workers=max(cfg.workers, 1),
        ssl_cert=ssl_cert, ssl_key=ssl_key, ssl_protocol_min=SSLProtocols.tls12,
        log_enabled=True, respawn_failed_workers=True,
        # Request bodies reach the app in pieces of up to this size: 1 MiB instead of granian's
        # 408 KiB default took its body reading from ~1.1 to ~1.6 GB/s here; 4 MiB was no faster
        # and cost 30 MiB more peak memory per worker (docs/benchmarks.md).
        http1_settings=HTTP1Settings(max_buffer_size=HTTP1_BUFFER),
    ).serve()


def _services(config: str | None, data_dir: str | None) -> Any:
    """Services on a data directory, for commands that run beside (or without) a server."""
    cfg = _config(config, data_dir=data_dir)
    logging.basicConfig(level="WARNING")
    from cargohold.app import build_services
    return build_services(cfg, run_migrations=True)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size} B"


@app.command()
def gc(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    grace: Annotated[int | None, typer.Option(help="Seconds an unreferenced blob is kept (default: config).")] = None,
) -> None:
    """Collect garbage now: unreferenced blobs past the grace window and abandoned uploads."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    services = _services(config, data_dir)
    collector = services.gc
    if grace is not None:
        collector.grace_seconds = grace
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=False) as bar:
        task = bar.add_task("collecting…", total=None)

        def progress(phase: str, done: int) -> None:
            bar.update(task, description=f"{phase}: {done}")

        with collector.exclusive(wait=True):
            report = collector.run(progress)
        bar.update(task, description="done")
    blobs, stored = services.meta.storage_totals()
    typer.echo(f"Freed {report.blobs_deleted} blobs ({_human(report.bytes_freed)}), dropped "
               f"{report.links_dropped} repository links, purged {report.uploads_purged} abandoned uploads "
               f"and {report.stray_files_deleted} stray files, restored {report.restored}, in "
               f"{report.seconds:.2f} s. Now stored: {blobs} blobs, {_human(stored)}.")
    services.meta.engine.dispose()


account_app = typer.Typer(help="Accounts (each with its own root key, users and repositories).",
                          no_args_is_help=True)
app.add_typer(account_app, name="account")


@account_app.command("create")
def account_create(
    account_id: Annotated[str, typer.Argument(help="12-digit account id.")],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create another account and print its root access key (once)."""
    if not (len(account_id) == 12 and account_id.isdigit()):
        typer.echo("cargohold: an account id is 12 digits", err=True)
        raise typer.Exit(2)
    services = _services(config, data_dir)
    created = services.identity.ensure_root_credentials(services.config.data_path, None, None, account_id)
    if created is None:
        typer.echo(f"account {account_id} already exists")
        raise typer.Exit(1)
    typer.echo(f"account {account_id} created\naws_access_key_id     = {created[0]}\n"
               f"aws_secret_access_key = {created[1]}")
    services.meta.engine.dispose()


iam_app = typer.Typer(help="Users, access keys and policies (the IAM API's essentials, for bootstrapping).",
                      no_args_is_help=True)
app.add_typer(iam_app, name="iam")
AccountOpt = Annotated[str | None, typer.Option("--account", help="Account id (default: the home account).")]


def _iam(config: str | None, data_dir: str | None, account: str | None) -> tuple[Any, Any, Any]:
    from cargohold.services.identity import Principal, RequestContext, root_arn
    services = _services(config, data_dir)
    acct = account or services.config.account_id
    root = Principal(root_arn(acct), acct, "root", "root", acct, "cli")
    return services, root, RequestContext(source_ip="cli")


def _iam_call(fn: Any) -> Any:
    from cargohold.errors import RegistryError
    try:
        return fn()
    except RegistryError as err:
        typer.echo(f"cargohold: {err.row.iam_code}: {err.message}", err=True)
        raise typer.Exit(1) from None


@iam_app.command("create-user")
def iam_create_user(name: str, data_dir: DataDirOpt = None, config: ConfigOpt = None,
                    account: AccountOpt = None) -> None:
    """Create a user."""
    services, root, ctx = _iam(config, data_dir, account)
    user = _iam_call(lambda: services.iam.create_user(root, ctx, name))
    typer.echo(user.arn)


@iam_app.command("list-users")
def iam_list_users(data_dir: DataDirOpt = None, config: ConfigOpt = None, account: AccountOpt = None) -> None:
    """List users."""
    services, root, ctx = _iam(config, data_dir, account)
    for user in _iam_call(lambda: services.iam.list_users(root, ctx, "/", None, 1000)):
        typer.echo(f"{user.name}\t{user.arn}")


@iam_app.command("create-access-key")
def iam_create_access_key(user: str, data_dir: DataDirOpt = None, config: ConfigOpt = None,
                          account: AccountOpt = None) -> None:
    """Create an access key for a user and print it (the secret is shown only now)."""
    services, root, ctx = _iam(config, data_dir, account)
    new = _iam_call(lambda: services.iam.create_access_key(root, ctx, user))
    typer.echo(f"aws_access_key_id     = {new.key.key_id}\naws_secret_access_key = {new.secret}")


@iam_app.command("update-access-key")
def iam_update_access_key(user: str, key_id: str,
                          status: Annotated[str, typer.Option(help="Active or Inactive.")] = "Inactive",
                          data_dir: DataDirOpt = None, config: ConfigOpt = None, account: AccountOpt = None) -> None:
    """Activate or deactivate an access key (takes effect on the next request)."""
    if status not in ("Active", "Inactive"):
        typer.echo("cargohold: --status is Active or Inactive", err=True)
        raise typer.Exit(2)
    services, root, ctx = _iam(config, data_dir, account)
    _iam_call(lambda: services.iam.update_access_key(root, ctx, user, key_id, status))
    typer.echo(f"{key_id}: {status}")


@iam_app.command("put-user-policy")
def iam_put_user_policy(user: str, policy_name: str,
                        document: Annotated[Path, typer.Argument(help="JSON policy document file.")],
                        data_dir: DataDirOpt = None, config: ConfigOpt = None, account: AccountOpt = None) -> None:
    """Attach an inline policy to a user."""
    services, root, ctx = _iam(config, data_dir, account)
    text = document.read_text()
    _iam_call(lambda: services.iam.put_inline(root, ctx, "user", user, policy_name, text))
    typer.echo(f"{policy_name} put on {user}")


@iam_app.command("delete-user-policy")
def iam_delete_user_policy(user: str, policy_name: str, data_dir: DataDirOpt = None, config: ConfigOpt = None,
                           account: AccountOpt = None) -> None:
    """Remove an inline policy from a user."""
    services, root, ctx = _iam(config, data_dir, account)
    _iam_call(lambda: services.iam.delete_inline(root, ctx, "user", user, policy_name))
    typer.echo(f"{policy_name} removed from {user}")


@app.command()
def audit(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    principal: Annotated[str | None, typer.Option(help="Only this principal ARN.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. ecr:PutImage.")] = None,
    denied: Annotated[bool, typer.Option("--denied", help="Only refused requests.")] = False,
    since: Annotated[int | None, typer.Option(help="Only the last N minutes.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List authorization decisions from the audit trail (like CloudTrail)."""
    import datetime
    import json as jsonlib

    from cargohold.storage.meta.iam import IamStore
    services = _services(config, data_dir)
    cutoff = int((time.time() - since * 60) * 1000) if since else None
    events = IamStore(services.meta).events(since=cutoff, principal=principal, action=action,
                                            allowed=False if denied else None, limit=limit)
    for e in events:
        when = datetime.datetime.fromtimestamp(e.at / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if as_json:
            typer.echo(jsonlib.dumps({**e.__dict__, "time": when}))
        else:
            verdict = "ALLOW" if e.allowed else "DENY "
            source = e.source_ip + (f" via {e.endpoint_id}" if e.endpoint_id else "")
            by = f" [{e.policy}{' ' + e.statement if e.statement else ''}]" if e.policy else f" [{e.reason}]"
            typer.echo(f"{when} {verdict} {e.principal_arn} {e.action} {e.resource} from {source}{by}")
    services.meta.engine.dispose()


FormatOpt = Annotated[str, typer.Option("--format", help="table, json or csv.")]


def _emit(rows: list[dict[str, Any]], columns: list[str], fmt: str, title: str) -> None:
    if fmt == "json":
        import json as jsonlib
        typer.echo(jsonlib.dumps(rows, indent=2, default=str))
    elif fmt == "csv":
        import csv
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table
        table = Table(title=title)
        for column in columns:
            table.add_column(column, justify="right" if column.endswith(("bytes", "images", "blobs")) else "left")
        for row in rows:
            table.add_row(*[_human(row[c]) if c.endswith("bytes") else str(row[c] if row[c] is not None else "")
                            for c in columns])
        Console(width=160).print(table)
    else:
        typer.echo(f"cargohold: unknown format {fmt!r} (table, json or csv)", err=True)
        raise typer.Exit(2)


@app.command()
def repos(data_dir: DataDirOpt = None, config: ConfigOpt = None, fmt: FormatOpt = "table") -> None:
    """Repositories with image counts, stored bytes and the bytes each alone holds."""
    services = _services(config, data_dir)
    from cargohold.services.usage import StorageUsage
    report = StorageUsage(services.meta).report()
    _emit(report.repositories, ["account_id", "repository", "images", "blobs", "stored_bytes", "exclusive_bytes"],
          fmt, "Repositories")
    if fmt == "table":
        typer.echo(f"On disk after deduplication: {report.blob_count} blobs, {_human(report.deduplicated_bytes)} "
                   f"(without deduplication: {_human(report.logical_bytes)})")
    services.meta.engine.dispose()


@app.command()
def usage(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = "table",
    months: Annotated[int, typer.Option(help="Calendar months to show, ending with this one.")] = 3,
    account: AccountOpt = None,
    snapshot: Annotated[bool, typer.Option("--snapshot", help="Sample storage now first (writes one sample).")] = False,
) -> None:
    """Usage and cost per repository and month (storage GB-months, transfer), totals and a projection."""
    from cargohold.cli_usage import run_usage
    logging.basicConfig(level="WARNING")
    run_usage(_config(config, data_dir=data_dir), fmt, months, account, snapshot)


lifecycle_app = typer.Typer(help="Lifecycle policies.", no_args_is_help=True)
app.add_typer(lifecycle_app, name="lifecycle")


@lifecycle_app.command("run")
def lifecycle_run(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be expired.")] = False,
) -> None:
    """Apply every repository's lifecycle policy now (or, with --dry-run, show what would go)."""
    services = _services(config, data_dir)
    with services.gc.exclusive(wait=True):
        expired = services.lifecycle.run(dry_run=dry_run)
    verb = "would expire" if dry_run else "expired"
    for item in expired:
        if dry_run or item.deleted:
            tags = ",".join(item.expiry.tags) or "<untagged>"
            typer.echo(f"{verb}  {item.repository}@{item.expiry.digest}  tags={tags}  "
                       f"pushed={item.expiry.pushed_at.isoformat()}  rule={item.expiry.rule_priority}")
    count = sum(1 for e in expired if dry_run or e.deleted)
    typer.echo(f"{count} image(s) {verb}.")
    services.meta.engine.dispose()


@app.command()
def version() -> None:
    """Print the version."""
    from cargohold import __version__
    typer.echo(__version__)


def _scan_commands() -> None:
    from cargohold import cli_scan
    app.add_typer(cli_scan.vulndb_app, name="vulndb")
    app.command("sbom")(cli_scan.sbom)
    app.command("scan")(cli_scan.scan)


_scan_commands()


def main() -> None:
    app()
