"""PostgREST request/response headers (pure): Prefer, Accept, profiles, Range, Content-Range."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from devcloud.rest.errors import RestError, invalid_schema

Return = Literal["representation", "minimal", "headers-only"]
OBJECT_MEDIA = "application/vnd.pgrst.object+json"
_ARRAY_MEDIA = frozenset(
    {"*/*", "application/*", "application/json", "application/vnd.pgrst.array+json"}
)
_RANGE = re.compile(r"^\s*(\d+)-(\d*)\s*$")


@dataclass(frozen=True)
class Preferences:
    """What ``Prefer:`` asked for; ``applied`` is echoed in ``Preference-Applied``."""

    returning: Return | None = None
    count: bool = False
    resolution: Literal["merge", "ignore"] | None = None
    missing_default: bool = False
    applied: tuple[str, ...] = field(default=())


def parse_prefer(values: Iterable[str]) -> Preferences:
    """Parse every ``Prefer`` header (comma-separated ``key=value``); unknown ones are ignored."""
    returning: Return | None = None
    count = missing_default = False
    resolution: Literal["merge", "ignore"] | None = None
    applied: list[str] = []
    for value in values:
        for token in (t.strip() for t in value.split(",")):
            key, _, arg = token.partition("=")
            if key == "return" and arg in ("representation", "minimal", "headers-only"):
                returning = arg  # type: ignore[assignment]  # narrowed by the tuple above
            elif key == "count" and arg in ("exact", "planned", "estimated"):
                count = True  # planned/estimated are answered exactly: tables here are small
            elif token == "resolution=merge-duplicates":
                resolution = "merge"
            elif token == "resolution=ignore-duplicates":
                resolution = "ignore"
            elif token == "missing=default":
                missing_default = True
            else:
                continue
            applied.append(token)
    return Preferences(returning, count, resolution, missing_default, tuple(applied))


def wants_object(accept: str | None) -> bool:
    """True for the single-object media type; False for JSON arrays; 406 PGRST107 otherwise."""
    if not accept or not accept.strip():
        return False
    offered = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for media in offered:
        if media == OBJECT_MEDIA:
            return True
        if media in _ARRAY_MEDIA:
            return False
    raise RestError(406, "PGRST107", f"None of these media types are available: {accept}")


def check_profile(profile: str | None) -> None:
    """Only the ``public`` schema is exposed (406 PGRST106 for any other)."""
    if profile is not None and profile.strip() not in ("", "public"):
        raise invalid_schema(profile.strip())


def parse_range(header: str | None) -> tuple[int, int | None] | None:
    """``Range: 0-9`` → (offset 0, limit 10); ``5-`` → (5, None); absent or malformed → None."""
    if not header:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    lower = int(match.group(1))
    if not match.group(2):
        return lower, None
    upper = int(match.group(2))
    return (lower, upper - lower + 1) if upper >= lower else None


def capped_limit(limit: int | None, max_rows: int | None) -> int | None:
    """The limit a read runs with under PostgREST's ``db-max-rows``: at most ``max_rows``
    rows, whatever ``limit=`` or ``Range`` asked (None: no limit / no cap). The rows left out
    show only in ``Content-Range`` (``0-999/*``; with a count ``0-999/5000`` and 206)."""
    if max_rows is None:
        return limit
    return max_rows if limit is None else min(limit, max_rows)


def content_range(lower: int, rows: int, total: int | None) -> str:
    """PostgREST's ``Content-Range``: ``0-9/42``, ``0-9/*``, ``*/0`` or ``*/*``."""
    upper = lower + rows - 1
    total_text = "*" if total is None else str(total)
    if total != 0 and lower <= upper:
        return f"{lower}-{upper}/{total_text}"
    return f"*/{total_text}"


def range_status(lower: int, rows: int, total: int | None) -> int:
    """200, 206 (a page of a larger counted result) or 416 (offset past the total)."""
    if total is None:
        return 200
    if lower > total:
        return 416
    return 206 if rows < total else 200


def range_error(lower: int, total: int) -> RestError:
    return RestError(
        416,
        "PGRST103",
        "Requested range not satisfiable",
        f"An offset of {lower} was requested, but there are only {total} rows.",
    )
