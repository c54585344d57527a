"""Who is signed in: a display name in the Flask session, and the profile peers see.

A real app has its own login. What matters for sync is that the token route only issues tokens
for the session's user, and that ``profile`` tells the server what others see of that user.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from . import membership

blueprint = Blueprint("accounts", __name__)

MAX_NAME_LENGTH = 40


@dataclass(frozen=True)
class User:
    id: str
    name: str


def current_user() -> User | None:
    user_id = session.get("user_id")
    return User(user_id, display_name(user_id)) if isinstance(user_id, str) else None


def new_user_id(name: str) -> str:
    """The name plus a random tag: two people called Ada are two users, each with their name."""
    return f"{name}#{secrets.token_hex(3)}"


def display_name(user_id: str) -> str:
    return user_id.rpartition("#")[0] or user_id


def profile(user_id: str) -> dict[str, str]:
    """Presence profiles come from the id alone, so every worker and restart agrees on them."""
    return {"id": user_id, "name": display_name(user_id)}


@blueprint.get("/")
def sign_in_page() -> str:
    return render_template(
        "sign_in.html",
        user=current_user(),
        list=request.args.get("list", "groceries"),
        invite=request.args.get("invite", ""),
    )


@blueprint.post("/sign-in")
def sign_in() -> Response:
    name = " ".join(request.form.get("name", "").split())[:MAX_NAME_LENGTH]
    library = request.form.get("list", "").strip() or "groceries"
    if not name:
        return redirect(url_for("accounts.sign_in_page", list=library))
    user = current_user()
    if user is None or user.name != name:
        session["user_id"] = new_user_id(name)
    invite = request.form.get("invite", "")
    if invite:  # came by an invitation link: join the list
        membership.accept(library, session["user_id"], invite)
    return redirect(url_for("lists.page", library=library))


@blueprint.post("/sign-out")
def sign_out() -> Response:
    session.clear()
    return redirect(url_for("accounts.sign_in_page"))
