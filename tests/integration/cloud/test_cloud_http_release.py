"""A response CloudHttp returned is freed with the last reference to it, not by the cyclic
garbage collector (which the daemon runs rarely: daemon/loop.py, tune_gc): httpx links a
response and its stream both ways, and a first sync's pages (megabytes each) piled up until a
collection came."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from daemon.sync.cloud.errors import CloudError
from daemon.sync.cloud.http import CloudHttp
from devcloud.server import RunningDevcloud


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_response_is_freed_without_the_cyclic_collector(
    devcloud: RunningDevcloud, no_cyclic_gc: None
) -> None:
    async with CloudHttp(devcloud.url, devcloud.anon_key) as http:
        response = await http.send("GET", "/auth/v1/settings", operation="auth.settings")
        assert response.status_code == 200 and response.json()["external"]  # still readable
        body = response.content
        assert body
        freed = weakref.ref(response)
        del response
        assert freed() is None

        # an error response too (its body rides on the CloudError)
        with pytest.raises(CloudError) as raised:
            await http.send("GET", "/rest/v1/no_such_table", operation="rest.select")
        assert raised.value.status == 404
        bound = [o for o in gc.get_objects() if type(o).__name__ == "BoundAsyncStream"]
        assert bound == []  # (every one would be in a cycle with its response)
