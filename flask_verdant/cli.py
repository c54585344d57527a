"""``flask verdant ...``: operate on libraries from the command line (docs/cli.md)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from .files.cli import files_cli
from .portability import ImportRefused, export_library, import_library
from .server import SyncServer

verdant_cli = AppGroup("verdant", help="Manage Verdant sync libraries.")


def _server() -> SyncServer:
    server: SyncServer = current_app.extensions["verdant"]
    return server


def _existing(server: SyncServer, library_id: str) -> str:
    """Fail the command for a library the database does not hold (a typo, another database)."""
    with server.database.read() as tx:
        if not tx.library_exists(library_id):
            raise click.ClickException(f"No library {library_id!r} in {server.database.path}")
    return library_id


@verdant_cli.command("evict")
@click.argument("library_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def evict_command(library_id: str, yes: bool) -> None:
    """Delete LIBRARY_ID's server copy; connected replicas restore it."""
    server = _server()
    _existing(server, library_id)
    if not yes:
        click.confirm(
            f"Delete all server data of library {library_id!r}? Replicas will re-upload theirs.",
            abort=True,
        )
    server.evict_library(library_id)
    click.echo(f"Evicted library {library_id}")


@verdant_cli.command("evict-user")
@click.argument("library_id")
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def evict_user_command(library_id: str, user_id: str, yes: bool) -> None:
    """Forget USER_ID's replicas in LIBRARY_ID; they reset to the server's copy on next sync."""
    server = _server()
    _existing(server, library_id)
    if not yes:
        click.confirm(
            f"Forget the replicas of {user_id!r} in {library_id!r}? Their unsynced changes "
            "will be lost.",
            abort=True,
        )
    count = server.evict_user(library_id, user_id)
    if not count:
        raise click.ClickException(f"User {user_id!r} has no replicas in {library_id!r}")
    click.echo(f"Forgot {count} replica(s) of {user_id} in library {library_id}")


@verdant_cli.command("info")
@click.argument("library_id")
def info_command(library_id: str) -> None:
    """Print LIBRARY_ID's replicas, history size and global ack as JSON."""
    server = _server()
    _existing(server, library_id)
    click.echo(json.dumps(server.library_info(library_id), indent=2, sort_keys=True))


@verdant_cli.command("libraries")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def libraries_command(as_json: bool) -> None:
    """List every library: history size, replicas and last activity."""
    with _server().database.read() as tx:
        summaries = tx.library_summaries()
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    header = ("library", "operations", "baselines", "bytes", "replicas", "last seen (UTC)")
    rows = [
        (
            s["id"],
            str(s["operations"]),
            str(s["baselines"]),
            str(s["bytes"]),
            str(s["replicas"]),
            _when(s["lastSeen"]),
        )
        for s in summaries
    ]
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    for cells in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)))


def _when(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "-"
    moment = datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@verdant_cli.command("compact")
@click.argument("library_id")
def compact_command(library_id: str) -> None:
    """Fold LIBRARY_ID's operations that every replica has into baselines, now."""
    server = _server()
    _existing(server, library_id)
    result = server.compact(library_id)
    click.echo(
        f"Folded {result.folded_operations} operations of {len(result.documents)} documents "
        f"in library {library_id}"
    )
    for oid in result.quarantined:
        click.echo(f"Quarantined {oid}: one of its operations cannot be applied", err=True)


@verdant_cli.command("backup")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace PATH if it exists.")
def backup_command(path: str, overwrite: bool) -> None:
    """Copy the whole database to PATH, consistently, while the app keeps serving."""
    if os.path.exists(path) and not overwrite:
        raise click.ClickException(f"{path} exists; pass --overwrite to replace it")
    server = _server()
    server.database.backup(path)
    click.echo(f"Backed up {server.database.path} to {path}")


@verdant_cli.command("export")
@click.argument("library_id")
@click.option(
    "-o", "--output", type=click.File("w"), default="-", help="Write here (default: stdout)."
)
def export_command(library_id: str, output: Any) -> None:
    """Write LIBRARY_ID, every stored row of it, as one JSON document."""
    server = _server()
    _existing(server, library_id)
    document = export_library(server.database, library_id)  # one read snapshot
    json.dump(document, output, indent=1, ensure_ascii=False)
    output.write("\n")


@verdant_cli.command("import")
@click.argument("source", type=click.File("r"))
@click.option("--library", "library_id", help="Import under this id instead of the exported one.")
def import_command(source: Any, library_id: str | None) -> None:
    """Create a library from SOURCE, a document written by export ("-" reads stdin)."""
    try:
        document = json.load(source)
    except ValueError as error:
        raise click.ClickException(f"{source.name} is not JSON: {error}") from error
    try:
        # One immediate transaction: atomic, and no other process writes meanwhile.
        imported, counts = import_library(_server().database, document, library_id)
    except ImportRefused as error:
        raise click.ClickException(str(error)) from error
    summary = ", ".join(f"{count} {table}" for table, count in counts.items())
    click.echo(f"Imported library {imported}: {summary}", err=True)


verdant_cli.add_command(files_cli)
