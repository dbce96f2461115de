"""Two devices (two data dirs, two ``syncd run``) of one user, through a real devcloud.

I4 convergence both ways (linked on A with its whole history, cloned on B, edits on both), the
CLI commands (``syncd login/link/push/pull/unlink``), concurrent edits of the same fields ending
identical on both (and a lost ``manual`` edit recorded as a conflict, I9), and no UI events for
this device's own changes coming back from the cloud.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from typing import Any

from sync_checks import assert_same, entity_events, snapshot, sync_all
from sync_kit import PASSWORD, ROOT, CloudProcess, DaemonProcess

from tests.helpers import MS, wait_for

EMAIL = "ana@example.com"


def syncd_cli(
    daemon: DaemonProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args, "--data-dir", str(daemon.data_dir)],
        cwd=ROOT,
        env=daemon.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def cli(daemon: DaemonProcess, *args: str, stdin: str | None = None) -> str:
    out = await asyncio.to_thread(syncd_cli, daemon, *args, stdin=stdin)
    assert out.returncode == 0, f"syncd {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


async def linked_pair(lab: Any, cloud: CloudProcess) -> tuple[DaemonProcess, DaemonProcess, str]:
    """A and B both syncing one workspace that has a conversation and a task."""
    a, b = await lab.two_devices(EMAIL)
    ws_id = await a.publish("shared")
    conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "general"})
    await a.call("task.enqueue", {"workspace_id": ws_id, "kind": "index", "payload": {"n": 1}})
    await a.send(conv["id"], "hello")
    await a.push()
    await b.clone(ws_id, lab.root / "b-folder")
    await b.pull()
    await a.pull()
    assert_same(await snapshot(a, ws_id), await snapshot(b, ws_id))
    return a, b, ws_id


async def test_two_devices_of_one_user_converge_both_ways(lab: Any, cloud: CloudProcess) -> None:
    a, b = await lab.two_devices(EMAIL)
    # History written before the link is published with it.
    ws = await a.call("workspace.create", {"name": "notes", "description": "before the link"})
    ws_id = ws["id"]
    conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "general"})
    for i in range(5):
        await a.send(conv["id"], f"before link {i}")
    task = await a.call(
        "task.enqueue", {"workspace_id": ws_id, "kind": "index", "payload": {"files": ["x"]}}
    )
    await a.call("cloud.link", {"workspace_id": ws_id})
    await a.send(conv["id"], "after the link", role="assistant")
    await a.push()

    await b.clone(ws_id, lab.root / "b-folder")
    await b.pull()
    await a.pull()  # A sees its own rows come back: both have pushed and pulled
    first = await snapshot(a, ws_id)
    assert_same(first, await snapshot(b, ws_id))
    assert [m["content"] for m in first["messages"][conv["id"]]] == [
        *(f"before link {i}" for i in range(5)),
        "after the link",
    ]
    link_file = json.loads((lab.root / "b-folder" / ".cloud-link.json").read_text())
    assert link_file["cloudWorkspaceId"] == ws_id

    # Both sides write, to different rows and fields.
    await b.call(
        "workspace.update",
        {"id": ws_id, "description": "from b", "next_steps": ["plan", "build"],
         "shared_memory": {"lang": "python"}, "current_step": "plan"},
    )  # fmt: skip
    conv_b = await b.call("conversation.create", {"workspace_id": ws_id, "name": "from b"})
    await b.send(conv_b["id"], "first message on b")
    await b.send(conv["id"], "reply from b", role="assistant")
    await b.call("task.update", {"id": task["id"], "status": "running", "progress": {"step": 2}})
    task_b = await b.call("task.enqueue", {"workspace_id": ws_id, "kind": "lint", "priority": 5})
    await a.call("conversation.update", {"id": conv["id"], "name": "renamed on a"})
    await a.call("workspace.update", {"id": ws_id, "task_goal": "ship it", "status": "paused"})
    await a.send(conv["id"], "more from a")
    await sync_all([a, b])

    on_a, on_b = await snapshot(a, ws_id), await snapshot(b, ws_id)
    assert_same(on_a, on_b)
    workspace = on_a["workspace"]
    assert (workspace["description"], workspace["task_goal"], workspace["status"]) == (
        "from b", "ship it", "paused",
    )  # fmt: skip
    assert workspace["next_steps"] == ["plan", "build"]
    assert workspace["shared_memory"] == {"lang": "python"}
    names = {c["id"]: c["name"] for c in on_a["conversations"]}
    assert names == {conv["id"]: "renamed on a", conv_b["id"]: "from b"}
    tasks = {t["id"]: t for t in on_a["tasks"]}
    assert tasks[task["id"]]["status"] == "running"
    assert tasks[task["id"]]["progress"] == {"step": 2}
    assert tasks[task_b["id"]]["priority"] == 5
    assert len(on_a["messages"][conv["id"]]) == 8
    # The cloud holds each message once.
    cloud_ids = await cloud.ids("messages", ws_id)
    local_ids = [m["id"] for ms in on_a["messages"].values() for m in ms]
    assert sorted(cloud_ids) == sorted(local_ids)


async def test_cli_login_link_push_pull_unlink(lab: Any, cloud: CloudProcess) -> None:
    await cloud.create_user(EMAIL, org="acme")
    a, b = await lab.daemon("a"), await lab.daemon("b")
    folder_a, folder_b = lab.root / "project-a", lab.root / "project-b"
    folder_a.mkdir()
    folder_b.mkdir()
    for d in (a, b):
        d.secrets.add(PASSWORD)
        await cli(d, "login", "--email", EMAIL, "--password-stdin", stdin=PASSWORD + "\n")
    assert (await a.call("cloud.status"))["user"]["email"] == EMAIL

    ws = await a.call("workspace.create", {"name": "project", "path": str(folder_a)})
    conv = await a.call("conversation.create", {"workspace_id": ws["id"], "name": "chat"})
    await a.send(conv["id"], "made on a")
    await cli(a, "link", str(folder_a))
    assert json.loads((folder_a / ".cloud-link.json").read_text())["cloudWorkspaceId"] == ws["id"]
    assert re.match(r"pushed \d+ rows: \d+ applied, 0 superseded, 0 rejected", await cli(a, "push"))

    cloned = await cli(b, "link", str(folder_b), "--cloud-workspace", ws["id"])
    # the clone's rows (workspace, conversation, message), though the link's own catch-up
    # may have pulled them before the pull the CLI waits for began
    assert cloned.splitlines()[-1] == f"cloned 3 rows into {folder_b.resolve()}", cloned
    # (the clone pulled everything already: this pull may find nothing new)
    assert re.match(r"pulled \d+ rows: \d+ changed, 0 conflicts", await cli(b, "pull"))
    assert_same(await snapshot(b, ws["id"]), await snapshot(a, ws["id"]))

    await b.send(conv["id"], "made on b")
    # (the push that follows every local write within 250 ms may have sent it already)
    pushed = await cli(b, "push")
    assert re.match(r"pushed ([01]) rows: \1 applied, 0 superseded, 0 rejected; outbox 0", pushed)
    assert await cloud.count("messages", ws["id"]) == 2
    assert re.match(r"pulled \d+ rows: \d+ changed, 0 conflicts", await cli(a, "pull"))
    assert [m["content"] for m in await a.messages(conv["id"])] == ["made on a", "made on b"]

    await cli(b, "unlink", str(folder_b))
    assert not (folder_b / ".cloud-link.json").exists()
    await b.send(conv["id"], "after unlink")  # kept locally, never pushed
    await b.push()
    assert len(await b.messages(conv["id"])) == 3
    assert await cloud.count("messages", ws["id"]) == 2


async def test_concurrent_edits_of_the_same_fields_end_identical(
    lab: Any, cloud: CloudProcess
) -> None:
    a, b, ws_id = await linked_pair(lab, cloud)
    shot = await snapshot(a, ws_id)
    conv_id, task_id = shot["conversations"][0]["id"], shot["tasks"][0]["id"]

    def edits(who: str, n: int) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("workspace.update", {"id": ws_id, "name": f"{who}{n}", "description": f"d-{who}{n}",
             "status": f"s-{who}", "next_steps": [who, str(n)],
             "shared_memory": {"shared": f"{who}{n}", f"only_{who}": n}}),
            ("conversation.update",
             {"id": conv_id, "name": f"c-{who}{n}", "is_archived": n % 2 == 0}),
            ("task.update", {"id": task_id, "status": "running" if who == "a" else "paused",
                             "priority": n, "payload": {"by": who},
                             "progress": {"who": who, "n": n}}),
        ]  # fmt: skip

    for n in range(3):
        calls = [
            d.call(method, params)
            for pair in zip(edits("a", n), edits("b", n), strict=True)
            for d, (method, params) in zip((a, b), pair, strict=True)
        ]
        await asyncio.gather(*calls)
        await asyncio.gather(a.push(), b.push())
        await sync_all([a, b])
        on_a, on_b = await snapshot(a, ws_id), await snapshot(b, ws_id)
        assert_same(on_a, on_b, f"round {n}")
        assert on_a["workspace"]["name"] in (f"a{n}", f"b{n}")
        assert on_a["conversations"][0]["name"] in (f"c-a{n}", f"c-b{n}")
        assert on_a["tasks"][0]["payload"] in ({"by": "a"}, {"by": "b"})

    # The cloud agrees with both replicas.
    row = (
        await cloud.fetch("SELECT name, description FROM workspaces WHERE id = $1::uuid", ws_id)
    )[0]
    assert (row["name"], row["description"]) == (
        on_a["workspace"]["name"], on_a["workspace"]["description"],
    )  # fmt: skip


async def test_concurrent_edits_of_different_keys_of_a_map_keep_both(
    lab: Any, cloud: CloudProcess
) -> None:
    """``merge`` maps (shared_memory, progress_data, tasks.progress) merge key by key: each
    device gives the whole map it wants, and the keys each one changed survive on both."""
    a, b, ws_id = await linked_pair(lab, cloud)
    task_id = (await snapshot(a, ws_id))["tasks"][0]["id"]
    start = {"base": 0, "drop": 1}
    await a.call("workspace.update", {"id": ws_id, "shared_memory": start})
    await a.call("task.update", {"id": task_id, "progress": start})
    await a.push()
    await sync_all([a, b])
    # neither sees the other's edit before it makes its own
    await a.call("workspace.update", {"id": ws_id, "shared_memory": {"base": 0, "from_a": 1}})
    await a.call("task.update", {"id": task_id, "progress": {"base": 0, "drop": 1, "a": 1}})
    await b.call("workspace.update", {"id": ws_id, "shared_memory": {**start, "from_b": 2}})
    await b.call("task.update", {"id": task_id, "progress": {"base": 9, "drop": 1}})
    await asyncio.gather(a.push(), b.push())
    await sync_all([a, b])
    on_a, on_b = await snapshot(a, ws_id), await snapshot(b, ws_id)
    assert_same(on_a, on_b)

    def visible(value: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if v is not None}

    assert visible(on_a["workspace"]["shared_memory"]) == {"base": 0, "from_a": 1, "from_b": 2}
    assert visible(on_a["tasks"][0]["progress"]) == {"base": 9, "drop": 1, "a": 1}


async def test_a_lost_manual_edit_is_a_conflict_that_resolve_settles(
    lab: Any, cloud: CloudProcess
) -> None:
    a, b, ws_id = await linked_pair(lab, cloud)
    # B's edit is committed but not pushed: B is logged out (a lone write is pushed at once
    # otherwise), and then dies; the outbox keeps the edit through both ...
    await b.call("cloud.logout")
    await b.call("workspace.update", {"id": ws_id, "task_goal": "goal from b"})
    await b.kill()
    # ... then A edits the same manual field later, and that edit reaches the cloud first.
    await a.call("workspace.update", {"id": ws_id, "task_goal": "goal from a"})
    await a.push()
    await b.start()
    await b.login(EMAIL)  # catches up (pull before push): B's pending edit lost -> a conflict (I9)

    async def conflicts() -> list[dict[str, Any]]:
        return list((await b.call("sync.conflicts"))["items"])

    await wait_for(lambda: _has(conflicts()), timeout=20_000 * MS, message="a conflict on b")
    [conflict] = await conflicts()
    assert conflict["field"] == "task_goal"
    assert {conflict["local_value"], conflict["remote_value"]} == {"goal from b", "goal from a"}
    await sync_all([a, b])
    assert (await snapshot(a, ws_id))["workspace"]["task_goal"] == "goal from a"
    assert_same(await snapshot(a, ws_id), await snapshot(b, ws_id))
    assert await a.call("sync.conflicts") == {
        "items": [],
        "next_cursor": None,
    }  # the winner records nothing

    await b.call("sync.resolve", {"conflict_id": conflict["id"], "choice": "local"})
    await sync_all([b, a])
    assert (await snapshot(a, ws_id))["workspace"]["task_goal"] == "goal from b"
    assert_same(await snapshot(a, ws_id), await snapshot(b, ws_id))
    assert await b.call("sync.conflicts") == {"items": [], "next_cursor": None}


async def _has(items: Any) -> bool:
    return bool(await items)


def echo_report(before: list[Any], echoed: list[Any]) -> str:
    """What each unexpected event changed, compared with the row's last event before it."""
    lines = []
    for event in echoed:
        same_row = (e.data for e in reversed(before) if e.data.get("id") == event.data["id"])
        last: dict[str, Any] = next(same_row, {})
        changed = {k: (last.get(k), v) for k, v in event.data.items() if last.get(k) != v}
        lines.append(f"{event.topic} {event.data['id']}: {changed}")
    return "events for this device's own changes:\n" + "\n".join(lines)


async def test_own_changes_coming_back_make_no_ui_events(lab: Any, cloud: CloudProcess) -> None:
    a, b = await lab.two_devices(EMAIL)
    events: list[Any] = []
    stream = await a.client.subscribe(["**"])

    async def collect() -> None:
        async for event in stream:
            events.append(event)

    async def sentinel(step: str) -> int:
        """A local write; once its event is here, every earlier event is here too (seq order).
        Returns the index of its event in ``events``."""
        await a.call("workspace.update", {"id": ws_id, "current_step": step})

        def index() -> int | None:
            found = [i for i, e in enumerate(events) if e.data.get("current_step") == step]
            return found[0] if found else None

        await wait_for(lambda: index() is not None, message=f"the {step} event")
        found = index()
        assert found is not None
        return found

    collector = asyncio.create_task(collect())
    try:
        # Local writes of every kind, then their round trip through the cloud.
        ws_id = await a.publish("events")
        conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "general"})
        task = await a.call("task.enqueue", {"workspace_id": ws_id, "kind": "index"})
        await a.call("task.update", {"id": task["id"], "status": "running"})
        sent = [(await a.send(conv["id"], f"a{i}"))["id"] for i in range(20)]
        await a.call("workspace.update", {"id": ws_id, "description": "edited on a"})
        before_echo = await sentinel("before echo")
        await a.push()
        await a.pull()  # our own changes come back from the cloud: no events for them
        await a.pull()
        after_echo = await sentinel("after echo")
        echoed = entity_events(events[before_echo + 1 : after_echo])
        assert echoed == [], echo_report(events[: before_echo + 1], echoed)

        # A change made on B arrives as exactly one event, and only once.
        await b.clone(ws_id, lab.root / "b-folder")
        await b.pull()
        from_b = await b.send(conv["id"], "from b")
        await b.push()
        await a.pull()
        await a.pull()
        after_b = await sentinel("after b")
    finally:
        await stream.close()
        collector.cancel()
    remote = entity_events(events[after_echo + 1 : after_b])
    assert [(e.topic, e.data["id"]) for e in remote] == [("message.created", from_b["id"])]
    created = [e.data["id"] for e in entity_events(events) if e.topic == "message.created"]
    assert created == [*sent, from_b["id"]]
    # Durable events in order, no duplicate (an ephemeral one, e.g. presence, repeats the seq of
    # the durable event before it: it is not a new seq, see ui_bridge/hub.py).
    durable = [e.seq for e in events if not e.ephemeral]
    assert durable == sorted(set(durable))
