"""A shared todo list per library, synced by the real Verdant client through flask-verdant.

Run it with ``bash example_app/run.sh`` (see the README's guided tour). Three modules:

- here, ``create_app``: config and the ``Verdant`` extension (database, token secret,
  profiles for presence, file storage for image attachments);
- ``accounts``: who you are (a display name in the Flask session) and the profile peers see;
- ``lists``: the list page and the token route the browser's Verdant client calls.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from flask_verdant import LocalFileStorage, Verdant

from . import accounts, lists

verdant = Verdant(profiles=accounts.profile)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        # Dev-only defaults: set FLASK_SECRET_KEY and FLASK_VERDANT_TOKEN_SECRET in production.
        SECRET_KEY="dev-only-session-key-change-me-in-production",
        VERDANT_TOKEN_SECRET="dev-only-secret-change-me-in-production",
        VERDANT_DATABASE_FILE=os.path.join(app.instance_path, "verdant.sqlite3"),
        FILES_DIRECTORY=os.path.join(app.instance_path, "files"),
    )
    app.config.from_prefixed_env()  # FLASK_<KEY>=... overrides any of the above
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["VERDANT_FILE_STORAGE"] = LocalFileStorage(app.config["FILES_DIRECTORY"])
    verdant.init_app(app)
    app.register_blueprint(accounts.blueprint)
    app.register_blueprint(lists.blueprint)
    return app
