"""The cloud's REST API as the daemon uses it: the sync RPCs, and the reads linking needs.

Everything is raw httpx + orjson on the session's shared HTTP/1.1 client, the reads too:
postgrest-py's client keeps the bearer on the client rather than per request (racy while the
token rotates under concurrent calls), retries GETs on a schedule of its own, and its APIError
has no HTTP status, which the retry policy keys on (a 401 means "refresh", whatever the code).
For the hot path, orjson encodes and decodes a 500-row batch several times faster than json,
and each batch is one request (the caller batches: at most 500 rows / 1 MiB).

A request whose token is refused (401; ``retry.ReAuth``) gets one session refresh and one
repeat; a second refusal is ``CloudUnavailable`` ``token_rejected`` (retried with backoff: the
session stands, and that token is not refreshed again before it is due). Failures are
``CloudError``s carrying their ``retry.Failure`` (see errors.py), so the sync driver decides
about retries.
"""

from __future__ import annotations

import email.utils
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import httpx
import orjson

from daemon.errors import InvalidInput
from daemon.sync.cloud.errors import (
    AuthRequired,
    CloudProtocolError,
    CloudRejected,
    CloudUnavailable,
)
from daemon.sync.cloud.http import decode_json
from daemon.sync.cloud.paging import KeysetPage, content_range_total
from daemon.sync.cloud.records import (
    CloudWorkspace,
    Membership,
    Profile,
    PullMarks,
    check_marks,
    check_pull_page,
    check_pull_progress,
    check_push_results,
    check_uuid,
    oldest_first,
    parse_rows,
    pull_head,
)
from daemon.sync.cloud.session import CloudSession
from daemon.sync.retry import TOKEN_REJECTED, ReAuth

__all__ = ["MAX_PULL_LIMIT", "CloudApi", "PulledPage"]

logger = logging.getLogger(__name__)

MAX_PULL_LIMIT: Final = 10_000  # sync_pull's own cap
_WORKSPACE_COLUMNS: Final = "id,org_id,name,description,created_at,deleted_at"
_T = TypeVar("_T")


class CloudApi:
    """REST calls as the session's user; every method may raise a ``CloudError``."""

    def __init__(self, session: CloudSession) -> None:
        self._session = session
        self._http = session.http

    def __repr__(self) -> str:
        return f"CloudApi(url={self._http.url!r})"

    # Sync (the hot path)

    async def push(self, changes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``sync_push`` one batch; one result per change, in order
        (``{id, table, status: applied|superseded|rejected, reason?, detail?}``)."""
        if not changes:
            return []
        content = _encode({"changes": list(changes)}, "changes")
        response = await self._request(
            "POST", "/rest/v1/rpc/sync_push", operation="rest.push", content=content
        )
        results = _checked(
            decode_json(response, operation="rest.push"),
            lambda body: check_push_results(body, len(changes)),
            "rest.push",
        )
        _note_cloud_time(response, results)
        logger.debug("rest.push.complete rows=%d", len(results))
        return results

    async def pull_page(
        self, *, cursor: str | None, limit: int, workspace_id: str | None
    ) -> PulledPage:
        """``sync_pull`` one page, as it arrived: its ``body`` is ``{cursor, has_more, changes:
        [{table, id, workspace_id, row}]}``; pass ``cursor`` back for the next page.
        A page that says has_more must move the cursor on (``check_pull_progress``), else
        ``unexpected_shape``."""
        body = _pull_args(cursor, "limit", limit, workspace_id)
        content = _encode(body, "pull")
        response = await self._request(
            "POST", "/rest/v1/rpc/sync_pull", operation="rest.pull", content=content
        )
        page = PulledPage(response)
        _checked(page.head, lambda head: check_pull_progress(cursor, head), "rest.pull")
        return page

    async def pull_marks(
        self, *, cursor: str | None, step: int, workspace_id: str | None
    ) -> PullMarks:
        """``sync_pull_marks``: how many rows the pulls after ``cursor`` would serve now (a
        long pull's progress is shown against it), and where each page of ``step`` rows of
        them ends (the pages are then fetched at once, each from its mark)."""
        body = _pull_args(cursor, "step", step, workspace_id)
        response = await self._request(
            "POST",
            "/rest/v1/rpc/sync_pull_marks",
            operation="rest.marks",
            content=_encode(body, "marks"),
        )
        answer = decode_json(response, operation="rest.marks")
        return _checked(answer, lambda b: check_marks(b, step), "rest.marks")

    # Reads for linking

    async def profile(self) -> Profile | None:
        """The logged-in user's profile row, if the cloud has one."""
        rows = await self._select(
            "profiles",
            {"select": "id,email,display_name,avatar_url", "id": f"eq.{self._user_id()}"},
            operation="rest.profile",
        )
        return _checked(rows[0], Profile.from_row, "rest.profile") if rows else None

    async def memberships(self) -> list[Membership]:
        """The user's organisations with their role, first joined first."""
        rows = await self._select(
            "org_memberships",
            {
                "select": "org_id,role,joined_at",
                "user_id": f"eq.{self._user_id()}",
                "order": "joined_at.asc,org_id.asc",
            },
            operation="rest.memberships",
        )
        ids = [_checked(r.get("org_id"), check_uuid, "rest.memberships") for r in rows]
        if not ids:
            return []
        orgs = await self._select(
            "organizations",
            {"select": "id,name", "id": f"in.({','.join(ids)})"},
            operation="rest.memberships",
        )
        names = {str(o.get("id")): o.get("name") for o in orgs}
        return [
            Membership(
                org_id=org_id,
                org_name=str(names.get(org_id) or ""),
                role=str(row.get("role") or ""),
                joined_at=str(row.get("joined_at") or ""),
            )
            for org_id, row in zip(ids, rows, strict=True)
        ]

    async def workspaces(self, org_id: str) -> list[CloudWorkspace]:
        """The organisation's workspaces that are not deleted, oldest first: all of them,
        however few rows the cloud answers per read (paged by id, then sorted here)."""
        rows = await self._select_all(
            "workspaces",
            {
                "select": _WORKSPACE_COLUMNS,
                "org_id": f"eq.{_uuid('org_id', org_id)}",
                "deleted_at": "is.null",
            },
            operation="rest.workspaces",
        )
        return oldest_first(_checked(r, CloudWorkspace.from_row, "rest.workspaces") for r in rows)

    async def get_workspace(self, workspace_id: str) -> CloudWorkspace | None:
        """One workspace (also a deleted one: ``deleted_at`` says so), or None if the user
        cannot see it."""
        rows = await self._select(
            "workspaces",
            {"select": _WORKSPACE_COLUMNS, "id": f"eq.{_uuid('workspace_id', workspace_id)}"},
            operation="rest.get_workspace",
        )
        return _checked(rows[0], CloudWorkspace.from_row, "rest.get_workspace") if rows else None

    async def create_workspace(
        self, *, id: str, org_id: str, name: str, description: str | None = None
    ) -> CloudWorkspace:
        """Create a workspace with the caller's id (so a retry cannot make two); creating one
        that already exists in that organisation returns it."""
        row: dict[str, Any] = {
            "id": _uuid("id", id),
            "org_id": _uuid("org_id", org_id),
            "name": _text("name", name),
        }
        if description is not None:
            row["description"] = _text("description", description, allow_empty=True)
        try:
            response = await self._request(
                "POST",
                "/rest/v1/workspaces",
                operation="rest.create_workspace",
                params={"select": _WORKSPACE_COLUMNS},
                content=_encode(row, "workspace"),
                headers={"Prefer": "return=representation"},
            )
        except CloudRejected as exc:
            if exc.reason != "23505":
                raise
            existing = await self.get_workspace(row["id"])
            if existing is None or existing.org_id != row["org_id"]:
                raise
            return existing
        rows = _checked(
            decode_json(response, operation="rest.create_workspace"),
            parse_rows,
            "rest.create_workspace",
        )
        if len(rows) != 1:
            raise CloudProtocolError("rest.create_workspace", "bad_result", status=201)
        return _checked(rows[0], CloudWorkspace.from_row, "rest.create_workspace")

    # Plumbing

    async def _select(
        self, table: str, params: Mapping[str, str], *, operation: str
    ) -> list[Mapping[str, Any]]:
        response = await self._request(
            "GET", f"/rest/v1/{table}", operation=operation, params=params
        )
        return _checked(decode_json(response, operation=operation), parse_rows, operation)

    async def _select_all(
        self, table: str, params: Mapping[str, str], *, operation: str
    ) -> list[Mapping[str, Any]]:
        """Every row ``params`` select, in id order: a read answers at most the cloud's
        ``max-rows`` (paging.py says how the pages follow each other)."""
        rows: list[Mapping[str, Any]] = []
        page: KeysetPage | None = KeysetPage()
        while page is not None:
            response = await self._request(
                "GET",
                f"/rest/v1/{table}",
                operation=operation,
                params={**params, **page.params},
                headers={"Prefer": "count=exact"},
            )
            got = _checked(decode_json(response, operation=operation), parse_rows, operation)
            total = content_range_total(response.headers.get("content-range"))
            following = functools.partial(page.next_page, total=total)
            page = _checked([row.get("id") for row in got], following, operation)
            rows.extend(got)
        return rows

    async def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        send = functools.partial(
            self._http.send,
            method,
            path,
            operation=operation,
            params=params,
            content=content,
            headers=headers,
        )
        token = await self._session.access_token()
        try:
            return await send(bearer=token)
        except AuthRequired as exc:
            if not isinstance(exc.decision, ReAuth):
                raise
            logger.info("%s.token_rejected: refreshing once", operation)
        token = await self._session.refresh_access_token(token)
        try:
            return await send(bearer=token, reauthed=True)
        except CloudUnavailable as exc:
            if exc.reason == TOKEN_REJECTED:  # the session stands; retried with backoff
                logger.warning("%s.token_rejected_after_refresh", operation)
                self._session.token_refused(token)
            raise

    def _user_id(self) -> str:
        user = self._session.status.user
        if user is None or not self._session.status.logged_in:
            raise AuthRequired("rest", "logged_out")
        return user.id


def _note_cloud_time(response: httpx.Response, results: list[dict[str, Any]]) -> None:
    """Give each result refused as ``clock_skew`` the cloud's time as ``cloud_time_ms`` (the
    answer's ``Date``, to the second below: a retry waits for the cloud's clock, not ours,
    store/sync_skew.py), when the answer has one."""
    skewed = [r for r in results if r.get("reason") == "clock_skew"]
    if not skewed:
        return
    try:
        at = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError):
        return
    if at.tzinfo is None:  # (not an HTTP date: those are GMT)
        return
    for result in skewed:
        result["cloud_time_ms"] = round(at.timestamp() * 1000)


class PulledPage:
    """One ``sync_pull`` answer as it arrived, decoded and checked when ``body`` is first read.

    ``head``, the answer's next cursor and has_more, is read off its first bytes when the cloud
    put them before the changes, as syncd's ``sync_pull`` does (0006): a catch-up asks for the
    next page at once and decodes this one meanwhile, so decoding is off its chain of requests
    (each needs the cursor the one before it answered). In another key order ``head`` decodes
    the body. ``body`` raises CloudProtocolError for an answer that is not a page, or that
    contradicts its first bytes.
    """

    __slots__ = ("_body", "_head", "_response")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._head = pull_head(response.content)
        self._body: dict[str, Any] | None = None

    @property
    def head(self) -> tuple[str | None, bool]:
        if self._head is None:
            body = self.body
            self._head = body.get("cursor"), body["has_more"]
        return self._head

    def decoded_by(
        self, decode: Callable[[bytes], tuple[_T, str | None, bool] | None]
    ) -> _T | None:
        """What ``decode`` makes of the answer's text (None when it declines it): its value,
        the cursor and has_more it read, which are held to the head as ``body``'s are."""
        content = self._response.content
        decoded = decode(content)
        if decoded is None:
            return None
        value, cursor, has_more = decoded
        if self._head is None:
            self._head = cursor, has_more
        elif self._head != (cursor, has_more):
            raise CloudProtocolError("rest.pull", "unexpected_shape")
        logger.debug("rest.pull.complete bytes=%d more=%s decoded=direct", len(content), has_more)
        return value

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            head = self._head
            self._body = page = _checked(
                decode_json(self._response, operation="rest.pull"),
                lambda body: check_pull_page(body, head),
                "rest.pull",
            )
            logger.debug(
                "rest.pull.complete rows=%d more=%s", len(page["changes"]), page["has_more"]
            )
        return self._body


def _checked(body: Any, check: Callable[[Any], _T], operation: str) -> _T:
    try:
        return check(body)
    except ValueError as exc:
        raise CloudProtocolError(operation, "unexpected_shape") from exc


def _encode(value: Any, field: str) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(field, "cannot be encoded as JSON") from exc


def _pull_args(cursor: Any, name: str, size: Any, workspace_id: Any) -> dict[str, Any]:
    """The body of ``sync_pull`` (``name`` "limit") or ``sync_pull_marks`` ("step"), checked:
    a text cursor or None, ``size`` an integer from 1 to MAX_PULL_LIMIT, a UUID or None."""
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidInput("cursor", "must be text or None")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PULL_LIMIT:
        raise InvalidInput(name, f"must be an integer from 1 to {MAX_PULL_LIMIT}")
    workspace = None if workspace_id is None else _uuid("workspace_id", workspace_id)
    return {"cursor": cursor, name: size, "workspace_id": workspace}


def _uuid(field: str, value: Any) -> str:
    try:
        return check_uuid(value)
    except ValueError:
        raise InvalidInput(field, "must be a UUID") from None


def _text(field: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise InvalidInput(field, "must be a non-empty string")
    return value
