"""When the Realtime client refreshes its access token, and its socket URL
(daemon/realtime/tokens.py)."""

from __future__ import annotations

import base64
import json

import pytest

from daemon.realtime.tokens import (
    EXPIRED_RECHECK_S,
    MIN_RECHECK_S,
    UNKNOWN_RECHECK_S,
    expires_at,
    refresh_delay,
    refresh_delay_in,
    ws_url,
)
from devcloud.keys import DEFAULT_ANON_KEY, sign

NOW = 1_795_000_000.0


def jwt(exp: object) -> str:
    return sign({"role": "authenticated", "exp": exp}, "x" * 32)


def test_expiry_is_read_from_the_claims() -> None:
    assert expires_at(jwt(int(NOW) + 60)) == NOW + 60
    assert expires_at(DEFAULT_ANON_KEY) == 1983812996.0


@pytest.mark.parametrize(
    "token",
    [
        "sb_publishable_abc",
        "a.b",
        "a.!!!.c",
        "a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c",
        "a." + base64.urlsafe_b64encode(json.dumps({"exp": "soon"}).encode()).decode() + ".c",
        "a." + base64.urlsafe_b64encode(json.dumps({"exp": True}).encode()).decode() + ".c",
        "a." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".c",
    ],
)
def test_tokens_without_a_readable_expiry(token: str) -> None:
    assert expires_at(token) is None
    assert refresh_delay(token, NOW) == UNKNOWN_RECHECK_S


@pytest.mark.parametrize(
    ("lifetime", "delay"),
    [
        (3600, 3540),  # an hour: a minute before expiry
        (120, 90),  # a quarter of what is left
        (4, 3),
        (0.4, MIN_RECHECK_S),  # never spin
        (0, EXPIRED_RECHECK_S),
        (-30, EXPIRED_RECHECK_S),
    ],
)
def test_refresh_before_expiry(lifetime: float, delay: float) -> None:
    assert refresh_delay(jwt(NOW + lifetime), NOW) == pytest.approx(delay)
    assert refresh_delay_in(lifetime) == pytest.approx(delay)  # the life as its issuer knows it


def test_asking_again_with_the_same_token_converges_on_expiry_without_spinning() -> None:
    token, now, asks = jwt(NOW + 3600), NOW, 0
    while (exp := expires_at(token)) is not None and now < exp:
        now += refresh_delay(token, now)
        asks += 1
    assert asks < 30


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://127.0.0.1:54321", "ws://127.0.0.1:54321/realtime/v1/websocket"),
        ("https://abc.supabase.co/", "wss://abc.supabase.co/realtime/v1/websocket"),
        ("ws://h/realtime/v1/websocket", "ws://h/realtime/v1/websocket"),
        ("https://h/prefix", "wss://h/prefix/realtime/v1/websocket"),
    ],
)
def test_ws_url(base: str, url: str) -> None:
    assert ws_url(base, "k&y") == url + "?apikey=k%26y&vsn=1.0.0"


@pytest.mark.parametrize("base", ["ftp://h", "127.0.0.1:54321", "http://"])
def test_ws_url_refuses_other_urls(base: str) -> None:
    with pytest.raises(ValueError):
        ws_url(base, "k")
