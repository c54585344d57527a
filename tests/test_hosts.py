"""Libraries spread over hosts: each has one owner, and the others send its clients there."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable

import pytest
from flask import Flask

from flask_verdant import Verdant
from flask_verdant.hosts import owner_of
from flask_verdant.testing import VerdantTestClient

HOSTS = ["https://a.example/sync", "https://b.example/sync", "https://c.example/sync"]


def test_every_library_has_one_owner_and_a_new_host_takes_only_its_share() -> None:
    libraries = [f"library-{n}" for n in range(3000)]
    before = {library: owner_of(library, HOSTS) for library in libraries}
    assert set(Counter(before.values())) == set(HOSTS)
    assert min(Counter(before.values()).values()) > 800
    after = {
        library: owner_of(library, [*HOSTS, "https://d.example/sync"]) for library in libraries
    }
    moved = [library for library in libraries if before[library] != after[library]]
    assert all(after[library] == "https://d.example/sync" for library in moved)
    assert 600 < len(moved) < 900  # about a quarter


def library_owned_by(host: str) -> str:
    return next(f"lib-{n}" for n in range(1000) if owner_of(f"lib-{n}", HOSTS) == host)


def test_a_host_refuses_a_library_it_does_not_own_and_names_the_owner(
    make_app: Callable[..., Flask], database_file: str
) -> None:
    app = make_app({"VERDANT_HOSTS": ",".join(HOSTS), "VERDANT_HOST_URL": HOSTS[0]})
    mine, theirs = library_owned_by(HOSTS[0]), library_owned_by(HOSTS[1])
    with app.app_context():
        assert app.extensions["verdant"].hosts.sync_url_for(theirs) == HOSTS[1]
    stranger = VerdantTestClient(app, library_id=theirs, user_id="alice")
    response = stranger.post({"messages": [stranger.sync_message()]})
    assert response.status_code == 421
    assert response.get_json() == {
        "code": 4210,
        "message": f"Library {theirs!r} is served by {HOSTS[1]}, not by this host",
        "url": HOSTS[1],
    }
    upload = app.test_client().post(
        "/sync/files/f1", headers={"Authorization": f"Bearer {stranger.token}"}
    )
    assert upload.status_code in (421, 501)  # 501 first when no file storage is configured
    local = VerdantTestClient(app, library_id=mine, user_id="alice")
    assert local.post({"messages": [local.sync_message()]}).status_code == 200
    with sqlite3.connect(database_file) as db:
        assert [row[0] for row in db.execute("SELECT id FROM libraries")] == [mine]


def test_the_extension_tells_the_token_route_where_a_library_lives(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app({"VERDANT_HOSTS": HOSTS, "VERDANT_HOST_URL": HOSTS[2]})
    verdant = Verdant.__new__(Verdant)  # the admin methods only read the current app
    with app.app_context():
        assert verdant.sync_url_for("lib-7") == owner_of("lib-7", HOSTS)
    single = make_app()
    with single.app_context():
        assert verdant.sync_url_for("lib-7") is None


def test_a_host_url_outside_the_host_list_is_refused_at_setup(
    make_app: Callable[..., Flask],
) -> None:
    with pytest.raises(RuntimeError, match="VERDANT_HOST_URL"):
        make_app({"VERDANT_HOSTS": HOSTS, "VERDANT_HOST_URL": "https://z.example/sync"})
