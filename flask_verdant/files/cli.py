"""``flask verdant files ...``: file maintenance on demand."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

files_cli = AppGroup("files", help="Manage uploaded files.")


@files_cli.command("sweep")
def sweep_command() -> None:
    """Delete files that have been pending deletion for longer than the grace period."""
    deleted = current_app.extensions["verdant"].files.sweep()
    click.echo(f"Deleted {deleted} files")
