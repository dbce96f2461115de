"""Yjs 13.6 under node as a document editor of the local API (doc.open, doc.update): what it
writes, a fresh Yjs editor reads back whole. Needs node ≥ 20.10 and ``npm ci`` in
tests/interop/js."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.component.bridge.conftest import bridge, make_bridge, store  # noqa: F401
from tests.helpers import MS
from ui_bridge.server import BridgeServer

JS_DIR = Path(__file__).parent / "js"


async def run_editor(server: BridgeServer, scenario: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is required for the Yjs interop test"
    assert (JS_DIR / "node_modules" / "yjs").is_dir(), "run `npm ci` in tests/interop/js first"
    process = await asyncio.create_subprocess_exec(
        node, "--experimental-websocket", "--no-warnings", "yjs_client.mjs", scenario,
        cwd=JS_DIR, env={"SYNCD_URL": f"{server.url}?token={server.token}", "PATH": ""},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(20_000 * MS):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_a_yjs_editor_reads_back_what_it_wrote(bridge: BridgeServer) -> None:  # noqa: F811
    result = await run_editor(bridge, "rich")
    assert result["error"] is None
    assert result["fresh"] == result["content"]
    assert "🎉" in result["text"] and "中文" in result["text"]


@pytest.mark.xfail(
    strict=True,
    reason="yrs (pycrdt 0.14) splits a surrogate pair unlike Yjs (y-crdt/y-crdt#399): the"
    " daemon's state then differs from the editors' and Yjs cannot decode it",
)
async def test_edits_inside_a_surrogate_pair_read_back_as_yjs_has_them(
    bridge: BridgeServer,  # noqa: F811
) -> None:
    result = await run_editor(bridge, "split")
    assert result["error"] is None
    assert result["fresh"] == result["content"]
