"""`cargohold vulndb …`, `cargohold sbom` and `cargohold scan`: the scanner from the command line.

They work on a data directory beside a running server: an import builds a new index file and
swaps it in (the server's next scan uses it), then re-evaluates images under continuous scanning.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

vulndb_app = typer.Typer(help="The offline vulnerability database (OSV records).", no_args_is_help=True)

DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Data directory (or CARGOHOLD_DATA_DIR).")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file (or CARGOHOLD_CONFIG).")]
AccountOpt = Annotated[str | None, typer.Option("--account", help="Account id (default: the home account).")]


def _services(config: str | None, data_dir: str | None) -> Any:
    from cargohold.cli import _services as build
    return build(config, data_dir)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"cargohold: {message}", err=True)
    return typer.Exit(code)


@vulndb_app.command("import")
def vulndb_import(
    paths: Annotated[list[str], typer.Argument(help="OSV JSON files, directories of them, all.zip archives, "
                                                    "or http(s) URLs of all.zip archives.")],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="Start from an empty database instead of adding.")] = False,
) -> None:
    """Import OSV records; safe while a server runs on the same data directory."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cargohold.services.scanning import feeds
    services = _services(config, data_dir)
    scanner = services.scans.scanner
    downloads: list[Path] = []
    local: list[Path] = []
    console = Console(stderr=True)
    try:
        for item in paths:
            if "://" in item:
                with console.status(f"downloading {item}"):
                    downloads.append(feeds.download(item, scanner.index.root / "downloads"))
            else:
                local.append(Path(item))
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("importing OSV records", total=None)

            def progress(done: int, total: int) -> None:
                if done == 1 or done % 200 == 0 or done == total:
                    bar.update(task, completed=done, total=total)

            report = scanner.import_vulndb(local + downloads, replace=replace, progress=progress)
            bar.update(task, description="imported")
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        feeds.cleanup(downloads)
        services.meta.engine.dispose()
    typer.echo(f"Imported {report.added} records ({report.withdrawn} withdrawn, {report.skipped} skipped) in "
               f"{report.seconds:.1f} s; the database now holds {report.total} records, newest modified "
               f"{report.updated_at or 'unknown'} ({report.generation}).")


@vulndb_app.command("status")
def vulndb_status(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Show the live database: records, ecosystems, newest modification."""
    services = _services(config, data_dir)
    with services.scans.scanner.index.snapshot() as snap:
        if not snap.generation:
            typer.echo("No vulnerability database yet: run `cargohold vulndb import PATH`.")
        else:
            typer.echo(f"{snap.generation}: {snap.count()} records, newest modified {snap.updated_at or 'unknown'}")
            for ecosystem, count in snap.ecosystems().items():
                typer.echo(f"  {ecosystem}\t{count}")
    services.meta.engine.dispose()


@vulndb_app.command("refresh")
def vulndb_refresh(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Download and import the configured vulndb_urls now."""
    services = _services(config, data_dir)
    urls = services.config.vulndb_urls
    if not urls:
        raise _fail("no vulndb_urls configured (config file or CARGOHOLD_VULNDB_URLS)", 2)
    try:
        report = services.scans.scanner.refresh(urls)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        services.meta.engine.dispose()
    assert report is not None
    typer.echo(f"Refreshed: {report.total} records, newest modified {report.updated_at or 'unknown'}.")


def _image(services: Any, account: str | None, reference: str) -> tuple[Any, str]:
    from cargohold.errors import RegistryError
    from cargohold.http.sbom import split_reference
    try:
        name, ref = split_reference(reference)
    except RegistryError as err:
        raise _fail(err.message, 2) from None
    repo = services.meta.get_repository(account or services.config.account_id, name)
    if repo is None:
        raise _fail(f"repository {name!r} does not exist")
    return repo, ref


def sbom(
    reference: Annotated[str, typer.Argument(help="REPOSITORY@DIGEST or REPOSITORY:TAG")],
    fmt: Annotated[str, typer.Option("--format", help="cyclonedx or spdx.")] = "cyclonedx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
) -> None:
    """Print an image's SBOM (CycloneDX or SPDX JSON) from its last scan."""
    from cargohold.errors import RegistryError
    services = _services(config, data_dir)
    try:
        repo, ref = _image(services, account, reference)
        document = services.scans.document(repo, ref, fmt)
    except RegistryError as err:
        raise _fail(err.message) from None
    finally:
        services.meta.engine.dispose()
    text = json.dumps(document, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def scan(
    reference: Annotated[str | None, typer.Argument(help="REPOSITORY@DIGEST or REPOSITORY:TAG to scan now.")] = None,
    sbom_file: Annotated[Path | None, typer.Option("--sbom", help="Match a CycloneDX/SPDX JSON file instead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON.")] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
) -> None:
    """Scan an image now (or match an SBOM file) and print the findings."""
    from cargohold.domain.sbom import read_sbom
    from cargohold.domain.vulns.matching import match
    from cargohold.errors import RegistryError
    if (reference is None) == (sbom_file is None):
        raise _fail("give an image reference or --sbom FILE", 2)
    services = _services(config, data_dir)
    scanner = services.scans.scanner
    try:
        if sbom_file is not None:
            try:
                inventory = read_sbom(sbom_file.read_bytes())
            except (OSError, ValueError) as exc:
                raise _fail(str(exc)) from None
            with scanner.index.snapshot() as snap:
                findings = [f.wire() for f in match(inventory, snap.lookup)]
            status = "COMPLETE"
        else:
            assert reference is not None
            repo, ref = _image(services, account, reference)
            from cargohold.services.images import ImageId
            try:
                digest = services.scans._digest(repo, ImageId(digest=ref) if ":" in ref else ImageId(tag=ref))
            except RegistryError as err:
                raise _fail(err.message) from None
            outcome = scanner.scan(repo.id, digest)
            row = scanner.store.get(repo.id, digest)
            findings = (row.findings or []) if row else []
            status = outcome.status
            if outcome.status != "COMPLETE":
                typer.echo(f"{outcome.status}: {outcome.description}", err=True)
    finally:
        services.meta.engine.dispose()
    if as_json:
        typer.echo(json.dumps({"status": status, "findings": findings}, indent=2))
    else:
        for f in findings:
            attrs = {a["key"]: a["value"] for a in f.get("attributes", [])}
            typer.echo(f"{f['severity']:<13} {f['name']:<22} {attrs.get('package_name', '')} "
                       f"{attrs.get('package_version', '')} -> {attrs.get('fixed_version', 'no fix')}")
        typer.echo(f"{len(findings)} finding(s).")
    if status == "FAILED":
        raise typer.Exit(1)
