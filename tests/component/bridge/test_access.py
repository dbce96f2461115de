"""Pure checks of the opening handshake (access.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ui_bridge.access import check_handshake, extract_token, is_host_allowed, is_origin_allowed

PORT = 7749
TOKEN = "s3cret-token"


def check(**overrides: Any) -> int | None:
    args: dict[str, Any] = {
        "path": "/",
        "hosts": [f"127.0.0.1:{PORT}"],
        "origins": [],
        "authorizations": [f"Bearer {TOKEN}"],
        "port": PORT,
        "token": TOKEN,
        "allowed_origins": (),
    }
    args.update(overrides)
    rejection = check_handshake(**args)
    return None if rejection is None else rejection.status


def test_accepts_a_good_request() -> None:
    assert check() is None
    assert check(authorizations=[], path=f"/?token={TOKEN}") is None
    assert check(authorizations=[f"bearer   {TOKEN} "]) is None


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"authorizations": []}, 401),
        ({"authorizations": ["Bearer x"]}, 401),
        ({"authorizations": [f"Bearer {TOKEN}", f"Bearer {TOKEN}"]}, 401),
        ({"authorizations": [], "path": "/?token="}, 401),
        ({"hosts": []}, 403),
        ({"hosts": ["evil.example"]}, 403),
        ({"hosts": [f"127.0.0.1:{PORT}", "evil.example"]}, 403),
        ({"origins": ["https://evil.example"]}, 403),
        ({"origins": [f"http://localhost:{PORT}", "https://evil.example"]}, 403),
        ({"path": "/admin"}, 404),
    ],
)
def test_refusals(overrides: dict[str, Any], status: int) -> None:
    assert check(**overrides) == status


def test_host_and_origin_rules() -> None:
    assert is_host_allowed(f"localhost:{PORT}", PORT)
    assert not is_host_allowed("localhost", PORT)
    assert not is_host_allowed(f"127.0.0.1.evil.example:{PORT}", PORT)
    assert is_origin_allowed("vscode-webview://abc", PORT)
    assert not is_origin_allowed("vscode-webview://", PORT)
    assert not is_origin_allowed(f"https://127.0.0.1:{PORT}", PORT)
    assert is_origin_allowed("https://ide.example", PORT, ["https://ide.example"])
    assert not is_origin_allowed("https://ide.example.evil", PORT, ["https://ide.example"])


def test_token_sources() -> None:
    assert extract_token("/", f"Bearer {TOKEN}") == TOKEN
    assert extract_token(f"/?a=1&token={TOKEN}", None) == TOKEN
    assert extract_token("/", "Basic abc") is None
    assert extract_token("/", None) is None
