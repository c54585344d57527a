"""Who may open which list: its creator, and whoever they invited.

This is the authorization a host app owes flask-verdant: the sync server trusts any token the
app signs, so the token route (``lists.token``) must only sign tokens for members. Here the
first person to open a list creates it and gets an invitation link to share; following the
link (and confirming, a form with CSRF protection) makes one a member. Kept in a small sqlite
file of its own in the instance folder.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (id TEXT PRIMARY KEY, creator TEXT NOT NULL,
                                  invite TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (list TEXT NOT NULL, user TEXT NOT NULL,
                                    PRIMARY KEY (list, user));
"""


def init_app(app: Flask) -> None:
    connection = sqlite3.connect(app.config["LISTS_DATABASE"], timeout=10)
    try:
        connection.executescript(_SCHEMA)
    finally:
        connection.close()


@contextmanager
def _database() -> Iterator[sqlite3.Connection]:
    """One short transaction: committed when the block ends, rolled back if it raises."""
    connection = sqlite3.connect(current_app.config["LISTS_DATABASE"], timeout=10)
    try:
        with connection:
            yield connection
    finally:
        connection.close()


def open_list(library: str, user_id: str) -> bool:
    """Whether the user may open the list; the first to open a new list creates it."""
    with _database() as db:
        created = db.execute(
            "INSERT OR IGNORE INTO lists (id, creator, invite) VALUES (?, ?, ?)",
            (library, user_id, secrets.token_urlsafe(16)),
        ).rowcount
        if created:
            db.execute("INSERT INTO members (list, user) VALUES (?, ?)", (library, user_id))
            return True
        return _is_member(db, library, user_id)


def is_member(library: str, user_id: str) -> bool:
    with _database() as db:
        return _is_member(db, library, user_id)


def invitation(library: str, user_id: str) -> str | None:
    """The list's invitation code, for its creator only."""
    with _database() as db:
        row = db.execute("SELECT creator, invite FROM lists WHERE id = ?", (library,)).fetchone()
    return row[1] if row and row[0] == user_id else None


def accept(library: str, user_id: str, code: str) -> bool:
    """Make the user a member if ``code`` is the list's invitation; say whether they are one."""
    with _database() as db:
        row = db.execute("SELECT invite FROM lists WHERE id = ?", (library,)).fetchone()
        if row is None or not hmac.compare_digest(row[0], code):
            return _is_member(db, library, user_id)
        db.execute("INSERT OR IGNORE INTO members (list, user) VALUES (?, ?)", (library, user_id))
        return True


def _is_member(db: sqlite3.Connection, library: str, user_id: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM members WHERE list = ? AND user = ?", (library, user_id)
    ).fetchone()
    return row is not None
