"""Settings: the only code that reads environment variables and ``config.toml``.

Precedence, highest first: command-line flags, ``SYNCD_*`` environment variables,
``<data-dir>/config.toml``, defaults. Every bad value raises ``ConfigError`` naming the key
(``SYNCD_PORT``, ``bridge.port``, ``--port``). Settings are frozen; components receive their own
slice (``settings.store``, ``settings.bridge``...). Tests build ``Settings(...)`` directly.

config.toml::

    log_level = "INFO"
    event_loop = "auto"          # or "uvloop", "asyncio" (see daemon/loop.py)
    [store]
    synchronous = "NORMAL"        # or "FULL"
    busy_timeout_ms = 5000
    changelog_retain = 100000
    changelog_retain_bytes = 67108864   # and at most this much of their data (64 MiB)
    integrity_check = true        # PRAGMA quick_check in the background after start
    [bridge]
    port = 7749                   # 0 = any free port
    max_frame_bytes = 1048576
    allowed_origins = ["http://localhost:3000"]
    send_queue_size = 16384
    send_queue_bytes = 67108864   # 64 MiB
    spin_us = 300                 # 0 = the loop sleeps as soon as it is idle
    [cloud]
    url = "http://127.0.0.1:54321"
    anon_key = "..."
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

import platformdirs

from daemon.errors import ConfigError
from daemon.loop import EVENT_LOOPS, EventLoopChoice

ENV_PREFIX = "SYNCD_"
CONFIG_FILE = "config.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Secret:
    """A string that never shows itself in ``repr``/``str`` (logs, tracebacks, status)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value; call only where it is sent, never where it is shown."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class StoreSettings:
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # Timeouts
    busy_timeout_ms: int = 5000
    # Limits
    changelog_retain: int = 100_000
    #: the kept entries' data is pruned to at most this many bytes (counted in characters:
    #: store/changelog_size.py), oldest first; the newest entry is always kept
    changelog_retain_bytes: int = 64 << 20
    #: ``PRAGMA quick_check`` once the daemon listens, in the background (store/integrity.py)
    integrity_check: bool = True


@dataclass(frozen=True)
class BridgeSettings:
    host: str = "127.0.0.1"
    port: int = 7749  # 0 = any free port
    # Limits
    max_frame_bytes: int = 1 << 20
    allowed_origins: tuple[str, ...] = ()  # added to the built-in list
    #: Per-connection outgoing queue bound (messages). One pulled page commits one event per
    #: row at once (a first sync's pages: 4000 rows), so the bound holds a few such pages: a
    #: subscriber that reads is never dropped for a burst; one that stops reading is, once
    #: ~16k frames wait (a few MB).
    send_queue_size: int = 16384
    # Latency: the event loop keeps polling this long after each reply (ui_bridge/hot.py)
    spin_us: int = 300
    # Limits (after spin_us: positional construction keeps its order)
    #: The same queue's bound in bytes: a client that stops reading while large events are
    #: written (256 KiB messages) would otherwise pin up to 16384 such frames (GBs) before
    #: being dropped. Past it the client is dropped (1008) as for the frame bound.
    send_queue_bytes: int = 64 << 20


@dataclass(frozen=True)
class CloudSettings:
    url: str | None = None
    anon_key: Secret | None = None

    @property
    def configured(self) -> bool:
        return self.url is not None and self.anon_key is not None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    store: StoreSettings = field(default_factory=StoreSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    log_level: str = "INFO"
    event_loop: EventLoopChoice = "auto"


# A source of raw values: (key shown in errors, raw value) per setting name, or absent.
_Raw = dict[str, tuple[str, Any]]

# setting name -> (env var suffix, toml section, toml key)
_KEYS: dict[str, tuple[str, str | None, str]] = {
    "log_level": ("LOG_LEVEL", None, "log_level"),
    "event_loop": ("EVENT_LOOP", None, "event_loop"),
    "store.synchronous": ("SYNCHRONOUS", "store", "synchronous"),
    "store.busy_timeout_ms": ("BUSY_TIMEOUT_MS", "store", "busy_timeout_ms"),
    "store.changelog_retain": ("CHANGELOG_RETAIN", "store", "changelog_retain"),
    "store.changelog_retain_bytes": (
        "CHANGELOG_RETAIN_BYTES",
        "store",
        "changelog_retain_bytes",
    ),
    "store.integrity_check": ("INTEGRITY_CHECK", "store", "integrity_check"),
    "bridge.port": ("PORT", "bridge", "port"),
    "bridge.max_frame_bytes": ("MAX_FRAME_BYTES", "bridge", "max_frame_bytes"),
    "bridge.allowed_origins": ("ALLOWED_ORIGINS", "bridge", "allowed_origins"),
    "bridge.send_queue_size": ("SEND_QUEUE_SIZE", "bridge", "send_queue_size"),
    "bridge.send_queue_bytes": ("SEND_QUEUE_BYTES", "bridge", "send_queue_bytes"),
    "bridge.spin_us": ("SPIN_US", "bridge", "spin_us"),
    "cloud.url": ("CLOUD_URL", "cloud", "url"),
    "cloud.anon_key": ("CLOUD_ANON_KEY", "cloud", "anon_key"),
}


# Modes of what syncd creates: its data dir (and logs/) are private to the user, and so is every
# file in them (the database with its -wal/-shm, logs, daemon.json, the lock): conversations are
# private data, and on a multi-user machine the umask's usual 0644 would let anyone read them.
DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) and its missing parents (the usual mode, as ``mkdir -p``).

    A directory that exists already keeps its mode: the user chose it (it may be shared on
    purpose, or hold other things); the files syncd writes in it are 0600 all the same.
    """
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)


def check_owned(what: str, path: Path, *, uid: int | None = None) -> None:
    """ConfigError unless ``path`` (when it exists) belongs to ``uid`` (this process's user)
    and is not writable by every user, as ssh's StrictModes asks of ~/.ssh: another user who
    could write into the data dir could put a ``config.toml`` there sending the cloud login to
    their server, or a ``daemon.json`` sending a client's token and calls to their port.
    (Nothing to check where there are no user ids: Windows.)"""
    if uid is None:
        if not hasattr(os, "geteuid"):
            return
        uid = os.geteuid()
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(what, f"cannot read {path}: {exc.strerror or exc}") from exc
    if st.st_uid != uid:
        raise ConfigError(
            what,
            f"{path} belongs to another user (uid {st.st_uid}); syncd uses only a data dir"
            " and config.toml of its own user (chown it, or choose another --data-dir)",
        )
    if st.st_mode & 0o002:
        raise ConfigError(
            what,
            f"{path} is writable by every user; syncd refuses it (chmod o-w, or chmod 700)",
        )


def default_data_dir() -> Path:
    """The platform's user data dir for syncd."""
    return Path(platformdirs.user_data_dir("syncd", appauthor=False))


def resolve_data_dir(
    data_dir: Path | None = None, *, environ: Mapping[str, str] = os.environ
) -> Path:
    """``--data-dir``, else ``SYNCD_DATA_DIR``, else the platform's user data dir."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = environ.get(ENV_PREFIX + "DATA_DIR")
    if env is not None:
        if not env.strip():
            raise ConfigError("SYNCD_DATA_DIR", "must not be empty")
        return Path(env).expanduser()
    return default_data_dir()


def load_settings(
    *,
    data_dir: Path | None = None,
    port: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Settings:
    """Build Settings from flags > SYNCD_* environment > <data-dir>/config.toml > defaults."""
    resolved = resolve_data_dir(data_dir, environ=environ)
    check_owned("data dir", resolved)
    check_owned(CONFIG_FILE, resolved / CONFIG_FILE)
    raw: _Raw = {}
    for source in (_read_toml(resolved / CONFIG_FILE), _read_env(environ)):
        for name, (key, value) in source.items():
            _CASTS[name](key, value)  # a bad value stops us, even one a later source overrides
        raw.update(source)
    if port is not None:
        raw["bridge.port"] = ("--port", port)
    return _build(resolved, raw)


def _read_env(environ: Mapping[str, str]) -> _Raw:
    raw: _Raw = {}
    for name, (suffix, _section, _key) in _KEYS.items():
        value = environ.get(ENV_PREFIX + suffix)
        if value is not None:
            raw[name] = (ENV_PREFIX + suffix, value)
    return raw


def _read_toml(path: Path) -> _Raw:
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8
        raise ConfigError(str(path), f"cannot read config file: {exc}") from exc
    by_location = {(section, key): name for name, (_, section, key) in _KEYS.items()}
    sections = {section for (section, _key) in by_location if section is not None}
    raw: _Raw = {}
    for top, value in doc.items():
        if top in sections:
            if not isinstance(value, dict):
                raise ConfigError(top, f"must be a table ([{top}])")
            for key, sub in value.items():
                name = by_location.get((top, key))
                if name is None:
                    raise ConfigError(f"{top}.{key}", "unknown setting")
                raw[name] = (f"{top}.{key}", sub)
        else:
            name = by_location.get((None, top))
            if name is None:
                raise ConfigError(top, "unknown setting")
            raw[name] = (top, value)
    return raw


def _build(data_dir: Path, raw: _Raw) -> Settings:
    # Only what a source set, by section; everything else keeps the dataclasses' defaults.
    values: dict[str, dict[str, Any]] = {"": {}, "store": {}, "bridge": {}, "cloud": {}}
    for name in _KEYS:
        if name in raw:
            key, value = raw[name]
            section, _, field_name = name.rpartition(".")
            values[section][field_name] = _CASTS[name](key, value)
    return Settings(
        data_dir=data_dir,
        store=StoreSettings(**values["store"]),
        bridge=BridgeSettings(**values["bridge"]),
        cloud=CloudSettings(**values["cloud"]),
        **values[""],
    )


def _int_in(low: int, high: int) -> Callable[[str, Any], int]:
    def cast_int(key: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(key, f"must be an integer, not {value!r}")
        if isinstance(value, str):
            try:
                value = int(value.strip().replace("_", ""), 10)
            except ValueError:
                raise ConfigError(key, f"must be an integer, not {value!r}") from None
        if not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, not {value!r}")
        if not low <= value <= high:
            raise ConfigError(key, f"must be between {low} and {high}, not {value}")
        return value

    return cast_int


def _synchronous(key: str, value: Any) -> Literal["NORMAL", "FULL"]:
    text = _text(key, value).upper()
    if text not in ("NORMAL", "FULL"):
        raise ConfigError(key, f"must be NORMAL or FULL, not {value!r}")
    return cast(Literal["NORMAL", "FULL"], text)


_TRUE: Final = ("true", "1", "yes", "on")
_FALSE: Final = ("false", "0", "no", "off")


def _bool(key: str, value: Any) -> bool:
    """A TOML boolean, or (from the environment) true/false, 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(key, f"must be true or false, not {value!r}")


def _log_level(key: str, value: Any) -> str:
    text = _text(key, value).upper()
    if text not in LOG_LEVELS:
        raise ConfigError(key, f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return text


def _event_loop(key: str, value: Any) -> EventLoopChoice:
    text = _text(key, value).lower()
    if text not in EVENT_LOOPS:
        raise ConfigError(key, f"must be one of {', '.join(EVENT_LOOPS)}, not {value!r}")
    return cast(EventLoopChoice, text)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, "must be a non-empty string")
    return value.strip()


def _secret(key: str, value: Any) -> Secret:
    return Secret(_text(key, value))


def _url(key: str, value: Any) -> str:
    text = _text(key, value)
    if not text.startswith(("http://", "https://")):
        raise ConfigError(key, f"must be an http(s) URL, not {text!r}")
    return text.rstrip("/")


def _origins(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        raise ConfigError(key, "must be a comma-separated string or a list of strings")
    return tuple(_origin(key, item) for item in items)


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _origin(key: str, text: str) -> str:
    """``text`` as a browser sends it in ``Origin``: ``scheme://host[:port]``, scheme and host
    lower-cased, no trailing slash. An entry ending in ``*`` is a prefix, in one of two forms:
    any port of one host (``http://localhost:*``), or any origin of an application's own
    scheme (``vscode-webview://*``). Anything else (a path, a query, a fragment, user info, no
    scheme, a bad port) is refused: it could never equal an Origin header, so the page it was
    meant for would be refused with 403. So is a wildcard that admits more than it says: one
    that goes on into the host (``https://app.example*`` admits
    ``https://app.example.evil.net``), or any web page at all (``http://*``, ``https://*``)."""
    bad = ConfigError(
        key,
        f"not an origin (scheme://host[:port], no path, query or fragment): {text!r}",
    )
    wildcard = text.endswith("*")
    body = text[:-1] if wildcard else text
    scheme, sep, authority = body.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme.lower()):
        raise bad
    if wildcard and (authority or scheme.lower() in _DEFAULT_PORTS):
        if not _any_port_of(authority):
            raise ConfigError(
                key,
                f"a wildcard may stand for a port (http://localhost:*) or for every origin of an "
                f"application's scheme (vscode-webview://*), not for a host or web page: {text!r}",
            )
    if not wildcard and authority.endswith("/"):
        authority = authority[:-1]
    if any(c in authority for c in "/?#@*\\ ") or (not authority and not wildcard):
        raise bad
    if not wildcard and not _is_host_port(authority):
        raise bad
    scheme, authority = scheme.lower(), authority.lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if not wildcard and default_port and authority.endswith(default_port):
        authority = authority.removesuffix(default_port)  # browsers leave it out
    return f"{scheme}://{authority}" + ("*" if wildcard else "")


def _any_port_of(authority: str) -> bool:
    """``host:`` (before a wildcard: any port of that one host)."""
    host = authority.removesuffix(":")
    return host != authority and _is_host_port(host) and urlsplit("//" + host).port is None


def _is_host_port(authority: str) -> bool:
    """``host`` or ``host:port`` with a port in 0-65535."""
    try:
        parts = urlsplit("//" + authority)
        port = parts.port  # raises ValueError when not a number in range
    except ValueError:
        return False
    return bool(parts.hostname) and (port is not None or not authority.endswith(":"))


#: Each setting's check and conversion; ConfigError names the key as its source spells it.
_CASTS: Final[dict[str, Callable[[str, Any], Any]]] = {
    "store.synchronous": _synchronous,
    "store.busy_timeout_ms": _int_in(0, 600_000),
    "store.changelog_retain": _int_in(1, 10**9),
    "store.changelog_retain_bytes": _int_in(1, 1 << 50),
    "store.integrity_check": _bool,
    "bridge.port": _int_in(0, 65535),
    "bridge.max_frame_bytes": _int_in(1024, 1 << 30),
    "bridge.allowed_origins": _origins,
    "bridge.send_queue_size": _int_in(1, 1 << 20),
    "bridge.send_queue_bytes": _int_in(1 << 16, 1 << 40),
    "bridge.spin_us": _int_in(0, 10_000),
    "cloud.anon_key": _secret,
    "cloud.url": _url,
    "log_level": _log_level,
    "event_loop": _event_loop,
}
