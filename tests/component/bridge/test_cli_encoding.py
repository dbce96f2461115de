"""`syncd call` and `syncd status --json`: UTF-8 JSON whatever the locale, and PARAMS_JSON."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

from tests.helpers import MS
from ui_bridge.server import BridgeServer

ROOT = Path(__file__).resolve().parents[3]


async def syncd(data_dir: Path, *args: str, encoding: str) -> tuple[int, bytes, bytes]:
    env = {**os.environ, "PYTHONIOENCODING": encoding, "SYNCD_DATA_DIR": str(data_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60_000 * MS)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_a_call_answered_with_non_ascii_text_prints_it_on_an_ascii_terminal(
    bridge: BridgeServer, tmp_path: Path
) -> None:
    name = "Åsa's notes ✓ 😀"
    params = orjson.dumps({"name": name}).decode()
    code, out, err = await syncd(tmp_path, "call", "workspace.create", params, encoding="ascii")
    assert code == 0, err.decode(errors="replace")  # was: UnicodeEncodeError after the write
    assert orjson.loads(out)["name"] == name
    code, out, err = await syncd(tmp_path, "call", "nope.é", encoding="latin-1")
    assert code == 1 and orjson.loads(err)["data"] == {"method": "nope.é"}


async def test_params_that_are_neither_object_nor_array_are_bad_usage(
    bridge: BridgeServer, tmp_path: Path
) -> None:
    for params in ("5", '"x"', "true"):
        code, out, err = await syncd(tmp_path, "call", "daemon.ping", params, encoding="utf-8")
        assert (code, out) == (2, b""), err
        assert orjson.loads(err)["data"]["reason"] == "PARAMS_JSON must be a JSON object or array"
    for params in ("null", "[]", "{}"):  # null: no params, as when left out
        code, out, err = await syncd(tmp_path, "call", "daemon.ping", params, encoding="utf-8")
        assert code == 0 and orjson.loads(out) == {"pong": True}, err
    # JSON nested too deeply to send (orjson writes at most 254 levels): bad usage, said so,
    # where it was a traceback (TypeError: Recursion limit reached) and exit 1
    deep = "[" * 300 + "]" * 300
    code, out, err = await syncd(tmp_path, "call", "daemon.ping", deep, encoding="utf-8")
    assert (code, out) == (2, b""), err
    assert "nested too deeply" in orjson.loads(err)["data"]["reason"]
