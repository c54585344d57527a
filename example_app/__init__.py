"""A shared todo list per library, synced by the real Verdant client through flask-verdant.

Run it with ``bash example_app/run.sh`` (see the README's guided tour). The modules:

- here, ``create_app``: config and the ``Verdant`` extension (database, token secret,
  profiles for presence, file storage for image attachments), and the session cookie;
- ``instance_secrets``: the session key and the token secret, random per instance unless set;
- ``accounts``: who you are (a display name in the Flask session) and the profile peers see;
- ``membership``: who may open which list (its creator and whoever they invited);
- ``lists``: the list page and the token route the browser's Verdant client calls;
- ``csrf``: the token every form of the app carries.

Behind a reverse proxy set ``FLASK_BEHIND_PROXY=1``: Werkzeug's ``ProxyFix`` then takes the
client's address (which flask-verdant's refusal throttle counts by) and scheme (``https`` makes
the session cookie ``Secure``) from the proxy's ``X-Forwarded-*`` headers.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_verdant import LocalFileStorage, Verdant

from . import accounts, csrf, instance_secrets, lists, membership

verdant = Verdant(profiles=accounts.profile)


def create_app(
    test_config: dict[str, Any] | None = None, *, instance_path: str | None = None
) -> Flask:
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    app.config.from_mapping(
        VERDANT_DATABASE_FILE=os.path.join(app.instance_path, "verdant.sqlite3"),
        FILES_DIRECTORY=os.path.join(app.instance_path, "files"),
        LISTS_DATABASE=os.path.join(app.instance_path, "lists.sqlite3"),
        SESSION_COOKIE_SAMESITE="Lax",
        BEHIND_PROXY=False,
    )
    app.config.from_prefixed_env()  # FLASK_<KEY>=... overrides any of the above
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    if not all(app.config.get(key) for key in instance_secrets.KEYS):
        generated = instance_secrets.load_or_create(app.instance_path)
        for key in instance_secrets.KEYS:
            app.config[key] = app.config.get(key) or generated[key]
    if app.config["BEHIND_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.session_interface = _SessionCookies()
    app.config["VERDANT_FILE_STORAGE"] = LocalFileStorage(app.config["FILES_DIRECTORY"])
    verdant.init_app(app)
    membership.init_app(app)
    app.register_blueprint(accounts.blueprint)
    app.register_blueprint(lists.blueprint)
    csrf.init_app(app, ("accounts", "lists"))
    return app


class _SessionCookies(SecureCookieSessionInterface):
    """The session cookie is ``Secure`` whenever the page came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)
