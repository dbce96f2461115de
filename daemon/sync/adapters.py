"""The seams between pure sync code and its adapters (pure: no I/O).

``merge_pulled`` is the merge the store's ``apply_pull`` calls for each pulled row: merge.py's
``merge_row`` on local-shaped rows (a row new to this device gets its local-only defaults).
``NEW_ROWS_AS_IS`` names the tables whose new rows it stores as they come (the store may then
skip it for a page of such rows: ``apply_pull``'s ``as_is``).
``failure_of`` turns any failed request into the ``retry.Failure`` the session's pure retry
policy classifies; ``failure_reason`` is the code shown in status and logs (never a message,
so no token or content can leak, I8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Union

import msgspec

from daemon.store.sync_rows import BOOKKEEPING, DEVICE_AT, PLAIN_CLOCK, SHAPES, origin_of
from daemon.store.sync_types import MergeOutcome, NewRows
from daemon.sync.cloud.errors import AuthRequired, CloudError
from daemon.sync.mapping import (
    CLOUD_TABLES,
    LOCAL_COLUMNS,
    local_change,
    local_defaults,
    normalize_timestamp,
    pulled_columns,
)
from daemon.sync.merge import RowState, merge_row, new_row_state
from daemon.sync.retry import Failure

__all__ = ["NEW_ROWS_AS_IS", "failure_of", "failure_reason", "merge_pulled", "new_rows_as_is"]

#: Tables for which ``merge_pulled(table, None, row, ...)`` of a row holding ONE clock for all
#: its fields (its ``hlc``; a ``field_hlc`` empty or giving fields that clock) is that row as
#: it is, every field changed: no merge map, no local-only default, no per-field clock column
#: (tests/component/store/test_sync_apply_as_is.py holds the store's fast path to the merge).
NEW_ROWS_AS_IS: Final = frozenset({"messages"})


@dataclass(frozen=True)
class _AsIs:
    """How ``new_rows_as_is`` reads a ``sync_pull`` answer of one table's cloud rows."""

    table: str
    #: the stored columns but ``origin`` (the last), in order
    columns: tuple[str, ...]
    #: a decoded cloud row -> their values (one C-level attrgetter); timestamps among them
    values: Callable[[Any], tuple[Any, ...]]
    stamps: tuple[int, ...]
    #: where the row clock is among them
    hlc_at: int
    #: fields whose clocks ``local_change`` keeps (the others are dropped)
    clocked: frozenset[str]
    #: a whole answer -> a page of this table's rows and changes of the other cloud tables
    #: (``msgspec.ValidationError`` otherwise)
    decoder: msgspec.json.Decoder[Any]
    #: the type of the decoded changes of this table
    change: type[Any]

    @classmethod
    def of(cls, table: str) -> _AsIs:
        columns = SHAPES[table].columns
        if columns[-1] != "origin" or set(columns) != LOCAL_COLUMNS[table]:
            raise AssertionError(f"{table}: as-is rows need every column, origin last")
        names, stamps = pulled_columns(table, columns[:-1])
        clocked = LOCAL_COLUMNS[table] - BOOKKEEPING
        decoder, change = _answer_decoder(table, names)
        return cls(
            table,
            columns[:-1],
            attrgetter(*names),
            stamps,
            columns.index("hlc"),
            clocked,
            decoder,
            change,
        )

    def one_clock(self, clocks: Mapping[Any, Any], hlc: str) -> bool:
        """``clocks`` (a cloud ``field_hlc``) keep, once mapped, only clocks ``hlc`` of plain
        fields (``rows_as_is``'s test of the mapped row)."""
        for key, clock in clocks.items():
            name, dot, _ = str(key).partition(".")
            if name in self.clocked and (dot or clock != hlc):
                return False
        return True


def _answer_decoder(
    table: str, names: tuple[str, ...]
) -> tuple[msgspec.json.Decoder[Any], type[Any]]:
    """A decoder of ``sync_pull`` answers whose changes are rows of ``table`` with the cloud
    columns ``names``, each text or null, decoded into records (no dict per row; other
    columns and keys are skipped), among changes of the other cloud tables (their ``id`` and
    ``row`` decoded as JSON values; the change's ``table`` says which kind it is): any other
    answer is a ``msgspec.ValidationError``. Also the type of ``table``'s changes."""
    row = msgspec.defstruct(
        f"{table}_row",
        [*((name, str | None) for name in names), ("field_hlc", Any, None)],
        gc=False,
    )
    change = msgspec.defstruct(
        f"{table}_change", [("row", row)], tag_field="table", tag=table, gc=False
    )
    others = [
        msgspec.defstruct(
            f"{other}_other",
            [("id", Any, None), ("row", Any, None)],
            tag_field="table",
            tag=other,
            gc=False,
        )
        for other in sorted(CLOUD_TABLES - {table})
    ]
    kinds = Union[(change, *others)]  # type: ignore[valid-type]
    page = msgspec.defstruct(
        f"{table}_page",
        [("changes", list[kinds]), ("has_more", bool), ("cursor", str | None, None)],
        gc=False,
    )
    return msgspec.json.Decoder(page), change


_AS_IS: Final = {table: _AsIs.of(table) for table in NEW_ROWS_AS_IS}


def new_rows_as_is(
    answer: bytes, *, here: str | None = None
) -> tuple[NewRows, str | None, bool] | None:
    """A ``sync_pull`` answer (its JSON text) whose changes are rows of one
    ``NEW_ROWS_AS_IS`` table holding one clock for all their fields (the bulk of a first
    sync), and maybe a few changes of other tables: (its rows as the store keeps them, made
    in one pass, and its other changes as ``local_change`` maps them, for
    ``store.sync.apply_new_rows``; its cursor; has_more). The rows are what ``local_change``
    and then, for a row new here, ``merge_pulled`` give (``rows_as_is`` of the mapped row): the
    kept columns, timestamps normalised, ``origin`` the clock's device. The answer is decoded
    straight into records (msgspec), a few times faster than into dicts to be mapped.
    None for any other answer (a value that is not text, a clock that is not plain ASCII, a
    clock of a JSON-map key, a missing column, no row of the table, a change of a table the
    cloud does not sync, not a page): decode it and map it with ``local_change`` for
    ``apply_pull``. Also None when the first row's clock is of device ``here`` (this device):
    an echo of our own push, which the store would find stored and send to the merge anyway.
    tests/component/store/test_sync_apply_as_is.py holds both ways to the same result."""
    for plan in _AS_IS.values():
        try:
            page = plan.decoder.decode(answer)
        except msgspec.ValidationError:
            continue
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None  # not JSON, not UTF-8, nested too deep: decoding the body says which
        new = _new_rows(plan, page.changes, here)
        return None if new is None else (new, page.cursor, page.has_more)
    return None


def _new_rows(plan: _AsIs, changes: list[Any], here: str | None) -> NewRows | None:
    """``changes`` (decoded by ``plan.decoder``) as stored rows and local changes, or None
    (see above)."""
    mine = plan.change
    first = next((change.row for change in changes if type(change) is mine), None)
    if first is None or (here is not None and origin_of(first.hlc) == here):
        return None
    columns, values, stamps, hlc_at = plan.columns, plan.values, plan.stamps, plan.hlc_at
    plain, seen, normal = PLAIN_CLOCK.fullmatch, "", ""
    rows: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for change in changes:
        if type(change) is not mine:
            table = type(change).__struct_config__.tag
            other = local_change({"table": table, "id": change.id, "row": change.row})
            if other is None:
                return None
            others.append(other)
            continue
        row = change.row
        kept = values(row)
        hlc, clocks = kept[hlc_at], row.field_hlc
        if hlc is None or plain(hlc) is None:
            return None
        if clocks and isinstance(clocks, Mapping) and not plan.one_clock(clocks, hlc):
            return None
        out = dict(zip(columns, kept, strict=True))
        for at in stamps:
            stamp = kept[at]
            if stamp is not None:  # (a row's timestamps are often one text)
                if stamp != seen:
                    seen, normal = stamp, normalize_timestamp(stamp)
                out[columns[at]] = normal
        out["origin"] = hlc[DEVICE_AT:]
        rows.append(out)
    return NewRows(plan.table, rows, others)


def merge_pulled(
    table: str, local: dict[str, Any] | None, remote: dict[str, Any], pending: frozenset[str]
) -> MergeOutcome:
    """The store's injected merge: ``merge_row`` on local-shaped rows (pure)."""
    if local is None:
        plain = new_row_state(table, remote)
        if plain is not None:  # the common new row: the remote state is the result
            fields, clocks = plain
            changed = frozenset(fields)
            return MergeOutcome(_stored(table, remote, fields, clocks, new=True), True, changed)
    remote_state = RowState.from_row(remote)
    local_state = None if local is None else _adopt_clocks(RowState.from_row(local), remote_state)
    result = merge_row(table, local_state, remote_state, pending_local=pending)
    row = _stored(
        table, remote, dict(result.row.fields), dict(result.row.field_hlc), new=local is None
    )
    conflicts = tuple(
        {
            "field": c.field,
            "local_value": c.local_value,
            "remote_value": c.remote_value,
            "local_hlc": c.local_hlc,
            "remote_hlc": c.remote_hlc,
        }
        for c in result.conflicts
    )
    return MergeOutcome(row, result.row_changed, result.changed, conflicts)


def _stored(
    table: str, remote: dict[str, Any], fields: dict[str, Any], clocks: dict[str, str], *, new: bool
) -> dict[str, Any]:
    """The merged ``fields`` as a local row (in place): a row ``new`` here gets its local-only
    defaults; the id and ``field_hlc`` complete it."""
    if new:
        for name, value in local_defaults(table).items():
            fields.setdefault(name, value)
    fields["id"] = remote["id"]
    fields["field_hlc"] = clocks
    return fields


def _adopt_clocks(local: RowState, remote: RowState) -> RowState:
    """Give a local field that has a value but no clock the remote clock of the SAME value.

    The store clocks every field it writes, but rows stored by earlier versions lack the
    clocks of the columns a create set (``created_at``, ``workspace_id``...), while their push
    stamped each one; when that write comes back, it is the one we made. Without this, a
    first-writer-wins field would keep its empty clock here (the smallest clock wins) and the
    replicas' ``field_hlc`` would differ for ever although their values agree.
    """
    adopted = {
        name: clock
        for name, clock in remote.field_hlc.items()
        if name not in local.field_hlc
        and name in local.fields
        and name in remote.fields
        and local.fields[name] == remote.fields[name]
    }
    if not adopted:
        return local
    return RowState(local.fields, {**local.field_hlc, **adopted})


def failure_of(exc: BaseException) -> Failure:
    """The retry policy's view of a failed request (a local bug retries slowly)."""
    if isinstance(exc, CloudError):
        if exc.failure is not None:
            return exc.failure
        if isinstance(exc, AuthRequired):  # logged out meanwhile: only a login helps
            return Failure.http(401, body={"code": "session_not_found"})  # (GoTrue's words)
        return Failure.http(502, body={"code": exc.reason})
    return Failure.http(500, body={"code": "local_error"})


def failure_reason(exc: BaseException) -> str:
    """A reason code for status and logs (never a message: no token or content, I8)."""
    if isinstance(exc, CloudError):
        return exc.reason
    return "local_error"
