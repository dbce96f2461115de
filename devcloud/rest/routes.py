"""The ``/rest/v1`` endpoints: tables (GET/HEAD/POST/PATCH/DELETE) and ``/rpc/<function>``.

Each request: claims from the JWT (401 PGRST301/PGRST303), profile check, query-string parse,
then ONE transaction as the claims' role (``ctx.transaction_as``) that resolves the relation in
the schema cache, runs one statement built by :mod:`devcloud.rest.sql` and checks the
single-object rule (a violation rolls the transaction back, as PostgREST does). Errors from any
step become PostgREST's JSON error body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devcloud.context import Devcloud
from devcloud.keys import InvalidToken
from devcloud.rest import headers as hdr
from devcloud.rest.catalog import Catalog
from devcloud.rest.errors import (
    RestError,
    body_error,
    error_from_sqlstate,
    jwt_error,
    parse_error,
    single_object_error,
)
from devcloud.rest.query import Query, parse_query
from devcloud.rest.rpc import (
    Function,
    argument_names,
    build_call,
    build_raw_call,
    choose_overload,
    raw_body_function,
)
from devcloud.rest.sql import (
    Body,
    Relation,
    Statement,
    build_delete,
    build_insert,
    build_read,
    build_update,
)

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
_STALE = ("42703", "PGRST204")  # a column the cache may not know yet: refresh once and retry


@dataclass(frozen=True)
class Outcome:
    """What a handler produced: rows counted/returned and the JSON body from PostgreSQL."""

    total: int | None
    rows: int
    body: str | None


@dataclass(frozen=True)
class Call:
    """One parsed request, handed to the per-method handlers."""

    request: Request
    name: str
    query: Query
    prefs: hdr.Preferences
    as_object: bool
    payload: bytes


def routes(ctx: Devcloud) -> list[BaseRoute]:
    """The PostgREST subset, with paths relative to the ``/rest/v1`` mount."""
    api = RestApi(ctx)
    return [
        Route("/rpc/{function}", api.rpc, methods=["GET", "HEAD", "POST"]),
        Route("/{table}", api.table, methods=["GET", "HEAD", "POST", "PATCH", "DELETE"]),
    ]


class RestApi:
    def __init__(self, ctx: Devcloud, catalog: Catalog | None = None) -> None:
        self.ctx = ctx
        self.catalog = catalog or Catalog()

    async def table(self, request: Request) -> Response:
        return await self._serve(request, request.path_params["table"], self._table)

    async def rpc(self, request: Request) -> Response:
        return await self._serve(request, request.path_params["function"], self._rpc)

    async def _serve(
        self,
        request: Request,
        name: str,
        handler: Callable[[asyncpg.Connection, Call], Awaitable[Response]],
    ) -> Response:
        is_anon = True
        try:
            claims = self.ctx.claims_from_headers(request.headers)
            is_anon = str(claims.get("role") or "anon") == "anon"
            writes = request.method in ("POST", "PATCH", "DELETE")
            hdr.check_profile(
                request.headers.get("content-profile" if writes else "accept-profile")
            )
            call = Call(
                request,
                name,
                query=Query(),
                prefs=hdr.parse_prefer(request.headers.getlist("prefer")),
                as_object=hdr.wants_object(request.headers.get("accept")),
                payload=await request.body() if request.method in ("POST", "PATCH") else b"",
            )
            async with self.ctx.transaction_as(claims) as conn:
                return await handler(conn, call)
        except RestError as exc:
            return error_response(exc)
        except InvalidToken as exc:
            return error_response(jwt_error(exc.reason))
        except asyncpg.PostgresError as exc:
            return error_response(_from_postgres(exc, is_anon=is_anon))
        except (OSError, asyncpg.InterfaceError) as exc:
            logger.warning("rest.db_unavailable %s: %s", name, type(exc).__name__)
            return error_response(RestError(503, "PGRST000", "Database connection error"))
        except ClientDisconnect:
            # The client went away before its body arrived (a killed daemon): nobody is left to
            # answer and nothing was done. 499 is nginx's "client closed request".
            logger.debug("rest.client_disconnected %s %s", request.method, name)
            return Response(status_code=499)

    # --- tables --------------------------------------------------------------------------------

    async def _table(self, conn: asyncpg.Connection, call: Call) -> Response:
        query = parse_query(call.request.query_params.multi_items())
        call = replace(call, query=query)
        method = call.request.method
        if method in ("GET", "HEAD"):
            return await self._read(conn, call)
        if method == "POST":
            return await self._insert(conn, call)
        if query.limit is not None or query.offset is not None:
            raise parse_error("limit/offset on PATCH and DELETE are not supported by devcloud")
        return await self._modify(conn, call)

    async def _run(
        self, conn: asyncpg.Connection, name: str, build: Callable[[Relation], Statement]
    ) -> tuple[Relation, Outcome]:
        rel = await self.catalog.relation(conn, name)
        try:
            statement = build(rel)
        except RestError as exc:
            if exc.code not in _STALE:
                raise
            rel = await self.catalog.relation(conn, name, refresh=True)
            statement = build(rel)
        return rel, await execute(conn, statement)

    async def _read(self, conn: asyncpg.Connection, call: Call) -> Response:
        query, prefs = call.query, call.prefs
        offset, limit = None, query.limit
        requested = hdr.parse_range(call.request.headers.get("range"))
        if requested and query.limit is None and query.offset is None:
            offset, limit = requested
        limit = hdr.capped_limit(limit, self.ctx.config.max_rows)
        body: Body = "none" if call.request.method == "HEAD" else "rows"
        _, out = await self._run(
            conn,
            call.name,
            lambda rel: build_read(
                rel, query, count=prefs.count, body=body, limit=limit, offset=offset
            ),
        )
        return page_response(call, out, (offset if offset is not None else query.offset) or 0)

    async def _insert(self, conn: asyncpg.Connection, call: Call) -> Response:
        payload, keys = rows_payload(call.payload, call.query)
        prefs = call.prefs
        body = _body_kind(prefs, call.request.method)
        if payload == "[]":
            out = Outcome(None, 0, "[]")
            return mutation_response(call, out, 201, None)
        rel, out = await self._run(
            conn,
            call.name,
            lambda rel: build_insert(
                rel,
                call.query,
                payload=payload,
                keys=keys,
                resolution=prefs.resolution,
                missing_default=prefs.missing_default,
                body=body,
            ),
        )
        check_single(call, out)
        return mutation_response(call, out, 201, location(rel, out) if body == "keys" else None)

    async def _modify(self, conn: asyncpg.Connection, call: Call) -> Response:
        body = _body_kind(call.prefs, call.request.method)
        if call.request.method == "DELETE":
            _, out = await self._run(
                conn, call.name, lambda rel: build_delete(rel, call.query, body=body)
            )
        else:
            payload, keys = object_payload(call.payload)
            if not keys:
                return mutation_response(call, Outcome(None, 0, "[]"), 200, None)
            _, out = await self._run(
                conn,
                call.name,
                lambda rel: build_update(rel, call.query, payload=payload, keys=keys, body=body),
            )
        check_single(call, out)
        return mutation_response(call, out, 200, None)

    # --- rpc -----------------------------------------------------------------------------------

    async def _rpc(self, conn: asyncpg.Connection, call: Call) -> Response:
        schema, name = self.catalog.schema, call.name
        candidates = await self.catalog.functions(conn, name)
        if not candidates:
            candidates = await self.catalog.functions(conn, name, refresh=True)
        params = call.request.query_params.multi_items()
        if call.request.method == "POST":
            query = parse_query(params)
            raw = raw_body_function(candidates, query)
            out = await call_raw(conn, raw, call.payload) if raw is not None else None
            if out is not None:
                return json_response(200, out.body or "null", {}, call.request.method)
            args_json, given = rpc_body(call.payload)
        else:  # GET/HEAD calls run read-only, as in PostgREST: they must not write
            await conn.execute("SET LOCAL transaction_read_only = on")
            query = parse_query(params, skip=argument_names(candidates))
            given = tuple(query.extra)
            args_json = orjson.dumps(query.extra).decode()
        fn = choose_overload(schema, name, candidates, given)
        body: Body = "none" if call.request.method == "HEAD" else "rows"
        statement = build_call(
            fn,
            query,
            given=given,
            args_json=args_json,
            count=call.prefs.count,
            body=body,
            limit=hdr.capped_limit(query.limit, self.ctx.config.max_rows),  # (on row sets)
        )
        out = await execute(conn, statement)
        if fn.kind == "void":
            return Response(status_code=204)
        if fn.returns_set:
            return page_response(call, out, query.offset or 0)
        if fn.kind == "composite":  # one row, shown as an object
            text = out.body[1:-1] if out.body and out.rows == 1 else "null"
            out = Outcome(None, 1, text)
        return json_response(200, out.body or "null", {}, call.request.method)


# --- helpers (pure unless they take a connection) ------------------------------------------------


async def execute(conn: asyncpg.Connection, statement: Statement) -> Outcome:
    row = await conn.fetchrow(statement.sql, *statement.params)
    return Outcome(row[0], int(row[1]), row[2])


async def call_raw(conn: asyncpg.Connection, fn: Function, payload: bytes) -> Outcome | None:
    """``fn`` called on the body as it is (rpc.build_raw_call: no parsing here, most of what a
    large ``sync_push`` cost us); None when the body is not a JSON object of exactly ``fn``'s
    arguments (nothing ran: the ordinary path answers it)."""
    if not payload[:64].lstrip().startswith(b"{"):
        return None
    try:
        statement = build_raw_call(fn, payload.decode())
    except UnicodeDecodeError:
        return None
    try:
        row = await conn.fetchrow(statement.sql, *statement.params)
    except asyncpg.DataError:  # class 22: malformed JSON fails when the body is bound
        decode_json(payload)  # raises PostgREST's body error when the JSON is malformed
        raise
    return None if row is None else Outcome(row[0], int(row[1]), row[2])


def _body_kind(prefs: hdr.Preferences, method: str) -> Body:
    if prefs.returning == "representation":
        return "rows"
    if prefs.returning == "headers-only" and method == "POST":
        return "keys"
    return "none"


def _from_postgres(exc: asyncpg.PostgresError, *, is_anon: bool) -> RestError:
    error = error_from_sqlstate(
        exc.sqlstate or "XX000",
        str(getattr(exc, "message", None) or exc),
        getattr(exc, "detail", None),
        getattr(exc, "hint", None),
        is_anon=is_anon,
    )
    if error.status >= 500:
        logger.warning("rest.db_error %s %s", error.code, error.message)
    return error


def decode_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise body_error(details=str(exc)) from exc


def rows_payload(payload: bytes, query: Query) -> tuple[str, tuple[str, ...]]:
    """A POST body as a JSON array text plus its keys (all objects must share them without
    ``columns``)."""
    data = decode_json(payload)
    rows = [data] if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise body_error()
    keys: tuple[str, ...] = tuple(rows[0]) if rows else ()
    if query.columns is None and any(set(r) != set(keys) for r in rows):
        raise body_error("All object keys must match")
    text = payload.decode()
    return ("[" + text + "]" if isinstance(data, dict) else text), keys


def object_payload(payload: bytes) -> tuple[str, tuple[str, ...]]:
    data = decode_json(payload)
    if not isinstance(data, dict):
        raise body_error()
    return payload.decode(), tuple(data)


def rpc_body(payload: bytes) -> tuple[str, tuple[str, ...]]:
    if not payload.strip():
        return "{}", ()
    data = decode_json(payload)
    if not isinstance(data, dict):
        raise body_error("Function arguments must be a JSON object")
    return payload.decode(), tuple(data)


def check_single(call: Call, out: Outcome) -> None:
    """The single-object media type needs exactly one row; raising rolls the transaction back."""
    if call.as_object and out.rows != 1:
        raise single_object_error(out.rows)


def location(rel: Relation, out: Outcome) -> str | None:
    if not out.body or out.rows < 1:
        return None
    first = orjson.loads(out.body)[0]
    filters = "&".join(f"{quote(k)}=eq.{quote(str(v))}" for k, v in first.items())
    return f"/{quote(rel.name)}?{filters}"


def page_response(call: Call, out: Outcome, offset: int) -> Response:
    status = hdr.range_status(offset, out.rows, out.total)
    if status == 416 and out.total is not None:
        raise hdr.range_error(offset, out.total)
    check_single(call, out)
    headers = {"Content-Range": hdr.content_range(offset, out.rows, out.total)}
    if call.prefs.applied:
        headers["Preference-Applied"] = ",".join(call.prefs.applied)
    text = out.body or "[]"
    if call.as_object:
        text, status = text[1:-1], 200
    return json_response(status, text, headers, call.request.method)


def mutation_response(call: Call, out: Outcome, status: int, where: str | None) -> Response:
    total = out.rows if call.prefs.count else None
    if call.request.method == "POST":
        crange = hdr.content_range(0, 0, total)
    else:
        crange = hdr.content_range(0, out.rows, total)
    headers = {"Content-Range": crange}
    if call.prefs.applied:
        headers["Preference-Applied"] = ",".join(call.prefs.applied)
    if where:
        headers["Location"] = where
    if call.prefs.returning != "representation":
        return Response(status_code=201 if status == 201 else 204, headers=headers)
    text = out.body or "[]"
    if call.as_object:
        text = text[1:-1]
    return json_response(status, text, headers, call.request.method)


def json_response(status: int, text: str, headers: dict[str, str], method: str) -> Response:
    content = b"" if method == "HEAD" else text.encode()
    response = Response(content=content, status_code=status, headers=headers)
    response.headers["Content-Type"] = JSON_TYPE
    return response


def error_response(error: RestError) -> Response:
    headers = {"Content-Type": JSON_TYPE}
    if error.status == 401:
        headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{error.message}"'
            if error.code in ("PGRST301", "PGRST303")
            else "Bearer"
        )
    return Response(orjson.dumps(error.body()), status_code=error.status, headers=headers)
