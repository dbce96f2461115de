"""Collaborative documents (``store.documents``): pycrdt/Yjs updates stored durably, compacted.

Theory of operation. A document is a ``documents`` row (its ``snapshot``: one Yjs update) plus
the ``doc_updates`` rows stored after it; loading = the snapshot, then each remaining update in
seq order, each in its own pycrdt transaction (pycrdt is quadratic when many edits share one
transaction). The text of a document is its root ``Text`` named ``"content"`` (``CONTENT``).

Cache. A bounded LRU of loaded documents (pycrdt ``Doc``s, used on the event loop only) answers
reads and validates each incoming update: it must be exactly one well-formed Yjs update v1
(yupdate.py: yrs alone would keep a malformed one pending, then encode states no Yjs client
can decode), and it is applied to the cached Doc *before* its write is queued, so garbage
raises InvalidInput and nothing is written. If the write then fails, the entry is dropped and
the next use reloads what is stored. A load is itself queued on the writer, behind every write
already queued, and a document's updates are always queued while its entry is cached, so a
reload never misses an update in flight. Updates whose dependencies have not arrived stay
pending in a Doc and out of its encoded state; the entry keeps them
(``waiting``) so that ``state`` includes them (see ydoc.py). Metadata that sync pulls
reaches a cached entry after the commit (``refresh``), so ``open`` answers the current name.

The empty update (``b"\x00\x00"``, what an editor encodes when it has no change) is
answered without writing anything. Stored data that cannot be used (written before updates
were checked) is left out when a document is loaded, with a WARNING (ydoc.replay), so a
document always opens with what can be read.

Writes. A local update = the ``doc_updates`` row, an outbox entry (documents of a LINKED workspace
only: a document without one, or of an unlinked workspace, never leaves the device; linking
snapshots it whole) and a ``doc.updated`` changelog entry with the update in base64, in one
transaction; the updates arriving while the writer is busy share one write operation
(``LocalBatch``). A local update of a document of a deleted workspace is refused (InvalidInput
on ``id``, base.py's rule for the rows of a deleted workspace), alone: the others of its batch
are stored. A remote update (``apply_remote_update``, for the sync driver) is the same without
outbox entry, deduplicated by its id, and applied whatever its workspace.

Compaction runs in a background task, one document at a time, once a document has
``compact_every`` updates after its snapshot (checked again when its turn comes: updates that
arrived during its previous compaction mark it again, but were not necessarily that many): read
the stored snapshot and updates, fold them into a new snapshot in a worker thread, then in ONE
transaction write the snapshot and delete the folded updates (pending ones are kept). A crash
before that commit leaves everything as it was; re-applying an update is a no-op, so loading
gives the same document either way.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import aiosqlite
from pycrdt import Doc, Text

from daemon.errors import InvalidInput, NotFound, ShuttingDown, StoreError
from daemon.store import doc_ops
from daemon.store.base import identifier, optional_text
from daemon.store.doc_ops import Create, LocalBatch, Stored
from daemon.store.engine import Writer, run_in_thread
from daemon.store.ids import is_uuid, uuid7
from daemon.store.sync_docs import adopt_late_updates_op, adopt_local_op
from daemon.store.ydoc import CONTENT, SNAPSHOT, Waiting, apply, fold, replay, state_with
from daemon.store.yupdate import MalformedUpdate, check_update

__all__ = ["CONTENT", "DocumentRepo"]

logger = logging.getLogger(__name__)

CACHE_SIZE: Final = 64
COMPACT_EVERY: Final = 1000
REMOTE_ORIGIN: Final = "cloud"


@dataclass(eq=False)
class _Entry:
    """A loaded document: its row, Doc and root Text, how many updates follow its snapshot,
    and the updates still pending in the Doc (their dependencies have not arrived)."""

    row: dict[str, Any]
    doc: Doc[Any]
    text: Text
    count: int
    waiting: Waiting = field(default_factory=Waiting)


@dataclass(eq=False)
class _Shared:
    """A LocalBatch and, for each update after the first, the future of the writer waiting
    for it (``waiters[i]`` is item ``i + 1``): the first writer resolves them all."""

    batch: LocalBatch
    waiters: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)


class DocumentRepo:
    """Open/create documents, apply local and remote updates, read them, compact them."""

    def __init__(
        self,
        writer: Writer,
        reader: aiosqlite.Connection,
        *,
        cache_size: int = CACHE_SIZE,
        compact_every: int = COMPACT_EVERY,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self.cache_size = cache_size
        #: compact a document once it has this many updates after its snapshot
        self.compact_every = compact_every
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._load_lock = asyncio.Lock()
        self._compact_lock = asyncio.Lock()
        self._shared: _Shared | None = None
        #: the loop of the first batched write (``asyncio.get_running_loop()`` costs a getpid
        #: system call per call on CPython 3.11; the repo is used on one loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: dict[str, None] = {}  # documents waiting for compaction, oldest first
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    async def open(
        self, id: str | None = None, *, workspace_id: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """The document's row and ``state`` (base64 Yjs update of all of it), creating the
        document when it does not exist (``name`` is used only then). An existing document
        without a workspace is adopted into ``workspace_id`` (sync_docs.py ``adopt_local_op``);
        one of another workspace refuses it (InvalidInput on ``workspace_id``)."""
        doc_id = uuid7() if id is None else identifier("id", id)
        if workspace_id is not None:
            identifier("workspace_id", workspace_id)
        create = Create(workspace_id, optional_text("name", name) or "", outbox=True)
        entry = await self._entry(doc_id, create)
        if workspace_id is not None and entry.row["workspace_id"] != workspace_id:
            row = await self._writer.submit(adopt_local_op(doc_id, workspace_id))
            await self.refresh([row])  # the loaded document, and the edits queued meanwhile
            entry = await self._entry(doc_id)
        return {**entry.row, "state": _b64(state_with(entry.doc, entry.waiting))}

    async def get(self, id: str) -> dict[str, Any]:
        """``{id, text, state}``: the string of the root Text "content" and the whole state."""
        entry = await self._entry(identifier("id", id))
        state = _b64(state_with(entry.doc, entry.waiting))
        return {"id": entry.row["id"], "text": str(entry.text), "state": state}

    async def apply_update(self, id: str, update: bytes) -> dict[str, Any]:
        """Apply a local Yjs update (v1); ``{id, update_id}`` once it is committed. Refused
        (InvalidInput on ``id``) when the document's workspace is deleted. The empty update
        writes nothing: ``update_id`` None (an editor may send its diff when it has none)."""
        entry = await self._entry(identifier("id", id))
        if not _checked(update):
            return {"id": entry.row["id"], "update_id": None}
        self._integrate(entry, update)
        try:
            result = await self._write_local(entry.row, update)
        except BaseException:
            self._drop(entry)
            raise
        self._count(entry)
        return result

    async def apply_remote_update(
        self,
        doc_id: str,
        update: bytes,
        *,
        workspace_id: str | None = None,
        update_id: str | None = None,
        origin: str | None = None,
    ) -> bool:
        """Merge an update that came from the cloud (no outbox entry), creating the document
        if needed; False when ``update_id`` is already stored (a repeated pull) or the update
        is empty. InvalidInput on ``update`` unless it is one well-formed Yjs update v1."""
        doc_id = identifier("doc_id", doc_id)
        if update_id is not None and not is_uuid(update_id):
            raise InvalidInput("update_id", "must be a lower-case UUID string")
        if not _checked(update):
            return False
        entry = await self._entry(doc_id, Create(workspace_id, "", outbox=False))
        self._integrate(entry, update)
        op = doc_ops.remote_update_op(entry.row, update, update_id, origin or REMOTE_ORIGIN)
        try:
            stored = await self._writer.submit(op)
        except BaseException:
            self._drop(entry)
            raise
        if stored is not None:
            self._count(entry)
        return stored is not None

    async def load(self, id: str) -> Doc[Any]:
        """A fresh pycrdt Doc built from what is committed (snapshot + remaining updates)."""
        doc_id = identifier("id", id)
        stored = await self._read(doc_id)
        replayed = replay(stored.snapshot, [data for _, data in stored.updates])
        _warn_skipped(doc_id, stored, replayed.skipped)
        return replayed.doc

    async def compact(self, id: str) -> int:
        """Fold the stored updates into the snapshot in one transaction; how many were folded
        (updates still pending are kept)."""
        doc_id = identifier("id", id)
        async with self._compact_lock:
            stored = await self._read(doc_id)
            if not stored.updates:
                return 0
            datas = [data for _, data in stored.updates]
            snapshot, pending = await asyncio.to_thread(fold, stored.snapshot, datas)
            upto = stored.updates[-1][0]
            kept = {stored.updates[i][0] for i in pending}
            folded = None if not kept else [s for s, _ in stored.updates if s not in kept]
            op = doc_ops.compact_op(doc_id, stored.snapshot_seq, upto, snapshot, folded)
            count: int = await self._writer.submit(op)
        entry = self._cache.get(doc_id)
        if entry is not None:
            entry.count = max(0, entry.count - count)
        logger.debug("doc.compacted doc_id=%s folded=%d kept=%d", doc_id, count, len(kept))
        return count

    async def absorb(self, updates: Iterable[tuple[str, bytes]]) -> int:
        """Bring the loaded Docs up to date with ``(doc_id, update)`` pairs that sync has
        already stored and committed; how many reached a loaded Doc. Under ``_load_lock``, so
        a load in flight finishes first (it may already hold an update: applying an integrated
        update again changes nothing). A document that is not loaded reads them when it is."""
        absorbed = 0
        async with self._load_lock:
            for doc_id, data in updates:
                entry = self._cache.get(doc_id)
                if entry is None:
                    continue
                try:
                    apply(entry.doc, data, entry.waiting)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException:  # stored but unusable here: the next load decides
                    logger.warning("doc.absorb.failed doc_id=%s", doc_id, exc_info=True)
                    self._drop(entry)
                    continue
                self._count(entry)
                absorbed += 1
        return absorbed

    async def refresh(self, rows: Iterable[dict[str, Any]]) -> None:
        """Give the loaded documents the metadata (``doc_ops.ROW_COLUMNS``) sync has stored and
        committed, in place (a local update queued meanwhile writes under the new workspace).
        A document that a pull adopted into a workspace (it had none: sync_docs.py) then has
        the local updates written without one since claimed and queued (behind every update
        queued before the refresh). Under ``_load_lock``, as ``absorb``."""
        adopted: list[str] = []
        async with self._load_lock:
            for row in rows:
                entry = self._cache.get(row["id"])
                if entry is None:
                    continue
                if entry.row["workspace_id"] is None and row["workspace_id"] is not None:
                    adopted.append(row["id"])
                entry.row.update(row)
        for doc_id in adopted:
            late = await self._writer.submit(adopt_late_updates_op(doc_id))
            if late:
                logger.info("doc.adopted.late doc_id=%s updates=%d", doc_id, late)

    async def apply_broadcast(
        self, doc_id: str, update: bytes, *, workspace_id: str, update_id: str, origin: str
    ) -> bool:
        """An update another device of ``workspace_id`` sent by realtime broadcast: merged as
        a remote update (deduplicated by ``update_id``, so its later pull changes nothing) when
        the document is here and belongs to that workspace; False otherwise (the pull brings
        it, with its document)."""
        doc_id = identifier("doc_id", doc_id)
        try:
            entry = await self._entry(doc_id)
        except NotFound:
            return False
        if entry.row["workspace_id"] != workspace_id:
            return False
        return await self.apply_remote_update(
            doc_id, update, workspace_id=workspace_id, update_id=update_id, origin=origin
        )

    async def close(self) -> None:
        """Stop the compaction task (a compaction cut short changes nothing) and forget the
        loaded documents."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        self._cache.clear()

    # -- the cache ----------------------------------------------------------------------------

    async def _entry(self, doc_id: str, create: Create | None = None) -> _Entry:
        entry = self._cache.get(doc_id)
        if entry is None:
            async with self._load_lock:  # loads are rare: one at a time keeps them simple
                entry = self._cache.get(doc_id)
                if entry is None:
                    entry = await self._load(doc_id, create)
        self._cache.move_to_end(doc_id)
        return entry

    async def _load(self, doc_id: str, create: Create | None) -> _Entry:
        stored: Stored | None = await self._writer.submit(doc_ops.load_op(doc_id, create))
        if stored is None:
            raise NotFound("document", doc_id)
        datas = [data for _, data in stored.updates]
        doc, text, waiting, skipped = replay(stored.snapshot, datas)
        _warn_skipped(doc_id, stored, skipped)
        entry = _Entry(stored.row, doc, text, len(datas), waiting)
        self._cache[doc_id] = entry
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self._count(entry, 0)
        return entry

    def _drop(self, entry: _Entry) -> None:
        """Forget a cached Doc that may hold an update that is not stored."""
        doc_id = entry.row["id"]
        if self._cache.get(doc_id) is entry:
            del self._cache[doc_id]

    def _integrate(self, entry: _Entry, update: bytes) -> None:
        try:
            apply(entry.doc, update, entry.waiting)
        except ValueError as exc:  # undecodable: refused before anything is integrated
            raise InvalidInput("update", f"not a Yjs update ({exc})") from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a panic in yrs (pyo3 raises those as BaseException)
            logger.warning("doc.update.panic doc_id=%s", entry.row["id"], exc_info=True)
            self._drop(entry)
            raise InvalidInput("update", "the update could not be applied") from exc

    async def _read(self, doc_id: str) -> Stored:
        stored = await run_in_thread(self._reader, doc_ops.read_stored, doc_id)
        if stored is None:
            raise NotFound("document", doc_id)
        return stored

    # -- batched local writes -----------------------------------------------------------------

    async def _write_local(self, row: dict[str, Any], update: bytes) -> dict[str, Any]:
        """Add the update to the open batch; the first writer of a batch submits it (queued at
        once, so it is ahead of any later load) and hands the results to the others."""
        shared = self._shared
        if shared is not None and shared.batch.add(row, update) is not None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
            shared.waiters.append(waiter)  # same step as the add: indexes stay aligned
            return await waiter
        shared = self._shared = _Shared(LocalBatch())
        shared.batch.add(row, update)
        try:
            results: list[dict[str, Any] | InvalidInput] = await self._writer.submit(
                shared.batch.op
            )
        except asyncio.CancelledError:
            _fail(shared.waiters, StoreError("the write was cancelled; its outcome is unknown"))
            raise
        except BaseException as exc:
            _fail(shared.waiters, exc)
            raise
        for waiter, result in zip(shared.waiters, results[1:], strict=True):
            if waiter.done():  # its writer was cancelled; the update is written (or not) anyway
                continue
            if isinstance(result, InvalidInput):  # refused alone: the others are stored
                waiter.set_exception(result)
            else:
                waiter.set_result(result)
        if isinstance(results[0], InvalidInput):
            raise results[0]
        return results[0]

    # -- background compaction ----------------------------------------------------------------

    def _count(self, entry: _Entry, added: int = 1) -> None:
        entry.count += added
        if entry.count < self.compact_every or self._closed:
            return
        self._due[entry.row["id"]] = None
        if self._worker is None:
            loop = asyncio.get_running_loop()
            self._worker = loop.create_task(self._compact_due(), name="store-doc-compaction")
        self._wakeup.set()

    async def _compact_due(self) -> None:
        while True:
            if not self._due:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            doc_id = next(iter(self._due))
            del self._due[doc_id]
            entry = self._cache.get(doc_id)
            if entry is not None and entry.count < self.compact_every:
                continue  # marked again during its own compaction, which folded those updates
            try:
                await self.compact(doc_id)
            except ShuttingDown:
                return
            except Exception:  # supervisor boundary: the next update schedules it again
                logger.exception("doc.compact.failed doc_id=%s", doc_id)


def _checked(update: bytes) -> int:
    """How many structs and deletions ``update`` carries (0: the empty update); InvalidInput
    unless it is exactly one well-formed Yjs update v1."""
    if not isinstance(update, bytes):
        raise InvalidInput("update", "must be bytes")
    try:
        return check_update(update)
    except MalformedUpdate as exc:
        raise InvalidInput("update", f"is not exactly one Yjs update (v1): {exc}") from None


def _warn_skipped(doc_id: str, stored: Stored, skipped: list[tuple[int, str]]) -> None:
    """Log (never the data) what a load left out of the document as unusable."""
    for index, reason in skipped:
        where = "snapshot" if index == SNAPSHOT else f"seq={stored.updates[index][0]}"
        logger.warning("doc.load.skipped doc_id=%s %s reason=%s", doc_id, where, reason)


def _fail(waiters: list[asyncio.Future[dict[str, Any]]], exc: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
