"""HTTP endpoints for files, under the sync blueprint's ``url_prefix`` (docs/protocol.md, "Files").

- ``POST /files/<file_id>``: multipart upload; 200 ``{"success": true}`` once stored.
- ``GET /files/<file_id>``: the file's info, ``{id, url, remote, name, type}``.
- ``GET /files/<file_id>/<upload_id>/<name>``: the bytes, when the storage has no URLs of
  its own. Like a static file host it needs no token (browsers load it from ``<img src>``);
  the random upload id in the URL is what grants access.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import wrap_file

from .. import json_codec
from ..errors import ErrorCode, VerdantError, bad_request
from ..http_transport import error_response, request_token
from ..tokens import TokenInfo
from .service import FileService

logger = logging.getLogger("flask_verdant")

_ONE_YEAR = 365 * 24 * 3600


def register_file_routes(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/files/<file_id>", "file_upload", upload_view, methods=["POST"])
    blueprint.add_url_rule("/files/<file_id>", "file_info", info_view, methods=["GET"])
    blueprint.add_url_rule(
        "/files/<file_id>/<upload_id>/<name>", "file_data", data_view, methods=["GET"]
    )
    # ids with separators (even percent-encoded ones) land here instead of in a bare 404
    blueprint.add_url_rule(
        "/files/<path:rest>", "file_bad_path", bad_path_view, methods=["GET", "POST"]
    )


def _files() -> FileService:
    service: FileService = current_app.extensions["verdant"].files
    return service


def _json_errors(view: Callable[..., Response]) -> Callable[..., Response]:
    """Answer failures as the JSON errors clients parse, like the sync endpoint does."""

    @functools.wraps(view)
    def wrapper(**kwargs: Any) -> Response:
        try:
            return view(**kwargs)
        except VerdantError as error:
            return error_response(error)
        except HTTPException:  # e.g. 416 for a range beyond the file: Flask renders it
            raise
        except Exception:
            logger.exception("File request failed")
            return error_response(VerdantError(ErrorCode.UNEXPECTED, "Internal server error"))

    return wrapper


def _sender() -> TokenInfo:
    """The request's verified token, for a library this host owns."""
    server = current_app.extensions["verdant"]
    sender: TokenInfo = server.authenticate(request_token(request), address=request.remote_addr)
    server.hosts.check(sender.library_id)
    return sender


@_json_errors
def upload_view(file_id: str) -> Response:
    files = _files()
    files.require_storage()
    sender = _sender()
    files.upload(sender, file_id, request.stream, request.content_type, request.content_length)
    return _json({"success": True})


@_json_errors
def info_view(file_id: str) -> Response:
    files = _files()
    files.require_storage()
    sender = _sender()
    info = files.get(sender, file_id)
    return _json(
        {
            "id": info.file_id,
            "url": files.download_url(info),
            "remote": True,
            "name": info.name,
            "type": info.type,
        }
    )


@_json_errors
def data_view(file_id: str, upload_id: str, name: str) -> Response:
    files = _files()
    info = files.find_upload(file_id, upload_id, name)
    try:
        stream = files.require_storage().open(info)
    except FileNotFoundError as exc:
        raise VerdantError(ErrorCode.NOT_FOUND, "The file's bytes are gone") from exc
    response = Response(
        wrap_file(request.environ, stream), content_type=info.type, direct_passthrough=True
    )
    response.content_length = info.size
    response.last_modified = info.uploaded_at_ms / 1000  # type: ignore[assignment]
    response.set_etag(upload_id)
    # one URL, one upload: its bytes never change
    response.cache_control.public = True
    response.cache_control.max_age = _ONE_YEAR
    response.cache_control.immutable = True
    # uploads are untrusted: never let one run as a page of this origin
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    try:
        response.make_conditional(request, accept_ranges=True, complete_length=info.size)
    except HTTPException:
        response.close()
        raise
    return response


@_json_errors
def bad_path_view(rest: str) -> Response:
    raise bad_request(f"Not a file id: {rest!r}")


def _json(body: dict[str, Any]) -> Response:
    return Response(json_codec.dumps(body), status=200, mimetype="application/json")
