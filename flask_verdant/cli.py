"""``flask verdant ...``: operate on libraries from the command line."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from .files.cli import files_cli

verdant_cli = AppGroup("verdant", help="Manage Verdant sync libraries.")


@verdant_cli.command("evict")
@click.argument("library_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def evict_command(library_id: str, yes: bool) -> None:
    """Delete LIBRARY_ID's server copy; connected replicas restore it."""
    if not yes:
        click.confirm(
            f"Delete all server data of library {library_id!r}? Replicas will re-upload theirs.",
            abort=True,
        )
    current_app.extensions["verdant"].evict_library(library_id)
    click.echo(f"Evicted library {library_id}")


@verdant_cli.command("info")
@click.argument("library_id")
def info_command(library_id: str) -> None:
    """Print LIBRARY_ID's replicas, history size and global ack as JSON."""
    info = current_app.extensions["verdant"].library_info(library_id)
    click.echo(json.dumps(info, indent=2, sort_keys=True))


@verdant_cli.command("compact")
@click.argument("library_id")
def compact_command(library_id: str) -> None:
    """Fold LIBRARY_ID's operations that every replica has into baselines, now."""
    result = current_app.extensions["verdant"].compact(library_id)
    click.echo(
        f"Folded {result.folded_operations} operations of {len(result.documents)} documents "
        f"in library {library_id}"
    )
    for oid in result.quarantined:
        click.echo(f"Quarantined {oid}: one of its operations cannot be applied", err=True)


verdant_cli.add_command(files_cli)
