"""Links between local workspaces and the cloud, and the folders' ``.cloud-link.json`` files.

A link is the store's ``cloud_links`` row (restored at start): only linked workspaces sync.
``publish`` links a local workspace: it first creates the cloud workspace with the same id
through ``sync_push`` carrying the LOCAL clocks (a plain REST insert would stamp every column
with a newer cloud clock, and those would then win over the local values on the first pull),
then the store queues the workspace's whole history for the driver. A workspace whose clock
the cloud refuses (``clock_skew``: more than an hour ahead of the cloud's, this device's wall
clock having run fast) is linked all the same, as the user asked: the refusal clears by
itself, and a push refused so is not refused for good (store/sync_skew.py). The queued
history goes out as any push: the workspace row is refused again and filed with its
``retry_at``, the rows under it refused for the missing workspace (or for their own clocks),
and once the retry's time has come the workspace is sent again, whole, followed by the rows
refused under it (sync_outbox.py ``requeue_children``). ``clone`` links a cloud
workspace into a folder, created if it does not exist yet (as ``git clone`` does: once the
cloud workspace is found, so a refused clone leaves no folder behind); the driver's first pull
fills it, and the folder then becomes the workspace's local-only ``path`` (``place``: the
store's link write sets a missing path).

``<folder>/.cloud-link.json`` tells tools (and people) that a folder syncs. It is written when a
workspace with a known folder is linked, its ``lastSyncAt`` is refreshed as syncs complete (at
most every 10 s), and unlink removes it (only while it still names that workspace). Layout
(2-space indent; see .cloud-link.example.json)::

    {"version": 1, "cloudWorkspaceId", "cloudWorkspaceName", "orgId", "linkedAt",
     "lastSyncAt", "syncConfig": {...}}

File writes are atomic (a temporary file in the folder, then a rename) and run in a worker
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from daemon.errors import InvalidInput, NotFound
from daemon.events import ChangeEvent
from daemon.store.base import new_row_fields
from daemon.store.sync_types import Link
from daemon.sync.cloud import CloudApi, CloudRejected
from daemon.sync.mapping import cloud_change
from daemon.sync.status import iso
from daemon.sync.workspace import WorkspaceSync

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = [
    "FILE_NAME",
    "Linker",
    "checked_folder",
    "link_document",
    "read_link_file",
    "remove_link_file",
    "write_link_file",
]

logger = logging.getLogger(__name__)

FILE_NAME: Final = ".cloud-link.json"
VERSION: Final = 1
#: ``lastSyncAt`` is rewritten at most this often.
LINK_FILE_EVERY_S: Final = 10.0


def link_document(
    *,
    cloud_workspace_id: str,
    cloud_workspace_name: str,
    org_id: str,
    linked_at: str,
    last_sync_at: str | None,
    pull_interval_s: float,
) -> dict[str, Any]:
    """The file's content (pure)."""
    return {
        "version": VERSION,
        "cloudWorkspaceId": cloud_workspace_id,
        "cloudWorkspaceName": cloud_workspace_name,
        "orgId": org_id,
        "linkedAt": linked_at,
        "lastSyncAt": last_sync_at,
        "syncConfig": {
            "autoSync": True,
            "syncIntervalMs": int(pull_interval_s * 1000),
            "pushDelayMs": 250,
            "syncWorkspaceState": True,
            "syncConversations": True,
            "syncMessages": True,
            "syncTasks": True,
            "syncFiles": False,
        },
    }


def write_link_file(folder: str, document: dict[str, Any]) -> None:
    """Write (replace) the folder's link file; OSError if the folder is not writable."""
    path = Path(folder)
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
    fd, tmp = tempfile.mkstemp(dir=path, prefix=f"{FILE_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path / FILE_NAME)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_link_file(folder: str) -> dict[str, Any] | None:
    """The folder's link file, or None if there is none (or it is not a JSON object)."""
    try:
        data = json.loads((Path(folder) / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def _require_no_other_link_file(folder: str, workspace_id: str) -> None:
    """Refuse to publish into a folder whose link file names another cloud workspace (a copied
    folder, a reset data dir): its file is the only pointer to that workspace."""
    document = await asyncio.to_thread(read_link_file, folder)
    named = None if document is None else document.get("cloudWorkspaceId")
    if isinstance(named, str) and named != workspace_id:
        raise InvalidInput(
            "path",
            f"{Path(folder) / FILE_NAME} names cloud workspace {named}: to sync that one here,"
            f" link it with cloud_workspace_id {named} (syncd link PATH --cloud-workspace"
            f" {named}); to publish this workspace instead, remove the file",
        )


def remove_link_file(folder: str, cloud_workspace_id: str) -> bool:
    """Remove the folder's link file if it names ``cloud_workspace_id``; True if removed."""
    document = read_link_file(folder)
    if document is None or document.get("cloudWorkspaceId") != cloud_workspace_id:
        return False
    try:
        (Path(folder) / FILE_NAME).unlink()
    except FileNotFoundError:
        return False
    return True


def checked_folder(path: str | None, *, missing_ok: bool = False) -> str | None:
    """An absolute, existing folder (``missing_ok``: or nothing yet), normalised;
    InvalidInput otherwise."""
    if path is None:
        return None
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        raise InvalidInput("path", "must be an absolute path")
    if folder.exists() and not folder.is_dir():
        raise InvalidInput("path", "must be a folder")
    if not missing_ok and not folder.is_dir():
        raise InvalidInput("path", "must be an existing folder")
    return os.path.normpath(folder)


def require_its_folder(row: dict[str, Any] | None, folder: str | None) -> None:
    """A workspace lives in one folder: a link names that one, or none (and takes it).
    InvalidInput naming ``path`` when ``folder`` is another: the link file would be written
    there while the workspace, and ``syncd link``/``unlink`` of its folder, stay with the
    first (was: linked as asked, the two disagreeing)."""
    current = None if row is None or row["deleted_at"] is not None else row.get("path")
    if folder is None or current is None:
        return
    if os.path.normpath(Path(current).expanduser()) != folder:
        raise InvalidInput(
            "path",
            f"the workspace's folder is {current}: link that folder, or move the workspace"
            " first (workspace.update {id, path})",
        )


def make_folder(folder: str) -> None:
    """Create ``folder`` (and its parents) unless it exists; InvalidInput if it cannot be."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file in the way, no permission
        reason = exc.strerror or type(exc).__name__
        raise InvalidInput("path", f"the folder cannot be created: {reason}") from exc


def _update_link_file(folder: str, workspace_id: str, **fields: str | None) -> None:
    """Set ``fields`` in the folder's link file if it is this workspace's."""
    document = read_link_file(folder)
    if document is None or document.get("cloudWorkspaceId") != workspace_id:
        return  # removed by the user, or another workspace's: leave it
    document.update(fields)
    try:
        write_link_file(folder, document)
    except OSError as exc:  # informational: a later sync tries again
        logger.warning("cloud.link_file_not_written path=%s error=%s", folder, exc)


class Linker:
    """Creates and removes links and keeps their folder files (see the module docstring)."""

    def __init__(self, *, store: Store, api: CloudApi, pull_interval_s: float) -> None:
        self._store = store
        self._api = api
        self._pull_interval_s = pull_interval_s
        #: cloud workspace names, as linked or as the link files say (for cloud.status)
        self.names: dict[str, str] = {}
        self._file_at: dict[str, float] = {}
        #: link files are read, changed and written whole (``_update_link_file``): one at a time
        self._file_lock = asyncio.Lock()
        #: links whose folder may still have to become their workspace's path (``place``)
        self._unplaced: dict[str, Link] = {}

    async def restore_names(self, links: Iterable[Link]) -> None:
        for link in links:
            if link.path is None:
                continue
            document = await asyncio.to_thread(read_link_file, link.path)
            name = None if document is None else document.get("cloudWorkspaceName")
            if isinstance(name, str):
                self.names[link.workspace_id] = name

    async def check_folder_free(self, folder: str | None) -> None:
        if folder is None:
            return
        for link in await self._store.sync.links():
            if link.path == folder:
                raise InvalidInput("path", f"the folder is linked to workspace {link.workspace_id}")

    async def publish(self, workspace_id: str, folder: str | None, org_id: str) -> Link:
        """Create the cloud workspace (same id, local clocks), then link it."""
        row = await self._store.workspaces.get(workspace_id)
        if row["deleted_at"] is not None:
            raise InvalidInput("workspace_id", "the workspace is deleted")
        require_its_folder(row, folder)
        path = folder if folder is not None else row.get("path")
        if path is not None:
            await _require_no_other_link_file(path, workspace_id)
        fields = new_row_fields(row)
        change = cloud_change(
            "workspaces", row["id"], row["id"], fields, row["field_hlc"],
            hlc=row["hlc"], origin=row["origin"], org_id=org_id,
        )  # fmt: skip
        assert change is not None  # a workspace always has a name
        [result] = await self._api.push([change])
        reason = result.get("reason")
        if result.get("status") == "rejected" and reason != "clock_skew":
            raise CloudRejected("cloud.link", str(reason or "rejected"))
        if reason == "clock_skew":  # (not for good: see the module docstring)
            logger.warning(
                "cloud.link_clock_skew workspace_id=%s: the cloud refuses its clock for now;"
                " linked, it is published once the cloud's clock has caught up",
                row["id"],
            )
        link = await self._store.sync.link(workspace_id=row["id"], org_id=org_id, path=path)
        await self._created(link, str(row["name"]))
        return link

    async def clone(self, cloud_id: str, folder: str | None) -> Link:
        """Link a cloud workspace into ``folder`` (created if missing); the first pull fills
        it. One the user cannot see (none such, or another organisation's: row-level
        security hides those) is NotFound."""
        found = await self._api.get_workspace(cloud_id)
        if found is None:
            raise NotFound("cloud_workspace", cloud_id)
        if found.deleted_at is not None:
            raise InvalidInput("cloud_workspace_id", "the cloud workspace is deleted")
        try:  # cloned before (and unlinked since): it keeps its folder
            require_its_folder(await self._store.workspaces.get(found.id), folder)
        except NotFound:
            pass
        if folder is not None:
            await asyncio.to_thread(make_folder, folder)
        link = await self._store.sync.link(workspace_id=found.id, org_id=found.org_id, path=folder)
        await self._created(link, found.name)
        return link

    async def _created(self, link: Link, name: str) -> None:
        self.names[link.workspace_id] = name
        if link.path is None:
            return
        document = link_document(
            cloud_workspace_id=link.workspace_id,
            cloud_workspace_name=name,
            org_id=link.org_id,
            linked_at=link.linked_at,
            last_sync_at=None,
            pull_interval_s=self._pull_interval_s,
        )
        try:
            await asyncio.to_thread(write_link_file, link.path, document)
        except OSError as exc:  # the link stands; the file is informational
            logger.warning("cloud.link_file_not_written path=%s error=%s", link.path, exc)

    # The folder as the workspace's path

    def watch(self, link: Link) -> None:
        """Remember a link whose folder may not be its workspace's path yet (a clone: its
        row arrives with the first pull, without a path, a local-only column)."""
        if link.path is not None:
            self._unplaced[link.workspace_id] = link

    def arrived(self, events: Iterable[ChangeEvent]) -> list[Link]:
        """The watched links whose workspace row one of ``events`` wrote (a commit listener:
        no I/O)."""
        if not self._unplaced:
            return []
        found = {
            event.data.get("id")
            for event in events
            if event.topic.startswith("workspace.") and event.data.get("id") in self._unplaced
        }
        return [self._unplaced[ws] for ws in found if isinstance(ws, str)]

    async def place(self, link: Link, still_linked: Callable[[], bool]) -> None:
        """Make the link's folder its workspace's (local-only) path if the workspace has none:
        the store's link write does it without a clock or an outbox entry. Keeps watching
        while the row is not there yet; ``still_linked`` is asked last (an unlink may have
        come meanwhile, and linking again would undo it)."""
        ws = link.workspace_id
        try:
            row = await self._store.workspaces.get(ws)
        except NotFound:
            return  # not pulled yet: ``arrived`` tells when it is
        if self._unplaced.get(ws) is not link:
            return  # unlinked (or placed) meanwhile
        del self._unplaced[ws]
        if row["path"] is None and row["deleted_at"] is None and still_linked():
            await self._store.sync.link(workspace_id=ws, org_id=link.org_id, path=link.path)
            logger.info("cloud.folder_placed workspace_id=%s path=%s", ws, link.path)

    async def unlink(self, workspace_id: str) -> bool:
        """Drop the link (the data stays); True if its folder's link file was removed."""
        self._unplaced.pop(workspace_id, None)
        links = await self._store.sync.links()
        link = next((k for k in links if k.workspace_id == workspace_id), None)
        if link is None:
            raise NotFound("link", workspace_id)
        await self._store.sync.unlink(workspace_id)
        if link.path is None:
            return False
        return await asyncio.to_thread(remove_link_file, link.path, workspace_id)

    async def touch(self, syncs: Iterable[WorkspaceSync], *, now: bool = False) -> None:
        """Refresh ``lastSyncAt`` of existing link files (``now``: whatever the last write)."""
        if now:
            self._file_at.clear()
        for sync in syncs:
            path, status, ws = sync.link.path, sync.status, sync.workspace_id
            last = max((t for t in (status.last_pull_at, status.last_push_at) if t), default=None)
            if path is None or last is None:
                continue
            if last - self._file_at.get(ws, 0.0) < LINK_FILE_EVERY_S:
                continue
            self._file_at[ws] = last
            async with self._file_lock:
                await asyncio.to_thread(_update_link_file, path, ws, lastSyncAt=iso(last))

    def renamed(
        self, events: Iterable[ChangeEvent], linked: Mapping[str, WorkspaceSync]
    ) -> list[Link]:
        """The ``linked`` workspaces whose name one of ``events`` changed; their name here
        (cloud.status) is the new one (a commit listener: no I/O). The workspace row is the
        cloud workspace's, synced: a rename on any device renames the link."""
        found: dict[str, Link] = {}
        for event in events:
            if not event.topic.startswith("workspace."):  # (every commit comes here: cheap first)
                continue
            ws, name = event.data.get("id"), event.data.get("name")
            sync = linked.get(ws) if isinstance(ws, str) else None
            if (
                sync is not None
                and isinstance(name, str)
                and self.names.get(sync.workspace_id) != name
            ):
                self.names[sync.workspace_id] = name
                found[sync.workspace_id] = sync.link
        return list(found.values())

    async def write_name(self, link: Link) -> None:
        """The link file says the workspace's current name."""
        async with self._file_lock:  # read and written whole: one update at a time
            name = self.names.get(link.workspace_id)  # the latest, when its turn comes
            if link.path is not None and name is not None:
                await asyncio.to_thread(
                    _update_link_file, link.path, link.workspace_id, cloudWorkspaceName=name
                )

    def link_json(self, link: Link, sync: WorkspaceSync | None) -> dict[str, Any]:
        return {
            "workspace_id": link.workspace_id,
            "cloud_workspace_id": link.workspace_id,
            "cloud_workspace_name": self.names.get(link.workspace_id),
            "org_id": link.org_id,
            "path": link.path,
            "linked_at": link.linked_at,
            "state": None if sync is None else sync.status.state,
        }
