"""The files a running daemon depends on, watched for being deleted or replaced under it.

SQLite keeps writing to a file that was unlinked (a "cleanup" tool removed ``syncd.db-wal``,
the data dir was deleted, a file-sync client replaced the database): every write is still
acknowledged, and lost at the next start. ``FileWatch`` remembers each file's identity (device
and inode) when the daemon started and says which one is no longer at its path; the daemon
checks it every ``WATCH_EVERY_S`` and stops when one is gone (app.py), so at most that much
work is acknowledged into a file nobody will read again. A check is one ``stat`` per file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = ["WATCH_EVERY_S", "FileWatch", "file_identity"]

WATCH_EVERY_S: Final = 1.0


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` (links not followed), or None if there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class FileWatch:
    """Which of the watched files is no longer the one that was at its path at the start."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        #: what -> (path, identity at the start); a file missing at the start is not watched
        self._files = {
            what: (path, found)
            for what, path in paths.items()
            if (found := file_identity(path)) is not None
        }

    @property
    def watched(self) -> list[str]:
        return sorted(self._files)

    def problem(self) -> str | None:
        """What happened to the first watched file that is gone or replaced, else None."""
        for what, (path, started) in self._files.items():
            now = file_identity(path)
            if now is None:
                return f"{what} {path} was deleted"
            if now != started:
                return f"{what} {path} was replaced by another file"
        return None
