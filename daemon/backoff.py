"""Exponential backoff with full jitter: a pure policy shared by sync and realtime.

It sits underneath both layers (realtime must not import sync), so it imports nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (attempt 0 is the first retry)."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("Backoff needs 0 < base_s <= cap_s")

    def delay(self, attempt: int, rand: float, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``attempt``; ``rand`` is uniform in [0, 1)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, not {attempt}")
        if not 0.0 <= rand < 1.0:
            raise ValueError(f"rand must be in [0, 1), not {rand}")
        # 2**attempt as a float overflows past ~1000; the cap is reached long before 64.
        ceiling = self.cap_s if attempt >= 64 else min(self.cap_s, self.base_s * 2**attempt)
        jittered = rand * ceiling
        return jittered if retry_after is None else max(jittered, retry_after)
