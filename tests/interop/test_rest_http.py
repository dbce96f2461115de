"""/rest/v1 on the wire (httpx): statuses, Content-Range, Prefer, Accept, profiles, JWT errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from devcloud.keys import sign
from devcloud.server import RunningDevcloud
from tests.conftest import DevcloudFactory

SCHEMA = """
CREATE TABLE public.wire_rows (id int PRIMARY KEY, label text NOT NULL, grp text);
GRANT ALL ON public.wire_rows TO anon, authenticated, service_role;
INSERT INTO public.wire_rows SELECT i, 'row ' || i, CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END
FROM generate_series(1, 12) i;
"""


@pytest.fixture
async def http(devcloud: RunningDevcloud) -> AsyncIterator[httpx.AsyncClient]:
    async with devcloud.ctx.pool.acquire() as conn:
        await conn.execute(SCHEMA)
    key = devcloud.service_role_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Accept": "*/*"}
    async with httpx.AsyncClient(base_url=f"{devcloud.url}/rest/v1", headers=headers) as client:
        yield client


async def count_rows(http: httpx.AsyncClient) -> int:
    response = await http.get("/wire_rows", params={"select": "id"})
    return len(response.json())


async def test_get_pages_with_content_range_and_exact_count(http: httpx.AsyncClient) -> None:
    plain = await http.get("/wire_rows", params={"select": "id", "order": "id", "limit": "3"})
    assert plain.status_code == 200 and plain.headers["content-range"] == "0-2/*"
    assert plain.headers["content-type"] == "application/json; charset=utf-8"
    assert plain.json() == [{"id": 1}, {"id": 2}, {"id": 3}]
    counted = await http.get(
        "/wire_rows",
        params={"select": "id", "grp": "eq.even", "order": "id", "limit": "2", "offset": "2"},
        headers={"Prefer": "count=exact"},
    )
    assert counted.status_code == 206 and counted.headers["content-range"] == "2-3/6"
    assert counted.headers["preference-applied"] == "count=exact"
    assert counted.json() == [{"id": 6}, {"id": 8}]
    whole = await http.get(
        "/wire_rows", params={"grp": "eq.odd"}, headers={"Prefer": "count=exact"}
    )
    assert whole.status_code == 200 and whole.headers["content-range"] == "0-5/6"
    empty = await http.get("/wire_rows", params={"id": "gt.100"}, headers={"Prefer": "count=exact"})
    assert (
        empty.status_code == 200 and empty.headers["content-range"] == "*/0" and empty.json() == []
    )


async def test_max_rows_caps_every_read_as_postgrest_does(
    devcloud_factory: DevcloudFactory,
) -> None:
    """db-max-rows (Supabase's 1000): a read answers at most that many rows whatever its
    limit or Range asked, and only Content-Range tells (with a count, 206 and the total);
    a function's rows are capped too, a write's returned rows are not."""
    dc = await devcloud_factory(max_rows=5)
    async with dc.ctx.pool.acquire() as conn:
        await conn.execute(
            SCHEMA + "CREATE FUNCTION public.wire_ids() RETURNS SETOF int LANGUAGE sql STABLE"
            " AS 'SELECT id FROM public.wire_rows ORDER BY id';"
        )
    key = dc.service_role_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"{dc.url}/rest/v1", headers=headers) as http:
        by_id = {"select": "id", "order": "id"}
        plain = await http.get("/wire_rows", params=by_id)
        assert (plain.status_code, plain.headers["content-range"]) == (200, "0-4/*")
        assert [r["id"] for r in plain.json()] == [1, 2, 3, 4, 5]
        small = await http.get("/wire_rows", params={**by_id, "limit": "3"})
        assert small.headers["content-range"] == "0-2/*" and len(small.json()) == 3
        counted = await http.get(
            "/wire_rows", params={**by_id, "limit": "100"}, headers={"Prefer": "count=exact"}
        )
        assert (counted.status_code, counted.headers["content-range"]) == (206, "0-4/12")
        moved = await http.get("/wire_rows", params={**by_id, "offset": "3", "limit": "50"})
        assert moved.headers["content-range"] == "3-7/*"
        assert [r["id"] for r in moved.json()] == [4, 5, 6, 7, 8]
        ranged = await http.get("/wire_rows", params=by_id, headers={"Range": "9-20"})
        assert ranged.headers["content-range"] == "9-11/*" and len(ranged.json()) == 3
        called = await http.get("/rpc/wire_ids")
        assert called.json() == [1, 2, 3, 4, 5] and called.headers["content-range"] == "0-4/*"
        patched = await http.patch(
            "/wire_rows",
            params={"id": "gt.0"},
            json={"label": "all"},
            headers={"Prefer": "return=representation"},
        )
        assert patched.status_code == 200 and len(patched.json()) == 12


async def test_offset_past_the_end_is_416(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/wire_rows", params={"offset": "20"}, headers={"Prefer": "count=exact"}
    )
    assert response.status_code == 416
    assert response.json()["code"] == "PGRST103"
    assert (
        response.json()["details"] == "An offset of 20 was requested, but there are only 12 rows."
    )


async def test_range_header_and_head(http: httpx.AsyncClient) -> None:
    ranged = await http.get(
        "/wire_rows", params={"select": "id", "order": "id"}, headers={"Range": "4-5"}
    )
    assert ranged.json() == [{"id": 5}, {"id": 6}] and ranged.headers["content-range"] == "4-5/*"
    head = await http.head("/wire_rows", headers={"Prefer": "count=exact"})
    assert head.status_code == 200 and head.headers["content-range"] == "0-11/12"
    assert head.content == b""


async def test_single_object_accept(http: httpx.AsyncClient) -> None:
    obj = {"Accept": "application/vnd.pgrst.object+json"}
    one = await http.get("/wire_rows", params={"id": "eq.3", "select": "label"}, headers=obj)
    assert one.status_code == 200 and one.json() == {"label": "row 3"}
    many = await http.get("/wire_rows", params={"grp": "eq.odd"}, headers=obj)
    assert many.status_code == 406
    assert many.json() == {
        "code": "PGRST116",
        "details": "The result contains 6 rows",
        "hint": None,
        "message": "Cannot coerce the result to a single JSON object",
    }


async def test_single_object_mutation_touching_many_rows_rolls_back(
    http: httpx.AsyncClient,
) -> None:
    response = await http.patch(
        "/wire_rows",
        params={"grp": "eq.even"},
        json={"label": "changed"},
        headers={"Accept": "application/vnd.pgrst.object+json", "Prefer": "return=representation"},
    )
    assert response.status_code == 406 and response.json()["code"] == "PGRST116"
    changed = await http.get("/wire_rows", params={"label": "eq.changed"})
    assert changed.json() == []


async def test_return_preferences(http: httpx.AsyncClient) -> None:
    minimal = await http.post(
        "/wire_rows", json={"id": 50, "label": "x"}, headers={"Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201 and minimal.content == b""
    default = await http.post("/wire_rows", json={"id": 51, "label": "y"})
    assert default.status_code == 201 and default.content == b""
    located = await http.post(
        "/wire_rows", json={"id": 52, "label": "z"}, headers={"Prefer": "return=headers-only"}
    )
    assert located.status_code == 201 and located.headers["location"] == "/wire_rows?id=eq.52"
    patched = await http.patch("/wire_rows", params={"id": "eq.50"}, json={"grp": "g"})
    assert patched.status_code == 204 and patched.headers["content-range"] == "0-0/*"
    deleted = await http.request(
        "DELETE",
        "/wire_rows",
        params={"id": "in.(50,51,52)"},
        json={},
        headers={"Prefer": "return=representation,count=exact"},
    )
    assert deleted.status_code == 200 and sorted(r["id"] for r in deleted.json()) == [50, 51, 52]
    assert deleted.headers["content-range"] == "0-2/3"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/wire_rows", {"params": {"id": "gtx.1"}}, 400, "PGRST100"),
        ("GET", "/wire_rows", {"params": {"select": "id,owner(*)"}}, 400, "PGRST100"),
        ("GET", "/wire_rows", {"headers": {"Accept-Profile": "auth"}}, 406, "PGRST106"),
        ("GET", "/wire_rows", {"headers": {"Accept": "text/csv"}}, 406, "PGRST107"),
        (
            "POST",
            "/wire_rows",
            {"content": b"{not json", "headers": {"Content-Profile": "public"}},
            400,
            "PGRST102",
        ),
        ("POST", "/wire_rows", {"json": [{"id": 1}, {"label": "x"}]}, 400, "PGRST102"),
        ("POST", "/wire_rows", {"json": [1, 2]}, 400, "PGRST102"),
        (
            "POST",
            "/wire_rows",
            {"json": {"id": 1}, "headers": {"Content-Profile": "x"}},
            406,
            "PGRST106",
        ),
        ("PATCH", "/wire_rows", {"json": [{"id": 1}]}, 400, "PGRST102"),
        ("DELETE", "/wire_rows", {"params": {"limit": "1"}}, 400, "PGRST100"),
        ("GET", "/missing_table", {}, 404, "PGRST205"),
    ],
)
async def test_bad_requests_change_nothing(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str,
) -> None:
    response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert set(response.json()) == {"code", "details", "hint", "message"}
    assert await count_rows(http) == 12


async def test_jwt_errors(devcloud: RunningDevcloud) -> None:
    secret = devcloud.ctx.config.jwt_secret
    expired = sign({"role": "authenticated", "sub": "x", "exp": int(time.time()) - 10}, secret)
    forged = sign({"role": "service_role"}, "another-secret-of-at-least-32-characters!")
    async with httpx.AsyncClient(base_url=f"{devcloud.url}/rest/v1") as http:
        old = await http.get(
            "/wire_rows",
            headers={"apikey": devcloud.anon_key, "Authorization": f"Bearer {expired}"},
        )
        bad = await http.get(
            "/wire_rows", headers={"apikey": devcloud.anon_key, "Authorization": f"Bearer {forged}"}
        )
        none = await http.get("/wire_rows")
    assert old.status_code == 401 and old.json()["code"] == "PGRST303"
    assert old.json()["message"] == "JWT expired"
    assert old.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert bad.status_code == 401 and bad.json()["code"] == "PGRST301"
    assert none.status_code == 401
