"""Log lines about single rows, one line per kind once a transaction has many of them.

A push of 500 rows the cloud refuses (a link made while the clock is ahead, a policy that
refuses a whole workspace) would otherwise write 500 WARNING lines at every retry, for as
long as the cause lasts. ``RowLog`` collects the rows of one transaction by what the line
says of them (``group``: e.g. table and reason); ``flush`` writes a group of one row as its
own line, and a larger group as ONE line with the count and the first ids, every row then
at DEBUG. Values are ids, names and reason codes only, never row content.
"""

from __future__ import annotations

import logging
from typing import Any, Final

__all__ = ["RowLog"]

#: Ids named in a group's line (the others are counted, and logged at DEBUG).
FIRST_IDS: Final = 3


class RowLog:
    def __init__(self, logger: logging.Logger, level: int, event: str) -> None:
        self._logger = logger
        self._level = level
        self._event = event
        self._groups: dict[tuple[tuple[str, Any], ...], list[tuple[str, dict[str, Any]]]] = {}

    def add(self, group: dict[str, Any], row_id: str, **detail: Any) -> None:
        """One row: ``group`` says what the line says of every row of its group (the first
        row's ``detail`` stands for them in the group's line)."""
        self._groups.setdefault(tuple(group.items()), []).append((row_id, detail))

    def flush(self) -> None:
        """Write the lines (once the transaction committed its rows) and start over."""
        groups, self._groups = self._groups, {}
        log = self._logger
        if not log.isEnabledFor(self._level):
            return
        for group, rows in groups.items():
            said = " ".join(f"{key}={value}" for key, value in group)
            if len(rows) == 1:
                row_id, detail = rows[0]
                log.log(self._level, "%s %s id=%s%s", self._event, said, row_id, _text(detail))
                continue
            ids = ",".join(row_id for row_id, _ in rows[:FIRST_IDS])
            more = f",+{len(rows) - FIRST_IDS}" if len(rows) > FIRST_IDS else ""
            first = _text(rows[0][1])
            log.log(
                self._level, "%s %s rows=%d ids=%s%s%s", self._event, said, len(rows), ids,
                more, first,
            )  # fmt: skip
            if log.isEnabledFor(logging.DEBUG):
                for row_id, detail in rows:
                    log.debug("%s %s id=%s%s", self._event, said, row_id, _text(detail))


def _text(detail: dict[str, Any]) -> str:
    return "".join(f" {key}={value}" for key, value in detail.items())
