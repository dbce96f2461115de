"""The merge rules of daemon/sync/merge.py: properties (I4, I5) and one example per rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.sync.merge import (
    RULES,
    FieldConflict,
    InvalidRow,
    MergeResult,
    RowState,
    Strategy,
    TableRules,
    apply_local_edit,
    build_edit,
    change_kind,
    merge_row,
    resolve_conflict,
    row_hlc,
    visible_map,
)
from daemon.types import FINAL_TASK_STATUSES


def hlc(wall: int, counter: int = 0, device: str = "dev-a") -> str:
    return f"{wall:013d}-{counter:06d}-{device}"


C0, C1, C2, C3, C4 = hlc(999), hlc(1000), hlc(1000, 1), hlc(1000, 1, "dev-b"), hlc(2000)


def fold(table: str, changes: Sequence[RowState]) -> RowState | None:
    state: RowState | None = None
    for change in changes:
        state = merge_row(table, state, change).row
    return state


# ---------------------------------------------------------------------------------------------
# Generators: writes with unique clocks (as a correct HLC mints them)

clocks = st.builds(
    hlc,
    st.integers(0, 5),
    st.integers(0, 3),
    st.sampled_from(["dev-a", "dev-b", "dev-c"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text("xyz", max_size=2))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=1), inner),
    max_leaves=4,
)
map_keys = st.sampled_from(["k1", "k2", "k3", "k4"])


@st.composite
def lww_write(draw: st.DrawFn, clock: str) -> RowState:
    values = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.text("ab", max_size=2),
                "is_archived": st.booleans(),
                "deleted_at": st.none() | st.sampled_from(["2026-01-01T00:00:00Z"]),
                "payload": json_values,
            },
        )
    )
    clocked = dict.fromkeys(values, clock)
    if draw(st.booleans()):  # a column no writer stamped (e.g. a server default)
        values["type"] = draw(st.none() | st.text("ab", max_size=2))
    return RowState(values, clocked)


@st.composite
def workspace_write(draw: st.DrawFn, clock: str) -> RowState:
    """A write of a workspace: plain fields, fww, a merge map (patch or replacement), a list."""
    fields: dict[str, Any] = {}
    field_hlc: dict[str, str] = {}
    if draw(st.booleans()):
        fields["created_by"] = draw(st.none() | st.sampled_from(["u1", "u2"]))
        field_hlc["created_by"] = clock
    if draw(st.booleans()):
        fields["next_steps"] = draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), max_size=3))
        field_hlc["next_steps"] = clock
    if draw(st.booleans()):
        fields["deleted_at"] = draw(st.none() | st.just("2026-01-01T00:00:00Z"))
        field_hlc["deleted_at"] = clock
    for name in ("shared_memory", "progress_data"):
        kind = draw(st.sampled_from(["none", "patch", "replace"]))
        if kind == "none":
            continue
        entries = draw(st.dictionaries(map_keys, st.none() | json_values, max_size=3))
        fields[name] = entries
        if kind == "patch":
            field_hlc.update({f"{name}.{k}": clock for k in entries})
        else:
            field_hlc[name] = clock
    return RowState(fields, field_hlc)


@st.composite
def change_sets(draw: st.DrawFn, write: Any, max_writes: int = 6) -> list[RowState]:
    unique_clocks = draw(st.lists(clocks, min_size=1, max_size=max_writes, unique=True))
    return [draw(write(clock)) for clock in unique_clocks]


@st.composite
def deliveries(draw: st.DrawFn, changes: list[RowState]) -> list[RowState]:
    """Every change at least once, some several times, in any order."""
    repeats = draw(st.lists(st.sampled_from(changes), max_size=len(changes)))
    return draw(st.permutations([*changes, *repeats]))


def assert_replicas_converge(data: st.DataObject, table: str, changes: list[RowState]) -> None:
    replicas = [fold(table, data.draw(deliveries(changes))) for _ in range(3)]
    assert replicas[0] is not None
    assert replicas[1] == replicas[0]
    assert replicas[2] == replicas[0]


# ---------------------------------------------------------------------------------------------
# Properties: any replicas, any order, duplicates -> identical state

# The machine is shared by many jobs: time per example varies, so no per-example deadline.
PROPERTY = settings(deadline=None)


@PROPERTY
@given(st.data(), change_sets(lww_write))
def test_lww_and_tombstones_converge(data: st.DataObject, changes: list[RowState]) -> None:
    assert_replicas_converge(data, "conversations", changes)


@PROPERTY
@given(st.data(), change_sets(workspace_write))
def test_fww_merge_maps_lists_converge(data: st.DataObject, changes: list[RowState]) -> None:
    assert_replicas_converge(data, "workspaces", changes)


@st.composite
def task_write(draw: st.DrawFn, clock: str) -> RowState:
    """A write of a task's status (R8) and priority (R1)."""
    values = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "status": st.sampled_from(["queued", "running", *sorted(FINAL_TASK_STATUSES)]),
                "priority": st.integers(0, 3),
            },
        )
    )
    return RowState(values, dict.fromkeys(values, clock))


@PROPERTY
@given(st.data(), change_sets(task_write))
def test_task_statuses_converge_and_a_final_one_is_never_left(
    data: st.DataObject, changes: list[RowState]
) -> None:
    assert_replicas_converge(data, "tasks", changes)
    final = [c for c in changes if c.fields.get("status") in FINAL_TASK_STATUSES]
    merged = fold("tasks", changes)
    assert merged is not None
    if final:  # the newest final status wins, whatever came after it
        newest = max(final, key=lambda c: c.clock("status"))
        assert merged.fields["status"] == newest.fields["status"]


@PROPERTY
@given(st.data(), st.lists(st.builds(hlc, st.integers(0, 1)), min_size=2, max_size=4))
def test_equal_clocks_with_different_values_still_converge(
    data: st.DataObject, clock_pool: list[str]
) -> None:
    # Corrupt input (one clock, two values) must not split replicas either (R0).
    changes = [data.draw(workspace_write(clock)) for clock in clock_pool]
    changes += [data.draw(lww_write(clock)) for clock in clock_pool]
    assert_replicas_converge(data, "workspaces", changes)


@PROPERTY
@given(
    st.lists(change_sets(workspace_write, max_writes=3), min_size=3, max_size=3),
)
def test_merge_is_commutative_associative_idempotent(groups: list[list[RowState]]) -> None:
    a, b, c = (fold("workspaces", group) for group in groups)
    assert a is not None and b is not None and c is not None

    def m(x: RowState, y: RowState) -> RowState:
        return merge_row("workspaces", x, y).row

    assert m(a, b) == m(b, a)
    assert m(m(a, b), c) == m(a, m(b, c))
    assert m(a, a) == a
    again = merge_row("workspaces", a, a)
    assert again.changed == frozenset() and not again.row_changed


@PROPERTY
@given(st.data(), change_sets(workspace_write))
def test_the_newest_delete_wins_whatever_else_is_edited(
    data: st.DataObject, changes: list[RowState]
) -> None:
    final = fold("workspaces", data.draw(deliveries(changes)))
    assert final is not None
    deletes = [
        (c.field_hlc["deleted_at"], c.fields["deleted_at"])
        for c in changes
        if "deleted_at" in c.field_hlc
    ]
    expected = max(deletes)[1] if deletes else None
    assert final.fields.get("deleted_at") == expected


@st.composite
def message_changes(draw: st.DrawFn) -> list[RowState]:
    all_clocks = draw(st.lists(clocks, min_size=1, max_size=5, unique=True))
    created, *later = sorted(all_clocks)
    content = {
        "conversation_id": "c1",
        "role": "user",
        "content": draw(st.sampled_from(["ok", "hello"])),
        "deleted_at": None,
    }
    changes = [RowState(content, dict.fromkeys(content, created))]
    for clock in later:
        deleted = draw(st.none() | st.just("2026-01-01T00:00:00Z"))
        if draw(st.booleans()):  # a full row version as pulled: one row clock for every field
            changes.append(RowState.from_row({**content, "deleted_at": deleted, "hlc": clock}))
        else:
            changes.append(RowState({"deleted_at": deleted}, {"deleted_at": clock}))
    return changes


@PROPERTY
@given(st.data(), message_changes())
def test_messages_converge(data: st.DataObject, changes: list[RowState]) -> None:
    assert_replicas_converge(data, "messages", changes)
    final = fold("messages", data.draw(deliveries(changes)))
    assert final is not None
    assert final.fields["content"] == changes[0].fields["content"]
    assert final.clock("content") == changes[0].clock("content")


# ---------------------------------------------------------------------------------------------
# Examples, one per rule


def test_lww_greater_clock_wins_either_way() -> None:
    old, new = RowState({"name": "a"}, {"name": C1}), RowState({"name": "b"}, {"name": C2})
    assert merge_row("conversations", old, new).row.fields["name"] == "b"
    result = merge_row("conversations", new, old)
    assert result.row == new and result.changed == frozenset() and not result.row_changed


def test_device_id_breaks_ties_between_equal_wall_and_counter() -> None:
    a, b = RowState({"name": "a"}, {"name": C2}), RowState({"name": "b"}, {"name": C3})
    assert C3 > C2
    assert merge_row("conversations", a, b).row.fields["name"] == "b"
    assert merge_row("conversations", b, a).row.fields["name"] == "b"


def test_echo_of_own_push_changes_nothing() -> None:
    state = RowState({"name": "a", "status": "x"}, {"name": C1, "status": C2})
    echo = RowState.from_row(
        {
            "id": "r1",
            "hlc": C2,
            "name": "a",
            "status": "x",
            "field_hlc": f'{{"name": "{C1}", "status": "{C2}"}}',
        }
    )
    result = merge_row("workspaces", state, echo)
    assert result == MergeResult(state, frozenset(), (), False)


def test_a_value_without_a_clock_is_kept_until_a_clocked_write() -> None:
    unstamped = RowState({"type": "chat", "name": "a"}, {"name": C1})
    assert merge_row("conversations", None, unstamped).row == unstamped
    other = RowState({"name": "b"}, {"name": C2})
    for a, b in ((unstamped, other), (other, unstamped)):
        assert merge_row("conversations", a, b).row.fields == {"type": "chat", "name": "b"}
    stamped = RowState({"type": "task"}, {"type": C1})
    assert merge_row("conversations", unstamped, stamped).row.fields["type"] == "task"


def test_new_row_reports_every_field_changed() -> None:
    remote = RowState({"name": "a", "status": None}, {"name": C1, "status": C1})
    result = merge_row("workspaces", None, remote)
    assert result.changed == {"name", "status"} and result.row_changed
    assert change_kind(None, result) == "created"


def test_fww_first_write_wins_and_non_null_beats_null() -> None:
    first = RowState({"created_by": "u1"}, {"created_by": C1})
    later = RowState({"created_by": "u2"}, {"created_by": C2})
    nulled = RowState({"created_by": None}, {"created_by": C4})
    for a, b in ((first, later), (later, first)):
        assert merge_row("workspaces", a, b).row.fields["created_by"] == "u1"
    assert merge_row("workspaces", first, nulled).row.fields["created_by"] == "u1"
    assert merge_row("workspaces", nulled, later).row.fields["created_by"] == "u2"


def test_merge_map_keeps_concurrent_keys() -> None:
    a = RowState({"shared_memory": {"x": 1}}, {"shared_memory.x": C1})
    b = RowState({"shared_memory": {"y": 2}}, {"shared_memory.y": C3})
    result = merge_row("workspaces", a, b)
    assert result.row.fields["shared_memory"] == {"x": 1, "y": 2}
    assert result.row.field_hlc == {"shared_memory.x": C1, "shared_memory.y": C3}
    assert result.changed == {"shared_memory"}


def test_merge_map_key_removal_is_a_tombstone() -> None:
    state = RowState(
        {"shared_memory": {"x": 1, "y": 2}}, {"shared_memory.x": C1, "shared_memory.y": C1}
    )
    removed = apply_local_edit("workspaces", state, {"shared_memory": {"x": 1}}, C2)
    assert removed.fields["shared_memory"] == {"x": 1, "y": None}
    assert removed.clock("shared_memory.y") == C2
    assert visible_map(removed.fields["shared_memory"]) == {"x": 1}
    # An older write of the key (delivered late) does not bring it back.
    stale = RowState({"shared_memory": {"y": 5}}, {"shared_memory.y": C1})
    assert visible_map(merge_row("workspaces", removed, stale).row.fields["shared_memory"]) == {
        "x": 1
    }
    # A newer one does.
    newer = RowState({"shared_memory": {"y": 7}}, {"shared_memory.y": C4})
    assert merge_row("workspaces", removed, newer).row.fields["shared_memory"] == {"x": 1, "y": 7}


def test_merge_map_whole_replacement_drops_older_keys_only() -> None:
    state = RowState(
        {"progress_data": {"old": 1, "new": 2}}, {"progress_data.old": C1, "progress_data.new": C4}
    )
    replaced = RowState({"progress_data": {"rest": 3}}, {"progress_data": C2})  # a REST write
    row = merge_row("workspaces", state, replaced).row
    assert row.fields["progress_data"] == {"new": 2, "rest": 3}
    assert row.field_hlc == {"progress_data": C2, "progress_data.new": C4, "progress_data.rest": C2}


def test_merge_field_must_be_an_object() -> None:
    good = RowState({"shared_memory": {"x": 1}}, {"shared_memory.x": C1})
    bad = RowState({"shared_memory": ["x"]}, {"shared_memory": C2})
    with pytest.raises(InvalidRow) as info:
        merge_row("workspaces", good, bad)
    assert info.value.field == "shared_memory"
    null = merge_row("tasks", None, RowState({"progress": None}, {"progress": C1})).row
    assert null.fields["progress"] == {}


def test_next_steps_is_a_whole_list_register() -> None:
    a = RowState({"next_steps": ["plan", "code", "test"]}, {"next_steps": C1})
    b = RowState({"next_steps": ["test", "ship"]}, {"next_steps": C2})
    for x, y in ((a, b), (b, a)):
        assert merge_row("workspaces", x, y).row.fields["next_steps"] == ["test", "ship"]


def test_manual_field_conflict_recorded_by_the_loser_with_a_pending_edit() -> None:
    local = RowState({"task_goal": "mine"}, {"task_goal": C2})
    remote = RowState({"task_goal": "theirs"}, {"task_goal": C3})
    result = merge_row("workspaces", local, remote, pending_local=frozenset({"task_goal"}))
    assert result.row.fields["task_goal"] == "theirs"  # the stored value still follows LWW
    assert result.conflicts == (FieldConflict("task_goal", "mine", "theirs", C2, C3),)
    # No conflict: not pending, local newer, or the same value.
    assert merge_row("workspaces", local, remote).conflicts == ()
    assert (
        merge_row("workspaces", remote, local, pending_local=frozenset({"task_goal"})).conflicts
        == ()
    )
    same = RowState({"task_goal": "mine"}, {"task_goal": C3})
    assert (
        merge_row("workspaces", local, same, pending_local=frozenset({"task_goal"})).conflicts == ()
    )
    # An lww field never records a conflict.
    lww = merge_row(
        "workspaces",
        RowState({"name": "a"}, {"name": C2}),
        RowState({"name": "b"}, {"name": C3}),
        pending_local=frozenset({"name"}),
    )
    assert lww.conflicts == ()


def test_resolve_conflict_writes_a_newer_clock_that_wins_everywhere() -> None:
    local = RowState({"task_goal": "mine"}, {"task_goal": C2})
    remote = RowState({"task_goal": "theirs"}, {"task_goal": C3})
    result = merge_row("workspaces", local, remote, pending_local=frozenset({"task_goal"}))
    (conflict,) = result.conflicts
    resolved = resolve_conflict("workspaces", result.row, conflict, "mine", C4)
    assert resolved.fields["task_goal"] == "mine" and resolved.clock("task_goal") == C4
    edit = build_edit("workspaces", result.row, {"task_goal": "mine"}, C4)
    other_replica = merge_row("workspaces", remote, edit).row
    assert other_replica.fields["task_goal"] == "mine"
    with pytest.raises(InvalidRow):
        resolve_conflict("workspaces", result.row, conflict, "mine", C2)


def test_edit_never_resurrects_a_deleted_row_but_undelete_does() -> None:
    deleted = RowState({"name": "a", "deleted_at": "t1"}, {"name": C1, "deleted_at": C2})
    edit = RowState({"name": "b"}, {"name": C4})
    result = merge_row("workspaces", deleted, edit)
    assert result.row.is_deleted and result.changed == {"name"}
    assert change_kind(deleted, result) is None  # invisible: no UI event
    undelete = RowState({"deleted_at": None}, {"deleted_at": hlc(3000)})
    back = merge_row("workspaces", result.row, undelete)
    assert not back.row.is_deleted and change_kind(result.row, back) == "created"
    alive = RowState({"name": "a", "deleted_at": None}, {"name": C1, "deleted_at": C1})
    gone = merge_row("workspaces", alive, RowState({"deleted_at": "t"}, {"deleted_at": C2}))
    assert change_kind(alive, gone) == "deleted"
    renamed = merge_row("workspaces", alive, edit)
    assert change_kind(alive, renamed) == "updated"


def message(content: str, clock: str) -> RowState:
    row = {"conversation_id": "c1", "role": "user", "content": content, "deleted_at": None}
    return RowState(row, dict.fromkeys(row, clock))


def test_message_duplicates_are_deduplicated_by_id() -> None:
    stored = message("ok", C1)
    again = merge_row("messages", stored, message("ok", C1))
    assert again.changed == frozenset() and not again.row_changed and again.ignored == frozenset()
    # Same content under another id is another row: nothing collapses repeated "ok"s.
    assert merge_row("messages", None, message("ok", C2)).changed == {
        "conversation_id",
        "role",
        "content",
        "deleted_at",
    }


def test_message_content_is_never_rewritten() -> None:
    stored = message("hello", C2)
    for clock in (C1, C4):  # neither an earlier nor a later clock rewrites it
        result = merge_row("messages", stored, message("forged", clock))
        assert result.row.fields["content"] == "hello"
        assert result.ignored == {"content"} and result.changed == frozenset()


def test_message_only_deleted_at_changes_and_missing_fields_are_filled() -> None:
    stored = message("hello", C1)
    deleted = merge_row("messages", stored, RowState({"deleted_at": "t"}, {"deleted_at": C2}))
    assert deleted.changed == {"deleted_at"} and deleted.row.is_deleted
    filled = merge_row(
        "messages", stored, RowState({"sender_user_id": "u1"}, {"sender_user_id": C1})
    )
    assert filled.row.fields["sender_user_id"] == "u1" and filled.changed == {"sender_user_id"}


def test_build_edit_requires_a_newer_clock_and_is_minimal() -> None:
    state = RowState(
        {"name": "a", "shared_memory": {"x": 1, "y": 2}},
        {"name": C1, "shared_memory.x": C1, "shared_memory.y": C2},
    )
    with pytest.raises(InvalidRow):
        build_edit("workspaces", state, {"name": "b"}, C2)
    with pytest.raises(InvalidRow):
        build_edit("workspaces", state, {"name": "b"}, "yesterday")
    edit = build_edit("workspaces", state, {"name": "b", "shared_memory": {"x": 1, "y": 3}}, C4)
    assert edit == RowState(
        {"name": "b", "shared_memory": {"y": 3}}, {"name": C4, "shared_memory.y": C4}
    )
    after = apply_local_edit("workspaces", state, {"shared_memory": None}, C4)
    assert visible_map(after.fields["shared_memory"]) == {}
    assert row_hlc(after) == C4


def test_edits_that_could_not_take_effect_are_refused() -> None:
    ws = RowState({"created_by": "u1"}, {"created_by": C1})
    with pytest.raises(InvalidRow, match="first-writer-wins"):
        apply_local_edit("workspaces", ws, {"created_by": "u2"}, C2)
    msg = message("hello", C1)
    with pytest.raises(InvalidRow, match="append-only"):
        apply_local_edit("messages", msg, {"content": "edited"}, C2)
    gone = apply_local_edit("messages", msg, {"deleted_at": "t"}, C2)
    assert gone.is_deleted and gone.fields["content"] == "hello"


def test_a_cancelled_task_stays_cancelled_when_a_later_write_marks_it_running() -> None:
    """R8: device A cancels (C1); device B, not having seen it, marks it running (C2, later).
    LWW made the task running everywhere: the cancel was lost and the task ran."""
    queued = RowState({"status": "queued", "priority": 0}, {"status": C0, "priority": C0})
    cancelled = apply_local_edit("tasks", queued, {"status": "cancelled"}, C1)
    running = apply_local_edit("tasks", queued, {"status": "running", "priority": 5}, C2)
    for merged in (merge_row("tasks", cancelled, running), merge_row("tasks", running, cancelled)):
        assert merged.row.fields == {"status": "cancelled", "priority": 5}
        assert merged.row.field_hlc == {"status": C1, "priority": C2}
    # between two final statuses, the later one wins (R1)
    failed = apply_local_edit("tasks", running, {"status": "failed"}, C3)
    assert merge_row("tasks", cancelled, failed).row.fields["status"] == "failed"
    assert merge_row("tasks", failed, cancelled).row.fields["status"] == "failed"
    with pytest.raises(InvalidRow, match="cancelled is final"):
        apply_local_edit("tasks", cancelled, {"status": "queued"}, C4)


def test_outbox_deltas_coalesce_by_merging() -> None:
    state = RowState({"name": "a"}, {"name": C1})
    first = build_edit("workspaces", state, {"name": "b", "status": "x"}, C2)
    state = apply_local_edit("workspaces", state, {"name": "b", "status": "x"}, C2)
    second = build_edit("workspaces", state, {"name": "c"}, C4)
    pushed = merge_row("workspaces", first, second).row
    assert pushed == RowState({"name": "c", "status": "x"}, {"name": C4, "status": C2})


def test_from_row_splits_bookkeeping_and_uses_the_row_clock_for_single_register_rows() -> None:
    row = {
        "id": "m1",
        "hlc": C2,
        "origin": "dev-a",
        "field_hlc": {},
        "_txid": 5,
        "_seq": 9,
        "content": "hi",
        "deleted_at": None,
    }
    state = RowState.from_row(row)
    assert state.fields == {"content": "hi", "deleted_at": None}
    assert state.field_hlc == {"content": C2, "deleted_at": C2}
    with pytest.raises(InvalidRow):
        RowState.from_row({"field_hlc": "{nope"})
    with pytest.raises(InvalidRow):
        RowState.from_row({"field_hlc": "[1]"})


@pytest.mark.parametrize(
    ("fields", "clocks"),
    [
        ({"hlc": 1}, {}),
        ({"a.b": 1}, {}),
        ({"": 1}, {}),
        ({"a": 1}, {"a": "not-a-clock"}),
        ({"a": 1}, {"a": "000000000001x-000000-d"}),
        ({"a": 1}, {".a": C1}),
    ],
)
def test_row_state_rejects_bad_names_and_clocks(
    fields: dict[str, Any], clocks: dict[str, str]
) -> None:
    with pytest.raises(InvalidRow):
        RowState(fields, clocks)


def test_row_state_is_frozen_and_copied() -> None:
    source = {"a": 1}
    state = RowState(source, {"a": C1})
    source["a"] = 2
    assert state.fields["a"] == 1
    with pytest.raises(TypeError):
        state.fields["a"] = 3  # type: ignore[index]
    assert row_hlc(RowState({})) is None


def test_custom_rules_and_unknown_tables() -> None:
    rules = {"notes": TableRules({"title": Strategy.MANUAL})}
    local, remote = RowState({"title": "a"}, {"title": C1}), RowState({"title": "b"}, {"title": C2})
    result = merge_row("notes", local, remote, pending_local=frozenset({"title"}), rules=rules)
    assert len(result.conflicts) == 1
    assert merge_row("unknown", local, remote).row.fields["title"] == "b"
    assert RULES["workspaces"].strategy("next_steps") is Strategy.LWW


@settings(max_examples=50, deadline=None)  # shared CI cores: no per-example deadline
@given(st.data(), change_sets(workspace_write))
def test_changed_is_empty_exactly_when_nothing_visible_moved(
    data: st.DataObject, changes: list[RowState]
) -> None:
    state = fold("workspaces", changes[:-1])
    result = merge_row("workspaces", state, changes[-1])
    if state is None:
        return
    for name in set(state.fields) | set(result.row.fields):
        before, after = state.fields.get(name), result.row.fields.get(name)
        if name in ("shared_memory", "progress_data"):
            moved = visible_map(before) != visible_map(after)
        else:
            moved = before != after or type(before) is not type(after)
        assert (name in result.changed) == moved, name


def test_map_key_older_than_the_base_reads_at_the_base_clock() -> None:
    # A key present in a replacement carries the replacement's clock even if an older own clock
    # is still around (a non-canonical state, e.g. hand-built by another writer).
    state = RowState({"shared_memory": {"a": 1}}, {"shared_memory": C4, "shared_memory.a": C1})
    remote = RowState({"shared_memory": {"a": 2}}, {"shared_memory.a": C2})
    row = merge_row("workspaces", state, remote).row
    assert row.fields["shared_memory"] == {"a": 1}
    assert row.field_hlc == {"shared_memory": C4, "shared_memory.a": C4}


# ---------------------------------------------------------------------------------------------
# Fast paths: merge_row answers new rows and echoes without the full per-field merge; the
# answer must be exactly the full merge's.


def _full(table: str, local: RowState | None, remote: RowState) -> MergeResult:
    from daemon.sync.merge import _merge_full

    return _merge_full(RULES.get(table, TableRules()), local, remote, frozenset())


def _echo_of(state: RowState) -> RowState:
    """The same state as it comes back from the cloud: without the clocks of null fields."""
    clocks = {k: c for k, c in state.field_hlc.items() if state.fields.get(k) is not None}
    return RowState(state.fields, clocks)


@st.composite
def merge_pairs(draw: st.DrawFn) -> tuple[str, RowState | None, RowState]:
    """A local state (None, a raw write, or a folded replica) and a remote one: a write, a
    replica of overlapping changes, the same state, or its echo."""
    table = draw(st.sampled_from(["workspaces", "conversations", "messages", "other"]))
    if table == "messages":
        changes = draw(message_changes())
    else:
        write = draw(st.sampled_from([lww_write, workspace_write]))
        changes = draw(change_sets(write))
    subset = st.lists(st.sampled_from(changes), min_size=1)
    local = draw(st.none() | st.sampled_from(changes) | subset.map(lambda c: fold(table, c)))
    others = st.sampled_from(changes) | subset.map(lambda c: fold(table, c))
    if local is not None:
        others = others | st.just(local) | st.just(_echo_of(local))
    return table, local, draw(others)


@PROPERTY
@given(merge_pairs())
def test_fast_paths_give_the_full_merge_result(
    pair: tuple[str, RowState | None, RowState],
) -> None:
    table, local, remote = pair
    assert merge_row(table, local, remote) == _full(table, local, remote)


@PROPERTY
@given(st.data(), message_changes())
def test_a_stored_row_merged_with_its_echo_changes_nothing(
    data: st.DataObject, changes: list[RowState]
) -> None:
    local = fold("messages", data.draw(deliveries(changes)))
    assert local is not None
    for remote in (local, _echo_of(local)):
        result = merge_row("messages", local, remote)
        assert result.row == local and not result.changed and not result.row_changed


def test_equal_but_not_identical_json_under_one_clock_goes_to_r0() -> None:
    local = RowState({"payload": {"a": 1}}, {"payload": C1})
    remote = RowState({"payload": {"a": True}}, {"payload": C1})
    result = merge_row("tasks", local, remote)
    assert result == _full("tasks", local, remote)
    assert repr(result.row.fields["payload"]) == repr({"a": True})  # R0: greater canonical JSON


@pytest.mark.parametrize(
    "row",
    [
        {"id": "x", "name": "n", "hlc": "not-a-clock"},
        {"id": "x", "a": 1, "b": 2, "field_hlc": {"a": C1, "b": C1, "c": ["no"]}},
        {"id": "x", "a": 1, "b": 2, "field_hlc": {"a": C1, "b": C1[:12]}},
        {"id": "x", "a.b": 1, "hlc": C1},
    ],
)
def test_bad_input_is_refused_once_per_row_not_trusted(row: dict[str, Any]) -> None:
    with pytest.raises(InvalidRow):
        RowState.from_row(row)
    clocks = row.get("field_hlc") or dict.fromkeys(row, row.get("hlc"))
    with pytest.raises(InvalidRow):
        RowState({k: v for k, v in row.items() if k not in ("id", "hlc", "field_hlc")}, clocks)


@PROPERTY
@given(merge_pairs())
def test_the_new_row_fast_path_is_merge_row_into_nothing(
    pair: tuple[str, RowState | None, RowState],
) -> None:
    from daemon.sync.merge import new_row_state

    table, _, remote = pair
    row = {"id": "r1", **remote.fields, "field_hlc": dict(remote.field_hlc)}
    expected = merge_row(table, None, RowState.from_row(row))
    fast = new_row_state(table, row)
    if fast is not None:
        assert RowState(*fast) == expected.row and frozenset(fast[0]) == expected.changed
    else:  # only rows the full merge must rewrite leave the fast path
        assert table != "messages" or set(remote.field_hlc) - set(remote.fields)
