"""Row codec: SQLite values <-> the plain JSON-able dicts the store returns; cursors; time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from daemon.errors import DamagedRow, InvalidInput
from daemon.jsonmaps import visible_map
from daemon.store.ids import is_uuid
from daemon.store.schema import BOOL_COLUMNS, JSON_COLUMNS, MAP_COLUMNS, metadata

_CURSOR_PREFIX = "k1."
logger = logging.getLogger(__name__)
#: (table, id, columns) of the damaged rows already logged; at most ``MAX_WARNED`` of them.
_WARNED: set[tuple[str, str, tuple[str, ...]]] = set()
MAX_WARNED = 10_000


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-21T07:09:32.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def dump_json(value: Any) -> str | None:
    """JSON text for a JSON column; ``None`` is stored as SQL NULL."""
    if value is None:
        return None
    return orjson.dumps(value).decode()


def dump_json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def load_json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


class RowCodec:
    """Decodes result tuples of ``SELECT <all columns> FROM table`` into dicts."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.columns: tuple[str, ...] = tuple(str(c.name) for c in metadata.tables[table].columns)
        json_cols = JSON_COLUMNS.get(table, frozenset())
        bool_cols = BOOL_COLUMNS.get(table, frozenset())
        self._json_idx = tuple(i for i, c in enumerate(self.columns) if c in json_cols)
        self._bool_idx = tuple(i for i, c in enumerate(self.columns) if c in bool_cols)
        self.json_columns = json_cols
        self.bool_columns = bool_cols
        #: no column needs converting: a row dict is its own parameters
        self.plain = not json_cols and not bool_cols

    def decode(self, values: Sequence[Any]) -> dict[str, Any]:
        """The row; DamagedRow if a JSON column cannot be read (what writes and sync use: a
        damaged value must never be taken for null)."""
        row = dict(zip(self.columns, values, strict=True))
        try:
            for i in self._json_idx:
                text = values[i]
                if text is not None:
                    row[self.columns[i]] = orjson.loads(text)
        except orjson.JSONDecodeError:  # (no cost on the happy path: found out only now)
            raise DamagedRow(self.table, str(row.get("id")), self.damaged(values)) from None
        for i in self._bool_idx:
            row[self.columns[i]] = bool(values[i])
        return row

    def decode_shown(self, values: Sequence[Any]) -> dict[str, Any]:
        """The row as the local API shows it: a damaged row too, its unreadable columns null
        and named in ``damaged`` (so one bad row hides neither itself nor the others)."""
        try:
            return self.decode(values)
        except DamagedRow:
            return self._marked(values)

    def damaged(self, values: Sequence[Any]) -> tuple[str, ...]:
        """The JSON columns of ``values`` that cannot be read (logged once per row)."""
        bad = []
        for i in self._json_idx:
            try:
                load_json(values[i])
            except orjson.JSONDecodeError:
                bad.append(self.columns[i])
        found = tuple(bad)
        key = (self.table, str(values[self.columns.index("id")]), found)
        if key not in _WARNED and len(_WARNED) < MAX_WARNED:
            _WARNED.add(key)
            logger.warning("store.damaged_row table=%s id=%s columns=%s", *key[:2], ",".join(found))
        return found

    def _marked(self, values: Sequence[Any]) -> dict[str, Any]:
        damaged = self.damaged(values)
        shown = list(values)
        for i, name in enumerate(self.columns):
            if name in damaged:
                shown[i] = None
        row = self.decode(shown)
        row["damaged"] = list(damaged)
        return row

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        """Parameters for an INSERT/UPDATE from a row dict (only the keys present)."""
        params = dict(row)
        for col in self.json_columns.intersection(row):
            value = row[col]
            params[col] = None if value is None else orjson.dumps(value).decode()
        for col in self.bool_columns.intersection(row):
            params[col] = 1 if row[col] else 0
        return params


def shown_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as a reader sees it: its JSON maps (``MAP_COLUMNS``) without their tombstoned
    (null) keys, which only the merge needs (R3, daemon/sync/merge.py). What the local API
    answers and its events carry; the store keeps the tombstones. ``row`` itself when it holds
    none (no copy)."""
    maps = MAP_COLUMNS.get(table)
    if not maps:
        return row
    shown = None
    for col in maps:
        value = row.get(col)
        if isinstance(value, dict) and None in value.values():
            shown = shown if shown is not None else dict(row)
            shown[col] = visible_map(value)
    return row if shown is None else shown


def encode_cursor(key: str, scope: str = "") -> str:
    """An opaque cursor for the position ``key`` (an id) in the list ``scope`` names."""
    body = f"{scope}/{key}" if scope else key
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str = "cursor", scope: str | None = None) -> str:
    """The key inside an opaque cursor; InvalidInput naming ``field`` if it is not one of ours,
    or (``scope`` given) if it was returned by another list, or the list with other filters."""
    if not isinstance(cursor, str) or not cursor.startswith(_CURSOR_PREFIX):
        raise InvalidInput(field, "not a cursor returned by this API")
    body = cursor[len(_CURSOR_PREFIX) :]
    try:
        text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(field, "not a cursor returned by this API") from None
    found, _, key = text.rpartition("/")
    if not is_uuid(key):
        raise InvalidInput(field, "not a cursor returned by this API")
    if scope is not None and found != scope:
        raise InvalidInput(
            field,
            "a cursor of another list, or of this list with other filters: list again without it",
        )
    return key


def list_scope(sql: str, filters: dict[str, Any]) -> str:
    """A short tag of one list with its filters (its statement and their values), which its
    cursors carry (``encode_cursor``): a cursor is refused by any other."""
    text = orjson.dumps([sql, filters], option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(hashlib.blake2b(text, digest_size=6).digest()).decode()
