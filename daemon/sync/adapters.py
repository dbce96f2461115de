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

from typing import Any, Final

from daemon.store.sync_types import MergeOutcome
from daemon.sync.cloud.errors import AuthRequired, CloudError
from daemon.sync.mapping import local_defaults
from daemon.sync.merge import RowState, merge_row, new_row_state
from daemon.sync.retry import Failure

__all__ = ["NEW_ROWS_AS_IS", "failure_of", "failure_reason", "merge_pulled"]

#: Tables for which ``merge_pulled(table, None, row, ...)`` of a row holding ONE clock for all
#: its fields (its ``hlc``; a ``field_hlc`` empty or giving fields that clock) is that row as
#: it is, every field changed: no merge map, no local-only default, no per-field clock column
#: (tests/component/store/test_sync_apply_as_is.py holds the store's fast path to the merge).
NEW_ROWS_AS_IS: Final = frozenset({"messages"})


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
            return Failure(status=401, reauthed=True)
        return Failure.http(502, body={"code": exc.reason})
    return Failure.http(500, body={"code": "local_error"})


def failure_reason(exc: BaseException) -> str:
    """A reason code for status and logs (never a message: no token or content, I8)."""
    if isinstance(exc, CloudError):
        return exc.reason
    return "local_error"
