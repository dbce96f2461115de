"""Per-field merge of synced rows (pure: no I/O, no clock reads, standard library only).

Theory of operation
-------------------
A replica of a row is a ``RowState``: its field values and, per field, the hybrid logical clock
of the write that produced the value (``field_hlc``). Clocks are strings
``f"{wall_ms:013d}-{counter:06d}-{device_id}"`` compared in byte order (``COLLATE "C"``); a field
without a clock has the empty clock, older than every clock. ``merge_row`` folds a remote version
into the local one field by field. Each rule below is the join of a total order, so merging is
commutative, associative and idempotent (invariants I4, I5): any replicas that received the same
changes, in any order, any number of times, hold identical states. The cloud's ``sync_push`` SQL
applies the SAME rules; keep the two in step.

R0  Equal clocks mean the same write: the cloud keeps the stored value ("already applied").
    Only corrupt input (two values under one clock, which a correct HLC never mints) can differ
    there; the daemon then prefers any value to null, then the greater canonical JSON (sorted
    keys, no spaces), so it stays convergent anyway. An absent field is null with the empty
    clock (so a value without a clock survives); the merged row has the union of both sides'
    fields.
R1  ``lww`` (default): the value with the greater clock wins.
R2  ``fww`` (first writer wins, e.g. created_by): non-null beats null; between two non-null
    values the SMALLER clock wins; between two nulls the greater clock is kept.
R3  ``merge`` (JSON maps such as shared_memory): each top-level key k is an LWW register with
    clock ``field_hlc["<field>.<k>"]``. Removing a key writes JSON null under a new clock (a
    tombstone: the key stays in the map as null; readers treat null as absent, see
    ``visible_map``). ``field_hlc["<field>"]``, if present, is the base B of that side: the
    clock of a whole-map replacement (e.g. a plain REST write the cloud trigger stamps with one
    clock). The effective entry of key k on one side is
    ``(map.get(k), max(field_hlc.get("<field>.<k>", ""), B))``, so a key absent from the last
    replacement reads as null at B. Per key the effective entry with the greater clock wins (R0
    on ties); the new base is the greater base. Canonical output: keys whose winner is
    (null, new base) are dropped, every other key is kept with its own clock in field_hlc; the
    value is always a map (null reads as {}). A change carrying only some keys with their
    clocks is a valid partial state (how local edits are pushed).
R4  Lists (workspaces.next_steps) are whole-value LWW registers (R1), not grow-only unions: a
    plan is ordered and shrinks as steps are done or dropped. A union could never remove a step
    (the seed system capped its union at 500 entries and it still only grew), and ordering by
    first clock would undo every re-ordering. Concurrent rewrites of one plan are rare, and the
    newer plan is the coherent one.
R5  ``manual`` (workspaces.task_goal): the stored value follows R1 so replicas converge. When
    the remote clock wins over a field the caller lists in ``pending_local`` (an unpushed local
    edit) and the values differ, the result carries a ``FieldConflict`` (I9). The winning side
    records nothing. ``resolve_conflict`` builds the settling local write under a new clock,
    which then wins everywhere.
R6  Tombstones: ``deleted_at`` is an ordinary R1 field; a row is visible while it is null. An
    edit of any other field never resurrects a row; undelete is a newer write of
    ``deleted_at = null``.
R7  Append-only tables (messages): rows are deduplicated by id only, never by content. Once a
    replica stores a message only ``deleted_at`` (and ``updated_at``, which a delete bumps)
    change, by R1. A remote version whose other
    fields differ is ignored: the first stored write is the truth (``MergeResult.ignored`` names
    the fields so the caller can log it); fields the stored copy lacks are filled in from the
    remote, and an identical field seen under an earlier clock keeps that earlier clock. Message
    ids are minted once, so a differing version is a bug or a forgery, never an edit.
R8  ``final`` (tasks.status): a final value (daemon/types.py ``FINAL_TASK_STATUSES``: succeeded,
    failed, cancelled) beats every other value whatever the clocks; between two final values,
    or two others, R1. A task cancelled on one device stays cancelled when another device,
    concurrently, marked it running with a later clock (LWW revived it: the cancel was lost).
    The local API refuses to move a task out of a final status (daemon/store/tasks.py), and so
    does the cloud for a plain write (0003's trigger), so a final status is where a task's
    status ends everywhere. The order (final or not, then the clock) is total: the merge stays
    a join.

Defaults (``RULES``; every field not listed is ``lww``, e.g. name, status, description,
current_step, next_steps, payload, priority, attempts, is_archived, updated_at, deleted_at):

=============  ==========================================================================
table          non-default fields
=============  ==========================================================================
workspaces     fww: org_id, created_by, created_at; merge: shared_memory, progress_data;
               manual: task_goal
conversations  fww: workspace_id, started_by, created_at
messages       append-only (R7): only deleted_at and updated_at (lww) change after the first
               write
tasks          fww: workspace_id, kind, created_by, created_at; merge: progress; final: status
documents      fww: workspace_id, created_by, created_at (metadata only; content is a CRDT)
other tables   lww for every field
=============  ==========================================================================

Bookkeeping columns (``id, hlc, field_hlc, origin, _txid, _seq``) are not fields; the row
clock ``hlc`` is ``row_hlc(state)``, the greatest clock in ``field_hlc``. A row whose
``field_hlc`` is empty but which has a row clock ``hlc`` is one register: every field carries
the row clock (``RowState.from_row``). ``MergeResult.changed`` lists the fields whose
visible value changed; it is empty for echoes of our own pushes and duplicates, so the caller
writes no changelog entry for them.

Fast paths (pulls are mostly these; each gives exactly the full merge's result, a property
test compares them): a row new here that has no merge map and no clock without its field IS
the result (``new_row_state`` skips even the RowState); a remote version that every local
clock and value already covers (an echo, a duplicate) leaves the local row as it is. Input is
validated once per row (each distinct clock once), never trusted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

from daemon.jsonmaps import map_patch, visible_map
from daemon.jsonmaps import same as _same
from daemon.types import FINAL_TASK_STATUSES

__all__ = [
    "RULES",
    "FieldConflict",
    "InvalidRow",
    "MergeResult",
    "RowState",
    "Strategy",
    "TableRules",
    "apply_local_edit",
    "build_edit",
    "change_kind",
    "is_clock",
    "merge_row",
    "new_row_state",
    "resolve_conflict",
    "row_hlc",
    "visible_map",
]

#: Row columns that are bookkeeping, never merged fields.
RESERVED: Final = frozenset({"id", "hlc", "field_hlc", "origin", "_txid", "_seq"})
_EMPTY_MAP: Final[Mapping[str, Any]] = MappingProxyType({})
_CLOCK: Final = re.compile(r"[0-9]{13}-[0-9]{6}-.+", re.DOTALL)


class InvalidRow(ValueError):
    """A row, clock or edit the merge rules cannot accept; nothing was merged."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Strategy(StrEnum):
    LWW = "lww"
    FWW = "fww"
    MERGE = "merge"
    MANUAL = "manual"
    FINAL = "final"


@dataclass(frozen=True, slots=True)
class TableRules:
    """The strategies of one table; fields not listed are ``lww``."""

    strategies: Mapping[str, Strategy] = dc_field(default_factory=dict)
    #: Append-only (R7): only the fields in ``mutable`` change after the first write.
    append_only: bool = False
    mutable: frozenset[str] = frozenset({"deleted_at"})
    #: The ``merge`` fields (derived from ``strategies``; the fast paths test it once per row).
    merge_fields: frozenset[str] = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        maps = frozenset(n for n, s in self.strategies.items() if s is Strategy.MERGE)
        object.__setattr__(self, "merge_fields", maps)

    def strategy(self, name: str) -> Strategy:
        return self.strategies.get(name, Strategy.LWW)


_F, _M, _X = Strategy.FWW, Strategy.MERGE, Strategy.MANUAL
#: Default rules. Everything not named here (incl. next_steps, name, payload,
#: is_archived, deleted_at, updated_at) is ``lww``. Document content merges as a CRDT elsewhere;
#: only document metadata rows go through here.
RULES: Final[Mapping[str, TableRules]] = MappingProxyType(
    {
        "workspaces": TableRules(
            {
                "org_id": _F,
                "created_by": _F,
                "created_at": _F,
                "task_goal": _X,
                "progress_data": _M,
                "shared_memory": _M,
            }
        ),
        "conversations": TableRules({"workspace_id": _F, "started_by": _F, "created_at": _F}),
        "messages": TableRules(append_only=True, mutable=frozenset({"deleted_at", "updated_at"})),
        "tasks": TableRules(
            {
                "workspace_id": _F,
                "kind": _F,
                "created_by": _F,
                "created_at": _F,
                "progress": _M,
                "status": Strategy.FINAL,
            }
        ),
        "documents": TableRules({"workspace_id": _F, "created_by": _F, "created_at": _F}),
    }
)
_DEFAULT_RULES: Final = TableRules()


def is_clock(value: object) -> bool:
    """True for a well-formed HLC string (13-digit ms, 6-digit counter, non-empty device id)."""
    return isinstance(value, str) and _CLOCK.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class RowState:
    """One replica of a row: field values and the clock of each (``field_hlc``).

    ``field_hlc`` keys are field names, or ``"<field>.<key>"`` for keys of ``merge`` maps.
    Both mappings are copied and frozen on construction.
    """

    fields: Mapping[str, Any]
    field_hlc: Mapping[str, str] = dc_field(default_factory=dict)

    def __post_init__(self) -> None:
        fields = dict(self.fields)
        clocks = dict(self.field_hlc)
        _validate(fields, clocks)
        object.__setattr__(self, "fields", MappingProxyType(fields))
        object.__setattr__(self, "field_hlc", MappingProxyType(clocks))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RowState:
        """Split a full row (cloud pull or local store) into fields and clocks.

        ``field_hlc`` may be a JSON string. A row without per-field clocks but with a row clock
        ``hlc`` is one register: every field gets the row clock.
        """
        return _state(*_split(row))

    def clock(self, name: str) -> str:
        """The clock of field (or map key clock) ``name``; ``""`` when there is none."""
        return self.field_hlc.get(name, "")

    @property
    def is_deleted(self) -> bool:
        return self.fields.get("deleted_at") is not None


def _split(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``RowState.from_row``'s fields and clocks as new dicts, validated once."""
    raw = row.get("field_hlc") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidRow("field_hlc", "not JSON") from exc
    if not isinstance(raw, Mapping):
        raise InvalidRow("field_hlc", "not a JSON object")
    fields = {k: v for k, v in row.items() if k not in RESERVED}
    hlc = row.get("hlc")
    if not raw and hlc:  # one register: every field under the row clock, checked once
        _validate_register(fields, hlc)
        return fields, dict.fromkeys(fields, hlc)
    clocks = dict(raw)
    _validate(fields, clocks)  # once per row; the dicts are ours, so no second copy
    return fields, clocks


def _validate_register(fields: Mapping[Any, Any], hlc: object) -> None:
    """``_validate(fields, dict.fromkeys(fields, hlc))`` (same errors), without the dict."""
    try:
        names = "\0".join(fields)
    except TypeError:  # a name that is not text
        names = "."
    if "." in names or "" in fields or not RESERVED.isdisjoint(fields):
        _validate(fields, {})  # raises, naming the field
    if fields and not is_clock(hlc):
        raise InvalidRow(next(iter(fields)), f"not a clock: {hlc!r}")


def new_row_state(
    table: str, row: Mapping[str, Any], *, rules: Mapping[str, TableRules] = RULES
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The fast path of a row new here: ``merge_row(table, None, RowState.from_row(row))``'s
    fields and clocks as new dicts, or None when the row needs the full merge (merge maps, a
    clock naming no field). Validated as ``from_row`` does (InvalidRow)."""
    fields, clocks = _split(row)
    if _is_canonical_plain(rules.get(table, _DEFAULT_RULES), fields, clocks):
        return fields, clocks
    return None


def _validate(fields: Mapping[Any, Any], clocks: Mapping[Any, Any]) -> None:
    """Refuse bad field names and anything in ``field_hlc`` that is not a clock (InvalidRow).

    Each distinct clock is checked once (a row's fields mostly share one clock); the common
    all-good case is decided by a few whole-row tests, the per-item loops only name the
    culprit."""
    try:
        names, keys = "\0".join(fields), "\0" + "\0".join(clocks)
        distinct = set(clocks.values())
    except TypeError:  # a name that is not text, or a clock that is not hashable
        names, keys, distinct = ".", "\0.", set()
    if "." in names or "" in fields or not RESERVED.isdisjoint(fields):
        for name in fields:
            if not isinstance(name, str) or not name or "." in name or name in RESERVED:
                raise InvalidRow(str(name), "not a mergeable field name")
    if "\0." in keys or "" in clocks or not all(map(is_clock, distinct)):
        for name, clock in clocks.items():
            if not isinstance(name, str) or not name or name.startswith("."):
                raise InvalidRow(str(name), "not a field clock name")
            if not is_clock(clock):
                raise InvalidRow(name, f"not a clock: {clock!r}")


_EMPTY_ROW: Final = RowState({})


def _state(fields: dict[str, Any], clocks: dict[str, str]) -> RowState:
    """Build a RowState from dicts this module made (already valid; no copy)."""
    state = object.__new__(RowState)
    object.__setattr__(state, "fields", MappingProxyType(fields))
    object.__setattr__(state, "field_hlc", MappingProxyType(clocks))
    return state


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """An unpushed local edit of a ``manual`` field lost to a concurrent remote one (I9)."""

    field: str
    local_value: Any
    remote_value: Any
    local_hlc: str
    remote_hlc: str


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The merged row and what the caller must record.

    ``changed``: fields whose visible value changed (empty: write no changelog entry).
    ``row_changed``: the stored state (values or clocks) differs from the local one; write the
    row even when ``changed`` is empty. ``ignored``: fields of an append-only row whose differing
    remote value was ignored (R7).
    """

    row: RowState
    changed: frozenset[str]
    conflicts: tuple[FieldConflict, ...] = ()
    row_changed: bool = True
    ignored: frozenset[str] = frozenset()


def row_hlc(state: RowState) -> str | None:
    """The row clock: the greatest clock of any field or map key; None when there is none."""
    return max(state.field_hlc.values(), default=None)


def merge_row(
    table: str,
    local: RowState | None,
    remote: RowState,
    *,
    pending_local: frozenset[str] = frozenset(),
    rules: Mapping[str, TableRules] = RULES,
) -> MergeResult:
    """Merge ``remote`` into ``local`` (None: the row is new here) by the rules of ``table``.

    ``pending_local`` names fields with unpushed local edits (for ``manual`` conflicts).
    Unknown tables use ``lww`` for every field. Raises InvalidRow for a ``merge`` field whose
    value is not a JSON object (or null), changing nothing.
    """
    table_rules = rules.get(table, _DEFAULT_RULES)
    if local is None:
        if _is_canonical_plain(table_rules, remote.fields, remote.field_hlc):
            return MergeResult(remote, frozenset(remote.fields))  # the common new-row case
    elif _holds(table_rules, local, remote):
        return MergeResult(local, frozenset(), (), False)  # an echo or a duplicate
    return _merge_full(table_rules, local, remote, pending_local)


def _merge_full(
    table_rules: TableRules,
    local: RowState | None,
    remote: RowState,
    pending_local: frozenset[str],
) -> MergeResult:
    """``merge_row`` without its fast paths (they must give the same result; tests compare)."""
    if table_rules.append_only and local is not None:
        return _merge_append_only(table_rules, local, remote)
    base = local if local is not None else _EMPTY_ROW
    fields: dict[str, Any] = {}
    clocks: dict[str, str] = {}
    conflicts: list[FieldConflict] = []
    merge_fields: set[str] = set()
    for name in _field_names(base, remote, table_rules):
        strategy = table_rules.strategy(name)
        if strategy is Strategy.MERGE:
            merge_fields.add(name)
            _merge_map(name, base, remote, fields, clocks)
            continue
        lv, lc = base.fields.get(name), base.clock(name)
        rv, rc = remote.fields.get(name), remote.clock(name)
        remote_wins = _remote_wins(strategy, lv, lc, rv, rc)
        value, clock = (rv, rc) if remote_wins else (lv, lc)
        fields[name] = value
        if clock:
            clocks[name] = clock
        if (
            strategy is Strategy.MANUAL
            and remote_wins
            and name in pending_local
            and local is not None
            and not _same(lv, rv)
        ):
            conflicts.append(FieldConflict(name, lv, rv, lc, rc))
    _carry_stray_key_clocks(base, remote, merge_fields, clocks)
    row = _state(fields, clocks)
    changed = _changed(local, row, merge_fields)
    return MergeResult(row, changed, tuple(conflicts), row != local)


def _is_canonical_plain(
    rules: TableRules, fields: Mapping[str, Any], clocks: Mapping[str, str]
) -> bool:
    """No merge maps and every clock names a field: merging into nothing returns it as is."""
    return rules.merge_fields.isdisjoint(fields) and fields.keys() >= clocks.keys()


def _holds(rules: TableRules, local: RowState, remote: RowState) -> bool:
    """True when merging ``remote`` leaves ``local`` exactly as it is (an echo of our own
    write, a duplicate): ``local`` is canonical and plain (see ``_is_canonical_plain``),
    neither side has a merge map, every remote clock equals the local clock of its field, and
    every remote field has the local value, under its clock or else null on both sides. Each
    field then ties (R0 keeps the local value) or loses to the local clock, under every rule:
    the full merge would return ``local``.
    """
    lf, lc, rc = local.fields, local.field_hlc, remote.field_hlc
    if not _is_canonical_plain(rules, lf, lc) or not rules.merge_fields.isdisjoint(remote.fields):
        return False
    for name, clock in rc.items():
        if lc.get(name) != clock:
            return False
    for name, value in remote.fields.items():
        if name not in lf or not _same(lf[name], value):
            return False
        if value is None:
            continue
        if name not in rc:
            return False
        if type(value) not in _SCALARS and _canonical(lf[name]) != _canonical(value):
            return False  # equal but not identical JSON (1 and true): R0 decides
    return True


def _field_names(local: RowState, remote: RowState, rules: TableRules) -> list[str]:
    names = {*local.fields, *remote.fields}
    for state in (local, remote):
        for key in state.field_hlc:
            name = key.partition(".")[0]
            if name == key or rules.strategy(name) is Strategy.MERGE:
                names.add(name)
    return sorted(names)


def _remote_wins(strategy: Strategy, lv: Any, lc: str, rv: Any, rc: str) -> bool:
    if strategy is Strategy.FWW:
        if (lv is None) != (rv is None):
            return lv is None
        if lc != rc:
            return rc < lc if lv is not None else rc > lc
    elif strategy is Strategy.FINAL and _is_final(lv) != _is_final(rv):
        return _is_final(rv)
    elif lc != rc:
        return rc > lc
    return _tie_remote_wins(lv, rv)


def _is_final(value: Any) -> bool:
    return isinstance(value, str) and value in FINAL_TASK_STATUSES


def _tie_remote_wins(lv: Any, rv: Any) -> bool:
    """R0 on equal clocks: a value beats null, then the greater canonical JSON wins."""
    if lv is rv or (type(lv) is type(rv) and type(lv) in _SCALARS and lv == rv):
        return False  # the common case: an echo of the same write
    if lv is None or rv is None:
        return lv is None  # a value beats null (and absence)
    return _canonical(rv) > _canonical(lv)


_SCALARS: Final = (str, int, float, bool)


def _canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _as_map(name: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return _EMPTY_MAP
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidRow(name, "a merge field must be a JSON object or null")
    return value


def _key_clocks(state: RowState, name: str) -> dict[str, str]:
    prefix = name + "."
    cut = len(prefix)
    return {k[cut:]: c for k, c in state.field_hlc.items() if k.startswith(prefix)}


def _merge_map(
    name: str, local: RowState, remote: RowState, fields: dict[str, Any], clocks: dict[str, str]
) -> None:
    """R3: per-key LWW over effective entries; writes the canonical map and its clocks."""
    lmap, rmap = _as_map(name, local.fields.get(name)), _as_map(name, remote.fields.get(name))
    lkeys, rkeys = _key_clocks(local, name), _key_clocks(remote, name)
    lbase, rbase = local.clock(name), remote.clock(name)
    base = max(lbase, rbase)
    merged: dict[str, Any] = {}
    for key in sorted({*lmap, *rmap, *lkeys, *rkeys}):
        lv, lc = lmap.get(key), max(lkeys.get(key, ""), lbase)
        rv, rc = rmap.get(key), max(rkeys.get(key, ""), rbase)
        value, clock = (rv, rc) if rc > lc or (rc == lc and _tie_remote_wins(lv, rv)) else (lv, lc)
        if value is None and clock == base:
            continue  # implied by the base replacement
        merged[key] = value
        if clock:
            clocks[f"{name}.{key}"] = clock
    fields[name] = merged
    if base:
        clocks[name] = base


def _carry_stray_key_clocks(
    local: RowState, remote: RowState, merge_fields: set[str], clocks: dict[str, str]
) -> None:
    """Keep dotted clocks of fields that are not ``merge`` here (max per key: still a join)."""
    for state in (local, remote):
        for key, clock in state.field_hlc.items():
            name = key.partition(".")[0]
            if name != key and name not in merge_fields and clock > clocks.get(key, ""):
                clocks[key] = clock


def _changed(local: RowState | None, row: RowState, merge_fields: set[str]) -> frozenset[str]:
    if local is None:
        return frozenset(row.fields)
    changed = set()
    for name, value in row.fields.items():
        old = local.fields.get(name)
        if name in merge_fields:
            if visible_map(old) != visible_map(value):
                changed.add(name)
        elif not _same(old, value):
            changed.add(name)
    return frozenset(changed)


def _merge_append_only(rules: TableRules, local: RowState, remote: RowState) -> MergeResult:
    """R7: keep the stored version; only ``rules.mutable`` fields follow LWW."""
    fields = dict(local.fields)
    clocks = dict(local.field_hlc)
    changed: set[str] = set()
    ignored: set[str] = set()
    names = {*remote.fields, *(k for k in remote.field_hlc if "." not in k)}
    for name in sorted(names):
        rv, rc = remote.fields.get(name), remote.clock(name)
        if name in rules.mutable:
            lv, lc = local.fields.get(name), local.clock(name)
            if _remote_wins(Strategy.LWW, lv, lc, rv, rc):
                fields[name] = rv
                clocks[name] = rc
                if not _same(lv, rv):
                    changed.add(name)
        elif name not in local.fields:
            fields[name] = rv
            if rc:
                clocks[name] = rc
            if rv is not None:
                changed.add(name)
        elif name in remote.fields:
            lc = local.clock(name)
            if not _same(local.fields[name], rv):
                ignored.add(name)
            elif rc and (not lc or rc < lc):
                clocks[name] = rc  # the same write seen under an earlier clock: keep the first
    row = _state(fields, clocks)
    return MergeResult(row, frozenset(changed), (), row != local, frozenset(ignored))


def build_edit(
    table: str,
    state: RowState | None,
    values: Mapping[str, Any],
    clock: str,
    *,
    rules: Mapping[str, TableRules] = RULES,
) -> RowState:
    """The change a local edit makes, as a (partial) RowState: what the outbox pushes.

    Every edited field gets ``clock``; for a ``merge`` field, ``values[field]`` is the new whole
    map (null clears it) and only the keys that differ from the current visible map are written
    (removed keys as null tombstones). ``clock`` must be newer than every clock of ``state``
    (mint it with an HLC that has seen them). Raises InvalidRow, changing nothing, for an edit
    that could not take effect: an older clock, an already set ``fww`` field, or an immutable
    field of an append-only row.
    """
    if not is_clock(clock):
        raise InvalidRow("clock", f"not a clock: {clock!r}")
    current = state if state is not None else _EMPTY_ROW
    newest = row_hlc(current)
    if newest is not None and clock <= newest:
        raise InvalidRow("clock", "not newer than the row's clock; tick the HLC past it first")
    table_rules = rules.get(table, _DEFAULT_RULES)
    fields: dict[str, Any] = {}
    clocks: dict[str, str] = {}
    for name, value in values.items():
        _check_editable(table, table_rules, state, name, value)
        if table_rules.strategy(name) is Strategy.MERGE:
            _edit_map(name, current.fields.get(name), value, clock, fields, clocks)
        else:
            fields[name] = value
            clocks[name] = clock
    return RowState(fields, clocks)


def _check_editable(
    table: str, rules: TableRules, state: RowState | None, name: str, value: Any
) -> None:
    if state is None or name not in state.fields or _same(state.fields[name], value):
        return
    if rules.append_only and name not in rules.mutable:
        raise InvalidRow(name, f"{table} rows are append-only; {name} cannot change")
    if rules.strategy(name) is Strategy.FWW and state.fields[name] is not None:
        raise InvalidRow(name, "first-writer-wins field is already set")
    if rules.strategy(name) is Strategy.FINAL and _is_final(state.fields[name]):
        raise InvalidRow(name, f"{state.fields[name]} is final; it can no longer change")


def _edit_map(
    name: str, old: Any, new: Any, clock: str, fields: dict[str, Any], clocks: dict[str, str]
) -> None:
    patch = map_patch(_as_map(name, old), _as_map(name, new))
    clocks.update((f"{name}.{key}", clock) for key in patch)
    fields[name] = patch


def apply_local_edit(
    table: str,
    state: RowState | None,
    values: Mapping[str, Any],
    clock: str,
    *,
    rules: Mapping[str, TableRules] = RULES,
) -> RowState:
    """The row after a local edit of ``values`` at ``clock`` (see ``build_edit``)."""
    edit = build_edit(table, state, values, clock, rules=rules)
    return merge_row(table, state, edit, rules=rules).row


def resolve_conflict(
    table: str,
    state: RowState,
    conflict: FieldConflict,
    value: Any,
    clock: str,
    *,
    rules: Mapping[str, TableRules] = RULES,
) -> RowState:
    """The local write settling ``conflict`` with the chosen ``value`` at a new ``clock``.

    The clock must be newer than both conflicting clocks and the row, so the resolution wins
    on every replica once pushed. Push ``build_edit(table, state, {field: value}, clock)``.
    """
    if clock <= max(conflict.local_hlc, conflict.remote_hlc):
        raise InvalidRow("clock", "a resolution needs a clock newer than both conflicting ones")
    return apply_local_edit(table, state, {conflict.field: value}, clock, rules=rules)


ChangeKind = Literal["created", "updated", "deleted"]


def change_kind(before: RowState | None, result: MergeResult) -> ChangeKind | None:
    """Which UI event a merge makes: ``created`` also covers undelete; edits of a row that stays
    deleted, and merges that changed nothing visible, make none."""
    if not result.changed:
        return None
    was_visible = before is not None and not before.is_deleted
    now_visible = not result.row.is_deleted
    if was_visible and now_visible:
        return "updated"
    if was_visible:
        return "deleted"
    return "created" if now_visible else None
