"""What a method handler may use: the store, and the calling session's event operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from daemon.store import Store
    from ui_bridge.topics import TopicFilter

__all__ = ["CallContext"]


class CallContext(Protocol):
    """Handed to every handler; implemented by the connection's session."""

    @property
    def store(self) -> Store:
        """The local store (all data methods go through it)."""
        ...

    async def subscribe(self, topics: TopicFilter, since: int | None) -> dict[str, Any]:
        """Start a subscription; returns ``{subscription, seq}``; events follow the reply."""
        ...

    def unsubscribe(self, subscription: str) -> bool:
        """Stop a subscription of this session; ``False`` if it does not exist."""
        ...

    def publish_to_others(self, topic: str, data: dict[str, Any]) -> int:
        """Deliver an ephemeral event to the other sessions' live subscriptions (never this
        one's, never stored); how many got it."""
        ...

    def daemon_status(self) -> dict[str, Any]:
        """The daemon's state for ``daemon.status``."""
        ...

    def describe(self) -> dict[str, Any]:
        """The OpenRPC document for ``rpc.discover``."""
        ...
