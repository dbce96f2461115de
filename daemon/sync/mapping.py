"""Local rows <-> cloud rows (pure: no I/O, no clock).

The local store and the cloud (migrations/cloud/0001_tables.sql, 0008_documents.sql) hold the
same synced tables under the same names; they differ in a few columns:

- renamed: ``conversations.type`` is ``conversation_type`` in the cloud (its clock too);
- local-only, never pushed: ``workspaces.path`` (a folder on this machine), and
  ``tasks.attempts`` / ``lease_owner`` / ``lease_expires_at`` (this device's queue state),
  ``documents.snapshot`` / ``snapshot_seq`` (this device's compaction) and ``doc_updates.seq``
  (its local apply order); a document's content travels only as ``doc_updates`` rows, whose
  ``data`` is the Yjs update in base64 both in the outbox and in the cloud;
- cloud-only, dropped on apply: ``workspaces.org_id/slug/created_by/last_active_at``,
  ``conversations.started_by``, ``messages.sender_user_id/sender_agent_id/model_used``,
  ``tasks.created_by``, ``documents.created_by``, and the cursor columns ``_txid``/``_seq``;
- timestamps: the cloud answers ``timestamptz`` as ``2026-11-21T07:09:32.123+00:00``; they are
  rewritten to the store's form ``2026-11-21T07:09:32.123Z`` so that our own pushes come back
  identical (no echo) and every device stores the same text (convergence);
- NOT NULL JSON columns: the store keeps a null JSON value as the column's empty value, as the
  cloud does (``{}``, ``next_steps`` ``[]``), so a row comes back as it went; a null left by an
  earlier version is still pushed as that empty value, never as a null the cloud refuses.

A workspace change carries ``org_id`` (from its link) so that the cloud can check membership and
create the row. Bookkeeping keys (``id``, ``hlc``, ``field_hlc``, ``origin``) never travel as
fields. Every local change carries ``updated_at`` under its own clock (the store clocks every
field it writes), so nothing is added here. ``cloud_change`` returns None when nothing remains
to push (only local-only columns): the caller settles such an outbox entry locally.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final

__all__ = [
    "CLOUD_TABLES",
    "LOCAL_COLUMNS",
    "LOCAL_ONLY",
    "cloud_change",
    "local_change",
    "local_defaults",
    "normalize_timestamp",
    "pulled_columns",
]

#: Every column of the local synced tables (daemon/store/schema.py; a unit test compares).
LOCAL_COLUMNS: Final[Mapping[str, frozenset[str]]] = {
    "workspaces": frozenset(
        {
            "id", "name", "path", "description", "status", "task_goal", "current_step",
            "progress_data", "next_steps", "shared_memory", "created_at", "updated_at",
            "deleted_at", "hlc", "field_hlc", "origin",
        }
    ),
    "conversations": frozenset(
        {
            "id", "workspace_id", "name", "type", "is_archived", "created_at", "updated_at",
            "deleted_at", "hlc", "field_hlc", "origin",
        }
    ),
    "messages": frozenset(
        {
            "id", "workspace_id", "conversation_id", "role", "content", "created_at",
            "updated_at", "deleted_at", "hlc", "origin",
        }
    ),
    "tasks": frozenset(
        {
            "id", "workspace_id", "kind", "payload", "status", "priority", "progress",
            "attempts", "lease_owner", "lease_expires_at", "created_at", "updated_at",
            "deleted_at", "hlc", "field_hlc", "origin",
        }
    ),
    "documents": frozenset(
        {
            "id", "workspace_id", "name", "snapshot", "snapshot_seq", "created_at",
            "updated_at", "deleted_at", "hlc", "field_hlc", "origin",
        }
    ),
    "doc_updates": frozenset(
        {"seq", "id", "doc_id", "workspace_id", "data", "created_at", "hlc", "origin"}
    ),
}  # fmt: skip
CLOUD_TABLES: Final = frozenset(LOCAL_COLUMNS)
#: Columns that never leave the device.
LOCAL_ONLY: Final[Mapping[str, frozenset[str]]] = {
    "workspaces": frozenset({"path"}),
    "tasks": frozenset({"attempts", "lease_owner", "lease_expires_at"}),
    "documents": frozenset({"snapshot", "snapshot_seq"}),
    "doc_updates": frozenset({"seq"}),
}
#: The values a row new to this device gets for its local-only columns.
_LOCAL_DEFAULTS: Final[Mapping[str, Mapping[str, Any]]] = {
    "workspaces": {"path": None},
    "tasks": {"attempts": 0, "lease_owner": None, "lease_expires_at": None},
    "documents": {"snapshot": None, "snapshot_seq": 0},
}
_TO_CLOUD: Final[Mapping[str, Mapping[str, str]]] = {"conversations": {"type": "conversation_type"}}
_TO_LOCAL: Final[Mapping[str, Mapping[str, str]]] = {
    table: {cloud: local for local, cloud in names.items()} for table, names in _TO_CLOUD.items()
}
#: Cloud NOT NULL columns a null (stored by an earlier version) cannot be pushed into.
_CLOUD_EMPTY: Final[Mapping[str, Mapping[str, Any]]] = {
    "workspaces": {"next_steps": []},
    "tasks": {"payload": {}},
}
_BOOKKEEPING: Final = frozenset({"id", "hlc", "field_hlc", "origin", "_txid", "_seq"})
#: Per table, the local columns no pushed change carries as fields.
_HIDDEN: Final = {t: LOCAL_ONLY.get(t, frozenset()) | _BOOKKEEPING for t in LOCAL_COLUMNS}


def _pulled_names(table: str) -> dict[str, str]:
    """cloud column -> local column, for the columns a pulled row keeps (not field_hlc)."""
    columns = LOCAL_COLUMNS[table] - LOCAL_ONLY.get(table, frozenset()) - {"field_hlc"}
    renames = _TO_LOCAL.get(table, {})
    names = {name: renames.get(name, name) for name in columns | set(renames)}
    return {cloud: local for cloud, local in names.items() if local in columns}


#: Per table, what ``local_change`` keeps of a cloud row (computed once: it runs per row).
_PULLED: Final[Mapping[str, Mapping[str, str]]] = {t: _pulled_names(t) for t in LOCAL_COLUMNS}
_TIMESTAMPS: Final = frozenset({"created_at", "updated_at", "deleted_at"})


def _ordered_pairs(table: str) -> tuple[tuple[str, str], ...]:
    """``_PULLED[table]``'s (cloud, local) pairs in one fixed order, by local name, so every
    process builds rows (and so the merged ``field_hlc``) with the same key order; a cloud
    column after a same-named local one (``type``, then ``conversation_type``), so the
    cloud's own value wins."""
    renamed = _TO_CLOUD.get(table, {})
    return tuple(sorted(_PULLED[table].items(), key=lambda p: (p[1], p[0] not in renamed)))


_PAIRS: Final = {t: _ordered_pairs(t) for t in LOCAL_COLUMNS}
_STAMPED: Final = {t: tuple(n for n in sorted(set(names.values())) if n in _TIMESTAMPS)
                   for t, names in _PULLED.items()}  # fmt: skip
_ABSENT: Final = object()


def _cloud_columns(table: str) -> dict[str, str]:
    """local column -> its cloud column, for every kept column, in ``_PAIRS`` order (a local
    name renamed in the cloud is no cloud column)."""
    hidden = _TO_CLOUD.get(table, {})
    return {local: cloud for cloud, local in _PAIRS[table] if cloud not in hidden}


def _fast_columns(table: str) -> tuple[Callable[[Mapping[str, Any]], Any], tuple[str, ...]]:
    """``local_change``'s fast path for a row that has every kept column under its cloud
    name: (cloud row -> values, as one C-level itemgetter; the local names, in order)."""
    cloud = _cloud_columns(table)
    return itemgetter(*cloud.values()), tuple(cloud)


_FAST: Final = {t: _fast_columns(t) for t in LOCAL_COLUMNS}
#: ``timestamptz`` as PostgreSQL's JSON writes it in UTC (0 to 6 fraction digits).
_PG_UTC: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,6}))?\+00:00"
)
#: The same with all six fraction digits (no group to read back: the common case).
_PG_UTC_US: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00"
)


def cloud_change(
    table: str,
    row_id: str,
    workspace_id: str | None,
    fields: Mapping[str, Any],
    field_hlc: Mapping[str, str],
    *,
    hlc: str,
    origin: str,
    org_id: str | None = None,
    one_clock: bool = False,
) -> dict[str, Any] | None:
    """The ``sync_push`` change for one local change, or None if nothing of it may leave.

    Every pushed field gets a clock (its own, else the change's ``hlc``), except a JSON map
    that comes with clocks of its keys only (``field.key``: a local edit's patch, whose other
    keys it leaves alone); clocks of fields the change does not carry are dropped, except those
    of JSON-map keys. With ``one_clock`` (every field is under ``hlc``, no key of a map has a
    clock of its own: ``OutboxChange.one_clock``) the change goes in the compact form:
    ``hlc`` instead of ``field_hlc`` (migrations/cloud/0005).
    """
    if table not in CLOUD_TABLES:
        return None
    if table == "messages" and fields.get("role") in ("system", "tool"):
        return None  # local-only (I6); the store writes no outbox entry for them anyway
    hidden = _HIDDEN[table]
    renames = _TO_CLOUD.get(table, {})
    empty = _CLOUD_EMPTY.get(table, {})
    if renames or empty:
        out_fields: dict[str, Any] = {}
        for name, value in fields.items():
            if name in hidden:
                continue
            if value is None and name in empty:
                value = empty[name]
            out_fields[renames.get(name, name)] = value
    else:  # (messages, the bulk of a push: a comprehension, twice as fast)
        out_fields = {name: value for name, value in fields.items() if name not in hidden}
    if not out_fields:
        return None
    ws = row_id if table == "workspaces" else workspace_id
    if one_clock:
        if table == "workspaces" and org_id is not None:
            out_fields["org_id"] = org_id
        return {
            "table": table,
            "id": row_id,
            "workspace_id": ws,
            "fields": out_fields,
            "hlc": hlc,
            "origin": origin,
        }
    clocks: dict[str, str] = {}
    for key, clock in field_hlc.items():
        base, dot, rest = key.partition(".")
        if base in hidden:
            continue
        cloud_key = renames.get(base, base) + dot + rest
        if dot or cloud_key in out_fields:
            clocks[cloud_key] = clock
    keyed = {key.partition(".")[0] for key in clocks if "." in key}
    for name in out_fields:
        if name not in keyed:  # (a map given by its keys' clocks only is a patch: R3)
            clocks.setdefault(name, hlc)
    if table == "workspaces" and org_id is not None:
        out_fields["org_id"] = org_id
        clocks["org_id"] = min(clocks.values(), default=hlc)
    return {
        "table": table,
        "id": row_id,
        "workspace_id": ws,
        "fields": out_fields,
        "field_hlc": clocks,
        "origin": origin,
    }


def local_change(change: Mapping[str, Any]) -> dict[str, Any] | None:
    """One ``sync_pull`` change (``{table, id, workspace_id, row}``) in local terms, or None
    for a table this device does not keep. The row keeps ``id``, ``hlc``, ``field_hlc`` (a
    dict, restricted to the kept fields) and ``origin``."""
    table = change.get("table")
    row = change.get("row")
    if not isinstance(table, str) or table not in CLOUD_TABLES:
        return None
    if type(row) is not dict and not isinstance(row, Mapping):  # JSON gives dicts: no ABC check
        return None
    renames = _TO_LOCAL.get(table, {})
    out = _kept(table, row)
    raw_clocks = row.get("field_hlc")
    clocks: dict[str, str] = {}
    if raw_clocks and isinstance(raw_clocks, Mapping):
        for key, clock in raw_clocks.items():
            base, dot, rest = str(key).partition(".")
            local = renames.get(base, base)
            if local in out and local not in _BOOKKEEPING:
                clocks[local + dot + rest] = clock
    out["field_hlc"] = clocks
    if not out.get("origin"):
        out["origin"] = "cloud"
    row_id = out.get("id", change.get("id"))
    workspace = row_id if table == "workspaces" else out.get("workspace_id")
    return {"table": table, "id": row_id, "workspace_id": workspace, "row": out}


def _kept(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The kept columns of a cloud row under their local names, timestamps normalised."""
    values, names = _FAST[table]
    try:
        out = dict(zip(names, values(row), strict=True))
    except KeyError:  # a column is missing: keep what is there
        out = {}
        for cloud, local in _PAIRS[table]:
            value = row.get(cloud, _ABSENT)
            if value is not _ABSENT:
                out[local] = value
    seen, normal = "", ""
    for local in _STAMPED[table]:
        value = out.get(local)
        if type(value) is str:  # a row's timestamps are often one text (created = updated)
            if value != seen:
                seen, normal = value, normalize_timestamp(value)
            out[local] = normal
        elif value is not None:  # null stays null (a live row's deleted_at)
            out[local] = normalize_timestamp(value)
    return out


def pulled_columns(table: str, columns: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """For a one-pass mapping of cloud rows: (the cloud names of the local ``columns``, kept
    columns of ``table``, in that order; the positions among them of the timestamps, which
    ``local_change`` rewrites with ``normalize_timestamp`` when they are text)."""
    cloud = _cloud_columns(table)
    stamps = tuple(i for i, column in enumerate(columns) if column in _STAMPED[table])
    return tuple(cloud[column] for column in columns), stamps


def local_defaults(table: str) -> Mapping[str, Any]:
    """Values of the local-only columns for a row new to this device."""
    return _LOCAL_DEFAULTS.get(table, {})


def normalize_timestamp(value: Any) -> Any:
    """An ISO-8601 timestamp in the store's form (UTC, milliseconds, ``Z``); anything that is
    not a parseable timestamp is returned unchanged."""
    if not isinstance(value, str) or len(value) < 19:
        return value
    size = len(value)
    if size == 24 and value[23] == "Z" and value[19] == ".":
        return value  # already in the store's form
    if size == 32 and _PG_UTC_US.fullmatch(value) is not None:  # PostgreSQL's usual form
        return value[:23] + "Z"
    utc = _PG_UTC.fullmatch(value)
    if utc is not None:  # PostgreSQL's UTC form: the common case, cut to milliseconds
        return value[:19] + "." + (utc.group(1) or "").ljust(3, "0")[:3] + "Z"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
