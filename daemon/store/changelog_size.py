"""The changelog's size: what bounds it by bytes (``StoreSettings.changelog_retain_bytes``)
without a scan of the whole changelog, neither per write nor at start.

The size is counted in characters of the entries' ``data`` (the JSON text): ``len`` of the text
the writer inserts, SQLite's ``length(data)`` where it reads it back. That is the byte count for
ASCII text (orjson escapes nothing, so JSON keys, ids, clocks and English text are ASCII); text
in other scripts takes 2-4 bytes per character on disk, so such a changelog may hold up to that
many times the setting. Counting characters costs the write path one ``len`` and one addition.

The writer keeps a running total of the kept entries' size (``WriteContext``); it reads sizes
only when it prunes (the pruned entries', which the DELETE reads anyway). The total is saved in
``meta`` (``KEY``: ``first through chars``: the entries from seq ``first`` up to seq
``through`` hold ``chars`` characters) in every transaction that prunes and at a clean close.
Opening adds the size of the entries written after ``through`` (those since the last prune or
close: at most about the bound itself). Without a usable record (a changelog written before
this bound existed, or one pruned by such code since: ``first`` no longer matches) it sums the
whole changelog once.
"""

from __future__ import annotations

import sqlite3

from daemon.store.sql import (
    changelog_chars_after_sql,
    changelog_sizes_sql,
    meta_get_sql,
    meta_put_sql,
)

KEY = "changelog_size"


def read_size(conn: sqlite3.Connection, first_seq: int, last_seq: int) -> int:
    """The characters of ``data`` the kept entries (``first_seq`` .. ``last_seq``) hold."""
    if first_seq == 0:  # (empty)
        return 0
    row = conn.execute(meta_get_sql(), {"key": KEY}).fetchone()
    mark = parse_mark(row[0] if row else None)
    through, chars = 0, 0
    if mark is not None and mark[0] == first_seq and mark[1] <= last_seq:
        through, chars = mark[1], mark[2]
    added = conn.execute(changelog_chars_after_sql(), {"after": through}).fetchone()[0]
    return chars + int(added)


def parse_mark(text: str | None) -> tuple[int, int, int] | None:
    """``(first, through, chars)`` of a saved record; None if absent or not one."""
    parts = (text or "").split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    first, through, chars = (int(p) for p in parts)
    return first, through, chars


def save_size(conn: sqlite3.Connection, first_seq: int, through: int, chars: int) -> None:
    conn.execute(meta_put_sql(), {"key": KEY, "value": f"{first_seq} {through} {chars}"})


def size_cut(conn: sqlite3.Connection, last_seq: int, excess: int) -> tuple[int, int]:
    """``(keep_from, removed)``: the oldest entries whose sizes add up to at least ``excess``
    characters go (the entry ``last_seq`` never does): keep from seq ``keep_from`` (0 when none
    goes); ``removed``: their size. Reads only the entries that go (and one more)."""
    keep_from, removed = 0, 0
    cursor = conn.execute(changelog_sizes_sql(), {"before": last_seq})
    try:
        for seq, size in cursor:
            if removed >= excess:
                break
            keep_from, removed = seq + 1, removed + int(size)
    finally:
        cursor.close()
    return keep_from, removed
