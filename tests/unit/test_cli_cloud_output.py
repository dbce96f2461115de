"""What ``syncd push``/``pull``/``link`` print (cli_cloud ``_outcome``, ``_error_text``): a failed
run prints only why, never its counts; a -32001 names what was not found."""

from __future__ import annotations

import pytest

from daemon.cli_cloud import EXIT_ERROR, EXIT_OK, _error_text, _outcome
from ui_bridge.jsonrpc import ErrorCode, RpcError

COUNTS = {"applied": 0, "superseded": 0, "rejected": 0, "outbox": 3, "pulled": 0, "changed": 0,
          "conflicts": 0}  # fmt: skip


@pytest.mark.parametrize("kind", ["push", "pull"])
def test_a_failed_run_prints_only_why(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _outcome(kind, {**COUNTS, "error": "connect"}) == EXIT_ERROR
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("syncd: sync failed: connect (it retries in the background)\n")
    assert "hint: the cloud cannot be reached" in err
    assert "pushed" not in err and "pulled" not in err


def test_a_limited_run_says_when_it_retries(capsys: pytest.CaptureFixture[str]) -> None:
    at = "2026-11-23T00:20:05.000Z"
    assert _outcome("push", {**COUNTS, "error": "http_429", "retry_at": at}) == EXIT_ERROR
    _, err = capsys.readouterr()
    assert err.startswith(
        f"syncd: sync failed: http_429 (it retries in the background, next at {at})\n"
    )
    assert "hint: the cloud limits how often this device may call it" in err


def test_a_run_prints_its_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert _outcome("push", {**COUNTS, "applied": 2, "error": None}) == EXIT_OK
    assert _outcome("pull", {**COUNTS, "pulled": 5, "changed": 4, "error": None}) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "pushed 2 rows: 2 applied, 0 superseded, 0 rejected; outbox 3",
        "pulled 5 rows: 4 changed, 0 conflicts",
    ]
    assert err == ""


def test_error_texts() -> None:
    missing = RpcError(ErrorCode.NOT_FOUND, data={"entity": "cloud_workspace", "id": "c1"})
    assert _error_text(missing) == "cloud workspace c1 not found in your organisation"
    link = RpcError(ErrorCode.NOT_FOUND, data={"entity": "link", "id": "w1"})
    assert _error_text(link) == "link w1 not found"
    refused = RpcError(ErrorCode.REJECTED_BY_POLICY, data={"reason": "no_organization"})
    assert _error_text(refused) == f"{refused.message} (no_organization)"
    bare = RpcError(ErrorCode.NOT_FOUND)  # no data: the message as it is
    assert _error_text(bare) == bare.message


def test_who_says_when_the_account_shown_was_loaded() -> None:
    from daemon.cli_cloud import _who

    state = {
        "user": {"id": "u1", "email": "ada@example.com"},
        "organization": {"id": "o1", "name": "Acme"},
        "role": "owner",
        "account_as_of": None,
    }
    assert _who(state) == "ada@example.com (Acme, owner)"
    stale = {**state, "account_as_of": "2026-11-23T00:20:05.000Z"}
    assert _who(stale) == "ada@example.com (Acme, owner) as of 2026-11-23T00:20:05.000Z"


def test_a_lost_connection_is_said_once() -> None:
    """The client's ConnectionLost says "connection to the daemon lost" itself: the CLI printed
    "syncd: connection to the daemon lost: connection to the daemon lost" (audit finding 9)."""
    from ui_bridge.cli_commands import lost_text
    from ui_bridge.client import ConnectionLost

    lost = ConnectionLost("connection to the daemon lost")
    assert lost_text(lost) == "syncd: connection to the daemon lost\n"
    closed = ConnectionLost("no close frame received or sent")
    assert (
        lost_text(closed)
        == "syncd: connection to the daemon lost: no close frame received or sent\n"
    )


def test_an_interrupted_clone_says_it_resumes() -> None:
    from daemon.cli_cloud import clone_interrupted_text

    text = clone_interrupted_text("/home/ada/ws")
    assert text.count("connection to the daemon lost") == 1
    assert text.splitlines() == [
        "syncd: connection to the daemon lost while cloning into /home/ada/ws",
        "the link is recorded: the clone resumes where it stopped when the daemon runs again "
        "(`syncd run`, or the login service)",
    ]
