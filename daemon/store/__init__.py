"""The local store: every SQL statement of the daemon lives in this package.

``Store.open`` migrates the database, creates the device id once, and starts the
group-committing writer. Repositories return plain JSON-able dicts. Each mutation writes its row,
its outbox entry (linked workspaces only: sync_outbox.py) and a changelog entry in one
transaction; its ``await`` returns after the commit. Opening also drops the outbox entries of
unlinked workspaces a store written before that rule may hold (``drop_unlinked_entries``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import aiosqlite

from daemon.config import FILE_MODE, StoreSettings, make_private_dir
from daemon.errors import StoreError
from daemon.events import ChangeEvent
from daemon.hlc import Clock
from daemon.store import migrate as migrations
from daemon.store.account import AccountStore
from daemon.store.base import Page
from daemon.store.changelog import Changelog
from daemon.store.changelog_size import read_size
from daemon.store.codec import RowCodec
from daemon.store.conversations import ConversationRepo
from daemon.store.documents import DocumentRepo
from daemon.store.engine import Writer, connect, run_in_thread
from daemon.store.failures import refuse_read_only
from daemon.store.ids import uuid7
from daemon.store.integrity import IntegrityCheck
from daemon.store.messages import MessageRepo
from daemon.store.schema import ENTITY_TABLES
from daemon.store.sql import meta_get_sql, meta_put_sql
from daemon.store.sync import SyncRepo
from daemon.store.sync_outbox import drop_unlinked_entries
from daemon.store.tasks import TaskRepo
from daemon.store.txn import WriteContext, read_seqs
from daemon.store.workspaces import WorkspaceRepo

__all__ = [
    "AccountStore",
    "Changelog",
    "ConversationRepo",
    "DocumentRepo",
    "MessageRepo",
    "Page",
    "Store",
    "SyncRepo",
    "TaskRepo",
    "WorkspaceRepo",
]

logger = logging.getLogger(__name__)


class Store:
    """The daemon's SQLite database. Open with ``await Store.open(path, settings)``."""

    device_id: str
    workspaces: WorkspaceRepo
    conversations: ConversationRepo
    messages: MessageRepo
    tasks: TaskRepo
    changelog: Changelog
    documents: DocumentRepo
    sync: SyncRepo
    account: AccountStore

    def __init__(
        self,
        *,
        path: Path,
        device_id: str,
        writer_conn: aiosqlite.Connection,
        reader_conn: aiosqlite.Connection,
        writer: Writer,
        codecs: dict[str, RowCodec],
        integrity_check: bool = False,
    ) -> None:
        self.path = path
        #: the background ``PRAGMA quick_check`` (app.py runs it once the daemon listens)
        self.integrity = IntegrityCheck(path, enabled=integrity_check)
        self.device_id = device_id
        self._writer_conn = writer_conn
        self._reader_conn = reader_conn
        self._writer = writer
        self._closed = False
        self.workspaces = WorkspaceRepo(writer, reader_conn, codecs["workspaces"])
        self.conversations = ConversationRepo(writer, reader_conn, codecs["conversations"])
        self.messages = MessageRepo(writer, reader_conn, codecs["messages"])
        self.tasks = TaskRepo(writer, reader_conn, codecs["tasks"])
        self.changelog = Changelog(writer, reader_conn)
        self.documents = DocumentRepo(writer, reader_conn)
        self.sync = SyncRepo(writer, reader_conn, self.documents)
        self.account = AccountStore(writer, reader_conn)

    @classmethod
    async def open(cls, path: Path, settings: StoreSettings) -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        path = Path(path)
        try:
            make_private_dir(path.parent)
            _create_private(path)
        except OSError as exc:
            raise StoreError(
                f"cannot create {exc.filename or path}: {exc.strerror or exc}"
            ) from exc
        if path.is_dir():  # SQLite would only say "unable to open database file"
            raise StoreError(f"cannot open {path}: it is a directory, not a database file")
        refuse_read_only(path)
        writer_conn = await connect(path, settings, prepare=_prepare)
        try:
            device_id, last_hlc, last_seq, first_seq, chars = await run_in_thread(
                writer_conn, _boot
            )
            reader_conn = await connect(path, settings, query_only=True)
        except sqlite3.Error as exc:
            await writer_conn.close()
            raise StoreError(f"cannot open {path}: {exc}") from exc
        except BaseException:
            await writer_conn.close()
            raise
        codecs = {table: RowCodec(table) for table in ENTITY_TABLES}
        clock = Clock(device_id, last=last_hlc)
        ctx = WriteContext(
            writer_conn._conn,
            clock=clock,
            codecs=codecs,
            changelog_retain=settings.changelog_retain,
            last_seq=last_seq,
            first_seq=first_seq,
            changelog_retain_bytes=settings.changelog_retain_bytes,
            changelog_chars=chars,
        )
        writer = Writer(writer_conn, ctx)
        writer.start(last_seq=last_seq, first_seq=first_seq)
        logger.info("store.opened path=%s device_id=%s last_seq=%d", path, device_id, last_seq)
        return cls(
            path=path,
            device_id=device_id,
            writer_conn=writer_conn,
            reader_conn=reader_conn,
            writer=writer,
            codecs=codecs,
            integrity_check=settings.integrity_check,
        )

    @property
    def clock_wall_ms(self) -> int:
        """The wall time (ms) the device's clock stands at: its changes carry it. Ahead of the
        wall clock after the wall clock ran fast and was set back (the clock never goes back:
        hlc.py ``clock_ahead``)."""
        return self._writer.clock_wall_ms

    def add_commit_listener(
        self, fn: Callable[[Sequence[ChangeEvent]], None]
    ) -> Callable[[], None]:
        """Call ``fn(events)`` on the event loop after each commit, before the writers resume.

        Returns a function that removes the listener. ``fn`` must not raise (it is logged).
        """
        return self._writer.add_listener(fn)

    def add_push_listener(self, fn: Callable[[frozenset[str]], None]) -> Callable[[], None]:
        """Call ``fn(workspace_ids)`` on the event loop after a commit that queued outbox
        entries of those workspaces which no changelog entry announces (a new document's row,
        an adopted document: ``WriteContext.queue_push``); the changes that come with this
        device's changelog entries are told to the commit listeners only.

        Returns a function that removes the listener. ``fn`` must not raise (it is logged).
        """
        return self._writer.add_push_listener(fn)

    async def close(self) -> None:
        """Refuse new writes (ShuttingDown), commit the queued ones, close the connections."""
        if self._closed:
            return
        self._closed = True
        self.integrity.stop()  # (app.py waits for a running check before closing the store)
        try:
            await self.documents.close()  # its compaction task, before the writer stops
            await self._writer.close()
            await run_in_thread(self._writer_conn, _optimize)
        finally:
            await self._reader_conn.close()
            await self._writer_conn.close()
        logger.info("store.closed path=%s", self.path)


def _optimize(conn: sqlite3.Connection) -> None:
    """Refresh the query planner's statistics where SQLite thinks it helps (cheap)."""
    try:
        conn.execute("PRAGMA optimize")
    except sqlite3.Error:
        logger.warning("store.optimize.failed", exc_info=True)


def _prepare(conn: sqlite3.Connection) -> None:
    """Refuse a database newer than this code before touching it (before WAL is set)."""
    migrations.refuse_newer(conn, migrations.discover())


def _boot(conn: sqlite3.Connection) -> tuple[str, str | None, int, int, int]:
    migrations.migrate(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(meta_get_sql(), {"key": "device_id"}).fetchone()
        if row is None:
            device_id = uuid7()
            conn.execute(meta_put_sql(), {"key": "device_id", "value": device_id})
        else:
            device_id = row[0]
        hlc_row = conn.execute(meta_get_sql(), {"key": "hlc_last"}).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    drop_unlinked_entries(conn)
    last_seq, first_seq = read_seqs(conn)
    chars = read_size(conn, first_seq, last_seq)  # (changelog_size.py: no full scan)
    return device_id, hlc_row[0] if hlc_row else None, last_seq, first_seq, chars


def _create_private(path: Path) -> None:
    """Create an empty database file with mode 0600 unless there is one (SQLite makes a new
    file 0644 less the umask, and gives the -wal and -shm files the database file's mode). An
    existing file keeps its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
