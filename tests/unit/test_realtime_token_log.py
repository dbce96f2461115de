"""Token failures of the Realtime client are logged once per outage, not once per attempt.

Offline, the token provider fails on every reconnect (every few seconds, for hours); the log
gets one WARNING when it starts failing (no traceback above DEBUG), DEBUG lines while the same
failure repeats, and one INFO line when a token comes again."""

from __future__ import annotations

import logging

import pytest

from daemon.realtime.connection import RealtimeConnection, TokenUnavailable

LOGGER = "daemon.realtime.connection"


class Provider:
    def __init__(self) -> None:
        self.failure: Exception | None = OSError("connection refused")

    async def __call__(self) -> str:
        if self.failure is not None:
            raise self.failure
        return "header.payload.signature"


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, bool]]:
    return [
        (r.levelno, r.getMessage(), bool(r.exc_info)) for r in caplog.records if r.name == LOGGER
    ]


async def refresh(rt: RealtimeConnection) -> None:
    try:
        await rt._refresh_token()
    except TokenUnavailable as exc:
        rt._token_failed("realtime.token.failed", exc)


async def test_a_repeated_failure_is_one_warning_then_debug_and_recovery_is_one_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    provider = Provider()
    rt = RealtimeConnection(
        "http://127.0.0.1:9", "anon", token_provider=provider, on_event=print, device_id="d1"
    )
    for _ in range(5):
        await refresh(rt)
    assert records(caplog) == [
        (
            logging.WARNING,
            f"realtime.token.failed conn_id={rt.conn_id} "
            "reason=the token provider failed (OSError)",
            False,  # no traceback above DEBUG
        )
    ]

    provider.failure = TimeoutError()  # another failure is news again
    await refresh(rt)
    assert [r[:1] for r in records(caplog)] == [(logging.WARNING,), (logging.WARNING,)]
    assert "(TimeoutError)" in records(caplog)[-1][1]

    provider.failure = None
    await refresh(rt)
    assert records(caplog)[-1] == (
        logging.INFO,
        f"realtime.token.recovered conn_id={rt.conn_id}",
        False,
    )
    provider.failure = OSError("connection refused")  # a new outage warns again
    await refresh(rt)
    assert records(caplog)[-1][0] == logging.WARNING
    assert len(records(caplog)) == 4


async def test_at_debug_the_repeats_and_the_traceback_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    rt = RealtimeConnection(
        "http://127.0.0.1:9", "anon", token_provider=Provider(), on_event=print, device_id="d1"
    )
    for _ in range(3):
        await refresh(rt)
    failures = [r for r in records(caplog) if "token.failed" in r[1]]
    assert [(level, tb) for level, _, tb in failures] == [
        (logging.WARNING, True),
        (logging.DEBUG, True),
        (logging.DEBUG, True),
    ]
    assert failures[1][1].endswith("(repeated)")
