"""The list page, and the token route that its Verdant client calls before it syncs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, url_for

from flask_verdant import TokenProvider

from . import membership
from .accounts import current_user

blueprint = Blueprint("lists", __name__)

MAX_LIBRARY_LENGTH = 64  # the library id names a directory of the file storage


@blueprint.get("/l/<library>")
def page(library: str) -> Any:
    user = current_user()
    if user is None:
        return redirect(url_for("accounts.sign_in_page", list=library))
    if not membership.open_list(_checked(library), user.id):
        return render_template("not_a_member.html", library=library, user=user), 403
    code = membership.invitation(library, user.id)
    invitation = code and url_for(
        "accounts.sign_in_page", list=library, invite=code, _external=True
    )
    return render_template("list.html", library=library, user=user, invitation=invitation)


@blueprint.get("/auth/<library>")
def token(library: str) -> Any:
    """The client's ``authEndpoint``: a token for the session's user, never for anyone else,
    and only for a list they are a member of: the sync server trusts every token we sign."""
    user = current_user()
    if user is None:
        return jsonify(code=4010, message="Sign in first"), 401
    if not membership.is_member(_checked(library), user.id):
        return jsonify(code=4030, message="You are not a member of this list"), 403
    from . import verdant  # the app package imports this module before it makes `verdant`

    tokens = TokenProvider(secret=current_app.config["VERDANT_TOKEN_SECRET"])
    access_token = tokens.get_token(
        library_id=_checked(library),
        user_id=user.id,
        # the client reads its sync, websocket and file URLs from this claim: the library's
        # host when there are several (VERDANT_HOSTS), else this one
        sync_endpoint=verdant.sync_url_for(library) or url_for("verdant.sync", _external=True),
    )
    return jsonify(accessToken=access_token)


def _checked(library: str) -> str:
    if len(library) > MAX_LIBRARY_LENGTH:
        abort(404)
    return library
