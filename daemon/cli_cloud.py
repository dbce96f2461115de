"""``syncd login/logout/link/unlink/push/pull/status``: calls to the running daemon.

Each command opens one connection (``ui_bridge.client``, as ``syncd call`` does), makes its
calls, prints a short answer and exits: 0 ok; 1 the daemon answered with an error (e.g. -32004
"log in first", -32003 "cloud not configured"), a sync failed, or a daemon runs but does not
answer (``cli_commands.report_unavailable``); 2 bad input; 3 no daemon runs.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from daemon.aio import discard
from ui_bridge.cli_commands import (
    CONNECT_TIMEOUT,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    lost_text,
    report_unavailable,
    write_json,
)
from ui_bridge.client import Client, ConnectionLost, DaemonUnavailable, connect
from ui_bridge.jsonrpc import ErrorCode, RpcError

if TYPE_CHECKING:
    from daemon.config import Settings

__all__ = ["link", "login", "logout", "status", "sync_now", "unlink"]

_HINTS: Final[dict[int, str]] = {
    ErrorCode.LOGIN_REQUIRED: "log in with `syncd login --email E`",
    ErrorCode.CLOUD_NOT_CONFIGURED: "set SYNCD_CLOUD_URL and SYNCD_CLOUD_ANON_KEY, then restart",
}

#: Hints for a reason that says more than its code (a refused login is -32004 too).
_REASON_HINTS: Final[dict[str, str]] = {
    "invalid_credentials": "the email or the password is wrong",
    "email_not_confirmed": "confirm the email address first",
    "connect": "the cloud cannot be reached (check the network and SYNCD_CLOUD_URL); syncd "
    "keeps trying in the background",
    "http_429": "the cloud limits how often this device may call it; syncd waits as long as it "
    "asks (Retry-After)",
}

#: Hints for what was not found (-32001 by its ``data.entity``).
_NOT_FOUND_HINTS: Final[dict[str, str]] = {
    "cloud_workspace": "`syncd call cloud.workspaces` lists the workspaces you can clone "
    "(another organisation's are not visible to you)",
}

Command = Callable[[Client], Awaitable[int]]


class UsageError(Exception):
    """Bad command-line input (exit 2)."""


def _run(settings: Settings, command: Command) -> int:
    async def main() -> int:
        client = await connect(
            data_dir=settings.data_dir, reconnect=False, connect_timeout=CONNECT_TIMEOUT
        )
        try:
            return await command(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except DaemonUnavailable as exc:
        return report_unavailable(settings, exc)
    except UsageError as exc:
        return _usage(exc)
    except RpcError as exc:
        sys.stderr.write(f"syncd: {_error_text(exc)}\n")
        reason = exc.data.get("reason") if isinstance(exc.data, dict) else None
        hint = _REASON_HINTS.get(reason or "") or _HINTS.get(exc.code)
        if isinstance(exc.data, dict) and exc.code == ErrorCode.NOT_FOUND:
            hint = _NOT_FOUND_HINTS.get(str(exc.data.get("entity")), hint)
        if hint:
            sys.stderr.write(f"hint: {hint}\n")
        return EXIT_ERROR
    except ConnectionLost as exc:
        sys.stderr.write(lost_text(exc))
        return EXIT_ERROR


def _error_text(exc: RpcError) -> str:
    """The daemon's error as a sentence: its message and reason, or what was not found."""
    data = exc.data if isinstance(exc.data, dict) else {}
    if exc.code == ErrorCode.NOT_FOUND and data.get("entity"):
        entity = str(data["entity"])
        text = f"{entity.replace('_', ' ')} {data.get('id')} not found"
        # (the cloud shows a user the workspaces of their organisation only)
        return text + (" in your organisation" if entity == "cloud_workspace" else "")
    reason = data.get("reason")
    return exc.message + (f" ({reason})" if reason else "")


def _usage(exc: UsageError) -> int:
    sys.stderr.write(f"syncd: {exc}\n")
    return EXIT_USAGE


def _folder(path: str, *, existing: bool | None) -> str:
    """``path`` absolute and resolved; UsageError unless it is a folder, with ``existing``
    None a folder or nothing yet (a clone creates it), with False anything (``unlink`` takes
    a folder that was deleted: the workspace keeps its path)."""
    folder = Path(path).expanduser().resolve()
    if existing is None and folder.exists() and not folder.is_dir():
        raise UsageError(f"{path}: not a folder")
    if existing and not folder.is_dir():
        raise UsageError(f"{path}: not a folder")
    return str(folder)


# login / logout


def login(settings: Settings, email: str, *, password_stdin: bool) -> int:
    """Connects first (no prompt when no daemon runs), then reads the password: from one
    line of stdin, or a prompt (in a thread, so the connection keeps answering pings)."""

    async def command(client: Client) -> int:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = await asyncio.to_thread(getpass.getpass, f"Password for {email}: ")
        if not password:
            raise UsageError("a password is required")
        state = await client.call("cloud.login", {"email": email, "password": password})
        sys.stdout.write(f"logged in as {_who(state)}\n")
        return EXIT_OK

    return _run(settings, command)


def logout(settings: Settings) -> int:
    async def command(client: Client) -> int:
        await client.call("cloud.logout")
        sys.stdout.write("logged out\n")
        return EXIT_OK

    return _run(settings, command)


def _who(state: dict[str, Any]) -> str:
    user = state.get("user") or {}
    text = str(user.get("email") or user.get("id") or "?")
    org = state.get("organization")
    if org:
        text += f" ({org.get('name')}, {state.get('role')})"
    if state.get("account_as_of"):  # not confirmed by the cloud yet (it is out of reach)
        text += f" as of {state['account_as_of']}"
    return text


# link / unlink


def link(settings: Settings, path: str, *, cloud_workspace: str | None) -> int:
    """Publish the folder's workspace (created if none), or clone a cloud workspace into it
    (the daemon creates a folder that does not exist yet, as ``git clone`` does). A link that
    fails leaves nothing behind: the cloud's state is checked first, and a workspace created
    here is deleted again if the daemon refuses the link."""
    try:
        folder = _folder(path, existing=None if cloud_workspace is not None else True)
    except UsageError as exc:
        return _usage(exc)

    async def command(client: Client) -> int:
        if cloud_workspace is not None:
            params = {"cloud_workspace_id": cloud_workspace, "path": folder}
            linked = await client.call("cloud.link", params)
            sys.stdout.write(f"cloning workspace {linked['workspace_id']} into {folder}\n")
            try:
                result = await _pull_with_progress(client)
            except ConnectionLost:  # the daemon stopped mid-clone: the link is recorded
                sys.stderr.write(clone_interrupted_text(folder))
                return EXIT_ERROR
            if result.get("error"):
                return _outcome("pull", result)
            return await _cloned(client, linked["workspace_id"], folder)
        state = await client.call("cloud.status")
        _check_can_link(state)
        linked_ids = {w["workspace_id"] for w in state["linked_workspaces"]}
        here = [w["workspace_id"] for w in state["linked_workspaces"] if w["path"] == folder]
        workspaces = await _workspaces_at(client, folder)
        here += [w["id"] for w in workspaces if w["id"] in linked_ids]
        if here:  # linked already (to the folder, or a workspace whose path it is)
            sys.stdout.write(f"linked {folder} (workspace {here[0]})\n")
            return EXIT_OK
        if len(workspaces) > 1:
            ids = ", ".join(w["id"] for w in workspaces)
            raise UsageError(
                f"{len(workspaces)} workspaces have the path {folder} ({ids}): link one with "
                "`syncd call cloud.link '{\"workspace_id\": ID}'`"
            )
        created = not workspaces
        if created:
            name = Path(folder).name or folder
            workspaces = [await client.call("workspace.create", {"name": name, "path": folder})]
        workspace_id = workspaces[0]["id"]
        try:
            linked = await client.call("cloud.link", {"workspace_id": workspace_id, "path": folder})
        except RpcError:
            if created:
                await _discard(client, workspace_id)
            raise
        sys.stdout.write(f"linked {folder} (workspace {linked['workspace_id']})\n")
        return EXIT_OK

    return _run(settings, command)


def clone_interrupted_text(folder: str) -> str:
    """What ``syncd link --cloud-workspace`` says when the daemon stops mid-clone, once
    ``cloud.link`` has answered: the link is stored, and the workspace's pull goes on from its
    committed cursor when the daemon runs again (nothing is pulled twice or lost)."""
    return (
        f"syncd: connection to the daemon lost while cloning into {folder}\n"
        "the link is recorded: the clone resumes where it stopped when the daemon runs again "
        "(`syncd run`, or the login service)\n"
    )


async def _cloned(client: Client, workspace_id: str, folder: str) -> int:
    """Print what a clone brought: the rows its workspace's sync pulled since the link (the
    link's own catch-up, which ``sync.pull``'s counts leave out when it began first)."""
    status = await client.call("sync.status")
    counts = next(
        (w.get("counts") or {} for w in status["workspaces"] if w["workspace_id"] == workspace_id),
        {},
    )
    sys.stdout.write(f"cloned {counts.get('pulled', 0)} rows into {folder}\n")
    return EXIT_OK


def _check_can_link(state: dict[str, Any]) -> None:
    """The errors ``cloud.link`` would answer, before the CLI creates anything for it."""
    if not state["configured"]:
        raise RpcError(ErrorCode.CLOUD_NOT_CONFIGURED, data={"reason": "not_configured"})
    if not state["logged_in"]:
        reason = "auth_required" if state["auth_required"] else "logged_out"
        raise RpcError(ErrorCode.LOGIN_REQUIRED, data={"reason": reason})


async def _discard(client: Client, workspace_id: str) -> None:
    """Delete the workspace ``link`` created for a link that failed (best effort: the
    link's own error is the one reported)."""
    try:
        await client.call("workspace.delete", {"id": workspace_id})
    except (RpcError, ConnectionLost) as exc:
        sys.stderr.write(f"syncd: workspace {workspace_id} could not be removed: {exc}\n")


def unlink(settings: Settings, path: str) -> int:
    """Stop syncing the folder's workspace; the folder may be gone (its stored path is
    looked up)."""
    try:
        folder = _folder(path, existing=False)
    except UsageError as exc:
        return _usage(exc)

    async def command(client: Client) -> int:
        state = await client.call("cloud.status")
        ids = [w["workspace_id"] for w in state["linked_workspaces"] if w["path"] == folder]
        if not ids:
            linked = {w["workspace_id"] for w in state["linked_workspaces"]}
            ids = [w["id"] for w in await _workspaces_at(client, folder) if w["id"] in linked]
        if not ids:
            raise UsageError(f"{folder} is not linked")
        for workspace_id in ids:
            await client.call("cloud.unlink", {"workspace_id": workspace_id})
        sys.stdout.write(f"unlinked {folder} (local data kept)\n")
        return EXIT_OK

    return _run(settings, command)


async def _workspaces_at(client: Client, folder: str) -> list[dict[str, Any]]:
    """The live local workspaces whose path is ``folder``, oldest first."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.call("workspace.list", {"limit": 1000, "cursor": cursor})
        found += [dict(w) for w in page["items"] if w.get("path") == folder]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


# push / pull


def sync_now(settings: Settings, kind: str) -> int:
    async def command(client: Client) -> int:
        if kind == "pull":
            return _outcome("pull", await _pull_with_progress(client))
        return _outcome("push", await client.call("sync.push"))

    return _run(settings, command)


async def _pull_with_progress(client: Client) -> dict[str, Any]:
    """``sync.pull``'s answer, showing the rows pulled so far from the ``sync.status`` events: a bar
    of rows pulled out of the rows to pull once the daemon knows their number (``total``),
    with the time left; a pulsing bar until then."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    events = await client.subscribe(["sync.status"])
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("pulling", total=None)
        call = asyncio.ensure_future(client.call("sync.pull"))
        async for event in _until(events, call):
            shown = event.data.get("progress") or {}
            progress.update(task, completed=shown.get("rows") or 0, total=shown.get("total"))
        result: dict[str, Any] = await call
    await events.close()
    return result


async def _until(events: Any, call: asyncio.Future[Any]) -> Any:
    """The events that arrive until ``call`` is done, or until they end or fail (the daemon
    went away): the caller then awaits ``call``, whose error says why. A pending wait for the
    next event is dropped (``discard``), so no failure is left unretrieved."""
    while not call.done():
        waiter = asyncio.ensure_future(events.__anext__())
        await asyncio.wait({waiter, call}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            discard(waiter)
            return
        if waiter.cancelled() or waiter.exception() is not None:
            return
        yield waiter.result()


def _outcome(kind: str, result: dict[str, Any]) -> int:
    """Print what a ``sync.push``/``sync.pull`` moved, or when it failed only why (its counts
    would read as a result); the exit code."""
    error = result.get("error")
    if error:
        when = f", next at {result['retry_at']}" if result.get("retry_at") else ""
        sys.stderr.write(f"syncd: sync failed: {error} (it retries in the background{when})\n")
        hint = _REASON_HINTS.get(str(error))
        if hint:
            sys.stderr.write(f"hint: {hint}\n")
        return EXIT_ERROR
    if kind == "push":
        moved = result["applied"] + result["superseded"] + result["rejected"]
        sys.stdout.write(
            f"pushed {moved} rows: {result['applied']} applied, {result['superseded']} "
            f"superseded, {result['rejected']} rejected; outbox {result['outbox']}\n"
        )
    else:
        sys.stdout.write(
            f"pulled {result['pulled']} rows: {result['changed']} changed, "
            f"{result['conflicts']} conflicts\n"
        )
    return EXIT_OK


# status


def status(settings: Settings, *, as_json: bool) -> int:
    async def command(client: Client) -> int:
        daemon = await client.call("daemon.status")
        cloud = await client.call("cloud.status")
        sync = await client.call("sync.status")
        if as_json:
            write_json({**daemon, "cloud": cloud, "sync": sync}, sys.stdout)
        else:
            sys.stdout.write(_status_text(settings, daemon, cloud, sync))
        return EXIT_OK

    return _run(settings, command)


def _integrity_text(store: dict[str, Any] | None) -> str:
    """The database's background check (``daemon.status``'s ``store``), for a person."""
    if not store:
        return "-"
    state, detail = store.get("integrity"), store.get("detail")
    if state == "ok":
        return f"ok (checked at {store.get('checked_at')})"
    if state == "damaged":
        return f"DAMAGED: {detail}; {store.get('advice')}"
    if state == "failed":
        return f"not checked: {detail}"
    if state == "off":
        return "not checked (store.integrity_check is off)"
    return str(state)  # checking


def _status_text(
    settings: Settings, daemon: dict[str, Any], cloud: dict[str, Any], sync: dict[str, Any]
) -> str:
    if not cloud["configured"]:
        account = "not configured"
    elif cloud["logged_in"]:
        account = f"logged in as {_who(cloud)}"
        if cloud["last_error"] == "connect":  # e.g. restored at start while out of reach
            account += " (the cloud cannot be reached: syncd keeps trying)"
        elif cloud["last_error"]:
            account += f" (last error: {cloud['last_error']})"
    else:
        account = "login required" if cloud["auth_required"] else "logged out"
    lines = [
        f"syncd {daemon['version']} running (pid {daemon['pid']}) at {daemon['url']}",
        f"  data dir     {settings.data_dir}",
        f"  started at   {daemon['started_at']} (up {daemon['uptime_s']:.0f} s)",
        f"  connections  {daemon['connections']}, subscriptions {daemon['subscriptions']}",
        f"  last seq     {daemon['seq']}",
        f"  database     {_integrity_text(daemon.get('store'))}",
        f"  cloud        {account}",
        f"  sync         {sync['state']}: outbox {sync['outbox']}, rejected {sync['rejected']}, "
        f"conflicts {sync['conflicts']}",
        f"  last push    {sync['last_push_at'] or '-'}, last pull {sync['last_pull_at'] or '-'}",
    ]
    if sync["last_error"]:
        lines.append(f"  last error   {sync['last_error']}")
    for linked in cloud["linked_workspaces"]:
        lines.append(
            f"  linked       {linked['workspace_id']} {linked['path'] or '-'} ({linked['state']})"
        )
    return "\n".join(lines) + "\n"
