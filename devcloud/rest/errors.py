"""PostgREST's error shape and its SQLSTATE → HTTP status table (pure).

Every failure a client can see is a :class:`RestError`: an HTTP status plus the JSON body
PostgREST sends, ``{"code", "details", "hint", "message"}``. Database errors are translated
once, at the seam, by :func:`error_from_sqlstate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RestError(Exception):
    """A request that PostgREST would answer with an error body."""

    status: int
    code: str
    message: str
    details: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }


def parse_error(message: str, details: str | None = None) -> RestError:
    """A query-string parse failure (PGRST100)."""
    return RestError(400, "PGRST100", message, details)


def body_error(message: str = "Empty or invalid json", details: str | None = None) -> RestError:
    """A request body PostgREST cannot use (PGRST102)."""
    return RestError(400, "PGRST102", message, details)


def unknown_column(table: str, column: str) -> RestError:
    """A payload key that names no column (PGRST204)."""
    return RestError(
        400, "PGRST204", f"Could not find the '{column}' column of '{table}' in the schema cache"
    )


def undefined_column(table: str, column: str) -> RestError:
    """A query-string column that does not exist (PostgreSQL's own 42703)."""
    return RestError(400, "42703", f"column {table}.{column} does not exist")


def unknown_table(schema: str, table: str) -> RestError:
    return RestError(
        404, "PGRST205", f"Could not find the table '{schema}.{table}' in the schema cache"
    )


def single_object_error(rows: int) -> RestError:
    return RestError(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        f"The result contains {rows} rows",
    )


def invalid_schema(schema: str) -> RestError:
    return RestError(
        406,
        "PGRST106",
        f"Invalid schema: {schema}",
        hint="Only the following schemas are exposed: public",
    )


def jwt_error(reason: str) -> RestError:
    """401 for a token that does not verify; expiry is PGRST303, everything else PGRST301."""
    if "expired" in reason.lower():
        return RestError(401, "PGRST303", "JWT expired")
    if reason.startswith("no api key"):
        return RestError(401, "PGRST301", "No API key found in request")
    if reason.startswith("role "):
        return RestError(401, "22023", reason)
    return RestError(401, "PGRST301", "JWT cryptographic operation failed")


# SQLSTATE prefixes → HTTP status, after PostgREST's mapSQLtoHTTP (first match wins).
_EXACT = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "53400": 500,
    "57P01": 503,
    "P0001": 400,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
}
_PREFIXES = (
    ("08", 503),
    ("09", 500),
    ("0L", 403),
    ("0P", 403),
    ("28", 403),
    ("53", 503),
    ("25", 500),
    ("2D", 500),
    ("38", 500),
    ("39", 500),
    ("3B", 500),
    ("40", 500),
    ("54", 500),
    ("55", 500),
    ("57", 500),
    ("58", 500),
    ("F0", 500),
    ("HV", 500),
    ("P0", 500),
    ("XX", 500),
)


def http_status_for(sqlstate: str, message: str, *, is_anon: bool) -> int:
    """The HTTP status PostgREST answers a database error with."""
    if sqlstate in _EXACT:
        return _EXACT[sqlstate]
    if sqlstate == "42501":
        return 401 if is_anon else 403
    if sqlstate == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate == "22023":
        return 401 if message.startswith("role") and "does not exist" in message else 400
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    for prefix, status in _PREFIXES:
        if sqlstate.startswith(prefix):
            return status
    return 400


def error_from_sqlstate(
    sqlstate: str,
    message: str,
    details: str | None,
    hint: str | None,
    *,
    is_anon: bool,
) -> RestError:
    """Translate a PostgreSQL error into PostgREST's response."""
    status = http_status_for(sqlstate, message, is_anon=is_anon)
    return RestError(status, sqlstate, message, details or None, hint or None)
