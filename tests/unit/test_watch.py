"""FileWatch: which watched file is gone or no longer the one that was there."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.watch import FileWatch


def test_a_file_replaced_or_deleted_is_named(tmp_path: Path) -> None:
    db, wal = tmp_path / "a.db", tmp_path / "a.db-wal"
    db.write_text("db")
    wal.write_text("wal")
    watch = FileWatch({"the database": db, "its log": wal, "absent": tmp_path / "none"})
    assert watch.watched == ["its log", "the database"]  # missing at the start: not watched
    wal.write_text("written in place")  # the same file
    assert watch.problem() is None
    other = tmp_path / "other"
    other.write_text("another file")
    os.replace(other, wal)
    assert watch.problem() == f"its log {wal} was replaced by another file"
    db.unlink()
    assert watch.problem() == f"the database {db} was deleted"
