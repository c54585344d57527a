"""Extension settings: constructor arguments first, then ``VERDANT_*`` config, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import MISSING, dataclass, fields
from datetime import timedelta
from typing import Any

from .presence_limits import PresenceLimits
from .validation import Limits

DEFAULT_TRUANCY_MINUTES = 60 * 24 * 14


@dataclass(frozen=True)
class Settings:
    database_file: str
    token_secret: str
    url_prefix: str = "/sync"
    replica_truancy_minutes: float = DEFAULT_TRUANCY_MINUTES
    disable_rebasing: bool = False
    max_message_bytes: int = 16 * 1024 * 1024
    presence_keepalive_seconds: float = 30.0
    pool_size: int = 8
    compaction_delay_seconds: float = 0.2
    compaction_batch_size: int = 2000
    global_ack_delay_seconds: float = 2.0  # a computed global ack waits this long to go out
    long_poll_max_seconds: float = 25.0
    # Half the presence keepalive: a half-open socket is found and leaves within 30 s.
    websocket_ping_seconds: float = 15.0
    websocket_queue_size: int = 1024
    websocket_queue_bytes: int = 4 * 1024 * 1024
    max_file_bytes: int = 100 * 1024 * 1024
    file_delete_after: float = 24 * 3600.0  # seconds a dropped file is kept (undo window)
    file_sweep_interval: float = 600.0  # seconds between sweeps; 0 disables the thread
    message_queue: str = ""  # redis://host:port/db shared by every worker; "" for one process
    message_queue_prefix: str = "verdant"  # Redis keys and channel; one per deployment
    hosts: tuple[str, ...] = ()  # every host's sync URL, when libraries are spread over hosts
    host_url: str = ""  # this host's own sync URL, one of ``hosts``
    durability: str = "fsync"  # "os": acknowledge before the fsync (see storage.durability)
    metrics_token: str | None = None  # a bearer token that /metrics requires, if set
    cors_origins: tuple[str, ...] = ()  # origins allowed to call the sync and file routes
    max_json_depth: int = Limits.max_depth
    max_token_lifetime: float = 7 * 24 * 3600.0  # seconds from now to a token's exp, at most
    max_replicas_per_user: int = 1000  # replica ids bound to one user in a library, for good
    max_presence_bytes: int = PresenceLimits.max_bytes
    max_presence_replicas: int = PresenceLimits.max_replicas  # per user and library
    presence_updates_per_second: float = PresenceLimits.per_second  # per user and library
    max_id_chars: int = Limits.max_id_chars

    @classmethod
    def resolve(cls, config: Mapping[str, Any], arguments: Mapping[str, Any]) -> Settings:
        def pick(name: str, default: Any = None) -> Any:
            value = arguments.get(name)
            if value is None:
                value = config.get(f"VERDANT_{name.upper()}")
            return default if value is None else value

        database_file = pick("database_file")
        token_secret = pick("token_secret")
        if not database_file:
            raise RuntimeError(
                "flask-verdant needs a database: pass database_file=... or set "
                "VERDANT_DATABASE_FILE (a path to an sqlite file)."
            )
        if not token_secret:
            raise RuntimeError(
                "flask-verdant needs a token secret: pass token_secret=... or set "
                "VERDANT_TOKEN_SECRET (the key that signs sync tokens)."
            )
        url_prefix = str(pick("url_prefix", "/sync"))
        if not url_prefix.startswith("/") or url_prefix.endswith("/") and url_prefix != "/":
            raise RuntimeError(
                f"VERDANT_URL_PREFIX must start with '/' and not end with one: {url_prefix!r}"
            )
        return cls(
            database_file=str(database_file),
            token_secret=str(token_secret),
            url_prefix=url_prefix,
            replica_truancy_minutes=float(pick("replica_truancy_minutes", DEFAULT_TRUANCY_MINUTES)),
            disable_rebasing=_flag(pick("disable_rebasing", False)),
            max_message_bytes=int(pick("max_message_bytes", cls.max_message_bytes)),
            presence_keepalive_seconds=float(
                pick("presence_keepalive_seconds", cls.presence_keepalive_seconds)
            ),
            pool_size=int(pick("pool_size", cls.pool_size)),
            compaction_delay_seconds=float(
                pick("compaction_delay_seconds", cls.compaction_delay_seconds)
            ),
            compaction_batch_size=int(pick("compaction_batch_size", cls.compaction_batch_size)),
            global_ack_delay_seconds=float(
                pick("global_ack_delay_seconds", cls.global_ack_delay_seconds)
            ),
            long_poll_max_seconds=float(pick("long_poll_max_seconds", cls.long_poll_max_seconds)),
            websocket_ping_seconds=float(
                pick("websocket_ping_seconds", cls.websocket_ping_seconds)
            ),
            websocket_queue_size=int(pick("websocket_queue_size", cls.websocket_queue_size)),
            websocket_queue_bytes=int(pick("websocket_queue_bytes", cls.websocket_queue_bytes)),
            max_file_bytes=int(pick("max_file_bytes", cls.max_file_bytes)),
            file_delete_after=_seconds(pick("file_delete_after", cls.file_delete_after)),
            file_sweep_interval=_seconds(pick("file_sweep_interval", cls.file_sweep_interval)),
            message_queue=str(pick("message_queue", "") or ""),
            message_queue_prefix=str(pick("message_queue_prefix", cls.message_queue_prefix)),
            durability=str(pick("durability", cls.durability)),
            **_hosts(pick("hosts", ()), str(pick("host_url", "") or "")),
            metrics_token=pick("metrics_token") or None,
            cors_origins=_origins(pick("cors_origins")),
            max_json_depth=int(pick("max_json_depth", cls.max_json_depth)),
            max_token_lifetime=_seconds(pick("max_token_lifetime", cls.max_token_lifetime)),
            max_replicas_per_user=int(pick("max_replicas_per_user", cls.max_replicas_per_user)),
            max_presence_bytes=int(pick("max_presence_bytes", cls.max_presence_bytes)),
            max_presence_replicas=int(pick("max_presence_replicas", cls.max_presence_replicas)),
            presence_updates_per_second=float(
                pick("presence_updates_per_second", cls.presence_updates_per_second)
            ),
            max_id_chars=int(pick("max_id_chars", cls.max_id_chars)),
        )

    @property
    def presence_limits(self) -> PresenceLimits:
        return PresenceLimits(
            max_bytes=self.max_presence_bytes,
            max_replicas=self.max_presence_replicas,
            per_second=self.presence_updates_per_second,
        )

    @property
    def limits(self) -> Limits:
        """What a message's values may be (``validation``)."""
        return Limits(max_depth=self.max_json_depth, max_id_chars=self.max_id_chars)


def _hosts(hosts: Any, host_url: str) -> dict[str, Any]:
    """``VERDANT_HOSTS`` as a list or as comma-separated text, checked against ``HOST_URL``."""
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    urls = tuple(str(url).strip().rstrip("/") for url in hosts if str(url).strip())
    host_url = host_url.strip().rstrip("/")
    if urls and host_url not in urls:
        raise RuntimeError(
            "VERDANT_HOST_URL must be this host's sync URL, one of VERDANT_HOSTS "
            f"({', '.join(urls)}); it is {host_url!r}"
        )
    if host_url and not urls:
        raise RuntimeError("VERDANT_HOST_URL needs VERDANT_HOSTS, the sync URLs of every host")
    return {"hosts": urls, "host_url": host_url}


# Keys read from the config that are objects rather than ``Settings`` fields.
OBJECT_KEYS = ("VERDANT_PROFILES", "VERDANT_FILE_STORAGE")


def config_key(name: str) -> str:
    return f"VERDANT_{name.upper()}"


def config_defaults() -> dict[str, Any]:
    """Every ``VERDANT_*`` key with its default (``None`` where there is none)."""
    defaults: dict[str, Any] = {key: None for key in OBJECT_KEYS}
    for field in fields(Settings):
        defaults[config_key(field.name)] = None if field.default is MISSING else field.default
    return defaults


def set_config_defaults(config: MutableMapping[str, Any]) -> None:
    """Like Flask-SQLAlchemy: ``app.config`` shows every key, the defaults included."""
    for key, value in config_defaults().items():
        config.setdefault(key, value)


def instance_relative(path: str, instance_path: str) -> str:
    """A relative path is under the app's instance folder, whatever the current directory.

    So ``flask verdant ...`` run from anywhere opens the app's database, not a new empty one.
    sqlite's special names (``:memory:``, ``file:`` URIs) are left alone.
    """
    if path == ":memory:" or path.startswith("file:") or os.path.isabs(path):
        return path
    resolved = os.path.join(instance_path, path)
    os.makedirs(os.path.dirname(resolved), exist_ok=True)
    return resolved


def _origins(value: Any) -> tuple[str, ...]:
    """Origins from a list, or from text separated by commas or spaces (environment)."""
    if not value:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    return tuple(str(item).rstrip("/") for item in items)


def _seconds(value: Any) -> float:
    """Durations may be configured as a ``timedelta`` or a number of seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _flag(value: object) -> bool:
    """A boolean from Python config or from text (environment variables, ``from_prefixed_env``)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
