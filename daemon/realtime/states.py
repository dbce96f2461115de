"""Channel states of the Phoenix client and the transitions between them, as data (pure).

``TRANSITIONS`` maps (state, input) to the next state; a cell that is not listed leaves the
channel as it is (e.g. the late reply of a join that already timed out). ``PhoenixClient`` moves
every channel through this table only. tests/unit/test_phoenix.py drives each state through
each frame, timeout and call it can meet while connected (offline joins and leaves have their
own tests). The module docstring of ``phoenix`` draws the diagram.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

__all__ = ["TRANSITIONS", "ChannelState", "Input", "rejoin_delay"]

REJOIN_DELAYS_S: Final = (1.0, 2.0, 5.0, 10.0)
RATE_LIMITED_REJOIN_S: Final = 30.0
_RATE_LIMIT_CODES: Final = (
    "ChannelRateLimitReached",
    "ConnectionRateLimitReached",
    "ClientJoinRateLimitReached",
    "DatabaseConnectionRateLimitReached",
)
#: Realtime's ``system`` errors (then ``phx_close``) when the project is over its message
#: quotas (realtime_channel.ex ``shutdown_response``; free plan: 100 messages a second,
#: averaged over a minute, every delivery counted). Every channel that gets a message while
#: the average stays above is shut again: rejoining after 1 s only repeats the join and the
#: catch-up pull that follows it, about once a second per workspace, for up to a minute.
_RATE_LIMIT_MESSAGES: Final = (
    "Too many messages per second",
    "Too many presence messages per second",
)


class ChannelState(StrEnum):
    CLOSED = "closed"  # not (or no longer) known to the client
    JOINING = "joining"  # phx_join sent, no reply yet
    JOINED = "joined"
    WAITING = "waiting"  # not joined; joins when the socket opens or the rejoin delay passes
    LEAVING = "leaving"  # phx_leave sent, no reply yet


class Input(StrEnum):
    JOIN = "join"
    JOIN_OK = "join ok"
    JOIN_ERROR = "join error"
    JOIN_TIMEOUT = "join timeout"
    SERVER_CLOSE = "phx_close"
    SERVER_ERROR = "phx_error"
    UNMATCHED = "unmatched topic"
    REJOIN_DUE = "rejoin due"
    SOCKET_OPENED = "socket opened"
    SOCKET_LOST = "socket lost"
    LEAVE = "leave"
    LEAVE_DONE = "leave done"  # reply to phx_leave, or its phx_close, or its timeout
    JOIN_OFFLINE = "join while offline"
    FORGET = "leave while offline"  # or before any phx_join was sent


_S, _I = ChannelState, Input
#: (state, input) → next state. Any cell not listed leaves the channel as it is.
TRANSITIONS: Final[Mapping[tuple[ChannelState, Input], ChannelState]] = {
    **{(state, _I.JOIN): _S.JOINING for state in _S},
    **{(state, _I.JOIN_OFFLINE): _S.WAITING for state in _S},
    **{(state, _I.FORGET): _S.CLOSED for state in _S},
    (_S.JOINING, _I.JOIN_OK): _S.JOINED,
    (_S.JOINING, _I.JOIN_ERROR): _S.WAITING,
    (_S.JOINING, _I.JOIN_TIMEOUT): _S.WAITING,
    (_S.JOINING, _I.SERVER_CLOSE): _S.WAITING,
    (_S.JOINED, _I.SERVER_CLOSE): _S.WAITING,
    (_S.LEAVING, _I.SERVER_CLOSE): _S.CLOSED,
    (_S.JOINING, _I.SERVER_ERROR): _S.WAITING,
    (_S.JOINED, _I.SERVER_ERROR): _S.WAITING,
    (_S.LEAVING, _I.SERVER_ERROR): _S.CLOSED,
    (_S.JOINED, _I.UNMATCHED): _S.WAITING,
    (_S.WAITING, _I.REJOIN_DUE): _S.JOINING,
    (_S.WAITING, _I.SOCKET_OPENED): _S.JOINING,
    (_S.JOINING, _I.SOCKET_LOST): _S.WAITING,
    (_S.JOINED, _I.SOCKET_LOST): _S.WAITING,
    (_S.LEAVING, _I.SOCKET_LOST): _S.CLOSED,
    (_S.JOINING, _I.LEAVE): _S.LEAVING,
    (_S.JOINED, _I.LEAVE): _S.LEAVING,
    (_S.WAITING, _I.LEAVE): _S.LEAVING,
    (_S.LEAVING, _I.LEAVE_DONE): _S.CLOSED,
}


def rejoin_delay(failures: int, reason: str) -> float:
    """Seconds before rejoining after ``failures`` failed joins in a row (0 for the first);
    Realtime's rate-limit refusals wait 30 s, as the official clients do, and so does a
    channel Realtime closed for the project's message rate."""
    if reason.startswith(_RATE_LIMIT_CODES) or reason in _RATE_LIMIT_MESSAGES:
        return RATE_LIMITED_REJOIN_S
    return REJOIN_DELAYS_S[min(failures, len(REJOIN_DELAYS_S) - 1)]
