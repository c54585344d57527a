"""A library as one JSON document, for ``flask verdant export`` and ``import``.

The document holds every stored row of the library (see docs/cli.md for the format), so an
import into an empty library, followed by an export, gives the same document back. Columns
that hold JSON text (operation patches, baseline snapshots) are embedded as JSON values, which
keeps the file readable and diffable. File bytes stay in the file storage: the document
carries their metadata only.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from . import json_codec
from .storage import Database

FORMAT = "flask-verdant-library"
VERSION = 1
# Columns stored as JSON text, embedded as JSON in the document.
_JSON_COLUMNS = {"operations": ("data",), "baselines": ("snapshot",)}


class ImportRefused(ValueError):
    """The document cannot be imported; nothing was written."""


def export_library(database: Database, library_id: str) -> dict[str, Any]:
    with database.read() as tx:
        tables = tx.library_rows(library_id)
    for table, columns in _JSON_COLUMNS.items():
        for row in tables[table]:
            for column in columns:
                if row.get(column) is not None:
                    row[column] = json_codec.loads(row[column])
    return {"format": FORMAT, "version": VERSION, "libraryId": library_id, "tables": tables}


def import_library(
    database: Database, document: Any, library_id: str | None = None
) -> tuple[str, dict[str, int]]:
    """Write an exported library, under its own id or ``library_id``, in one transaction.

    Refused (``ImportRefused``) when the document is not an export of this format or the
    library already holds anything. Returns the library id and the rows written per table.
    """
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ImportRefused(f"Not a {FORMAT} document")
    if document.get("version") != VERSION:
        raise ImportRefused(f"Unsupported version {document.get('version')!r} (need {VERSION})")
    target = library_id or document.get("libraryId")
    tables = document.get("tables")
    if not isinstance(target, str) or not target or not isinstance(tables, dict):
        raise ImportRefused("The document needs a libraryId and tables")
    rows: dict[str, list[dict[str, Any]]] = {}
    for table, entries in tables.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ImportRefused(f"Table {table!r} must be a list of objects")
        rows[table] = [_stored_row(table, entry) for entry in entries]
    with database.write() as tx:
        if tx.library_exists(target):
            raise ImportRefused(f"Library {target!r} already exists; evict it first")
        try:
            tx.insert_library_rows(target, rows)
        except (ValueError, sqlite3.Error) as error:
            raise ImportRefused(f"Cannot import: {error}") from error
    return target, {table: len(entries) for table, entries in rows.items()}


def _stored_row(table: str, entry: dict[str, Any]) -> dict[str, Any]:
    row = dict(entry)
    for column in _JSON_COLUMNS.get(table, ()):
        if row.get(column) is not None:
            row[column] = json_codec.dumps(row[column])
    return row
