"""The Flask extension: configuration, the ``/sync`` blueprint, the CLI and admin methods."""

from __future__ import annotations

import atexit
import dataclasses
import weakref
from typing import Any

from flask import Blueprint, Flask, current_app

from . import websocket_transport
from .cli import verdant_cli
from .cors import register_cors
from .files import FileStorage, LocalFileStorage
from .files.views import register_file_routes
from .health import register_health_routes
from .http_transport import sync_view
from .metrics import register_metrics
from .oids import create_oid
from .profiles import ProfileLoader
from .server import SyncServer
from .settings import Settings, instance_relative, set_config_defaults


class Verdant:
    """Adds a Verdant sync server to a Flask app.

    State lives in ``app.extensions["verdant"]``; the extension object keeps only the
    constructor arguments, so one instance can serve several apps (application factories).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        database_file: str | None = None,
        token_secret: str | None = None,
        profiles: ProfileLoader | None = None,
        url_prefix: str | None = None,
        replica_truancy_minutes: float | None = None,
        disable_rebasing: bool | None = None,
        file_storage: FileStorage | None = None,
    ) -> None:
        self._arguments: dict[str, Any] = {
            "database_file": database_file,
            "token_secret": token_secret,
            "url_prefix": url_prefix,
            "replica_truancy_minutes": replica_truancy_minutes,
            "disable_rebasing": disable_rebasing,
        }
        self._profiles = profiles
        self._file_storage = file_storage
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if "verdant" in app.extensions:
            raise RuntimeError("flask-verdant is already set up on this app")
        set_config_defaults(app.config)
        settings = Settings.resolve(app.config, self._arguments)
        settings = dataclasses.replace(
            settings, database_file=instance_relative(settings.database_file, app.instance_path)
        )
        profiles = self._profiles or app.config.get("VERDANT_PROFILES")
        file_storage = self._file_storage or app.config.get("VERDANT_FILE_STORAGE")
        if isinstance(file_storage, str):
            file_storage = LocalFileStorage(file_storage)
        if isinstance(file_storage, LocalFileStorage):
            file_storage = file_storage.under(app.instance_path)
        server = SyncServer(settings, profiles, file_storage)
        server.events.sender = app
        app.extensions["verdant"] = server
        # At exit (a gunicorn worker stopping included): transactions end, the WAL is folded in.
        atexit.register(_close_at_exit, weakref.ref(server))
        app.before_request(server.files.sweeper.wake)
        blueprint = Blueprint("verdant", __name__, url_prefix=settings.url_prefix)
        blueprint.add_url_rule("", "sync", sync_view, methods=["POST"], strict_slashes=False)
        register_file_routes(blueprint)
        register_health_routes(blueprint)
        register_metrics(app, blueprint, server)
        register_cors(blueprint, settings.cors_origins)
        websocket_transport.register(blueprint)
        app.register_blueprint(blueprint)
        app.cli.add_command(verdant_cli)

    @staticmethod
    def _server() -> SyncServer:
        try:
            server: SyncServer = current_app.extensions["verdant"]
        except RuntimeError as exc:
            raise RuntimeError(
                "flask-verdant admin methods need an application context "
                "(with app.app_context(): ...)"
            ) from exc
        except KeyError as exc:
            raise RuntimeError("flask-verdant is not set up on the current app") from exc
        return server

    def evict_library(self, library_id: str) -> None:
        """Delete a library's server copy; connected replicas re-upload theirs (need-since)."""
        self._server().evict_library(library_id)

    def evict_user(self, library_id: str, user_id: str) -> int:
        """Forget a user's replicas; their next sync resets them to the server's state."""
        return self._server().evict_user(library_id, user_id)

    def get_library_info(self, library_id: str) -> dict[str, Any]:
        return self._server().library_info(library_id)

    def get_document_snapshot(
        self, library_id: str, collection: str, document_id: str
    ) -> dict[str, Any] | None:
        """The document as the server knows it now: nested objects resolved, files described."""
        server = self._server()
        snapshot = server.engine.document_snapshot(
            library_id,
            create_oid(collection, document_id),
            lambda file_id: server.describe_file(library_id, file_id),
        )
        return snapshot if isinstance(snapshot, dict) else None

    def get_library_presence(self, library_id: str) -> dict[str, Any]:
        return self._server().library_presence(library_id)

    def refresh_profile(self, user_id: str) -> None:
        """The host changed a user's profile: every worker loads it again before next use."""
        self._server().refresh_profile(user_id)

    def sync_url_for(self, library_id: str) -> str | None:
        """The sync URL of the host that owns the library (``VERDANT_HOSTS``), else None.

        Put it in the token (``TokenProvider.get_token(sync_endpoint=...)``): the client syncs
        where its token's ``url`` claim says.
        """
        return self._server().hosts.sync_url_for(library_id)


def _close_at_exit(reference: weakref.ref[SyncServer]) -> None:
    server = reference()
    if server is not None:
        server.close()
