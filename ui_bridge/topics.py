"""Topic patterns for subscriptions (pure).

Topics are dot-separated segments (``message.created``). In a pattern ``*`` matches exactly one
segment and ``**`` matches any number of segments, including none: ``message.*`` matches
``message.created``; ``sync.**`` matches ``sync.status`` and ``sync.a.b``; ``**`` matches every
topic. Other segments match literally; partial wildcards (``mess*``) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["InvalidPattern", "TopicFilter", "match_pattern", "parse_pattern"]

_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")
MAX_PATTERN_LENGTH: Final = 256
MAX_PATTERNS: Final = 64


class InvalidPattern(ValueError):
    """A pattern that is not a valid topic glob; ``reason`` says why."""

    def __init__(self, pattern: str, reason: str) -> None:
        self.pattern = pattern
        self.reason = reason
        super().__init__(f"invalid topic pattern {pattern!r}: {reason}")


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """Split and validate a pattern; raises ``InvalidPattern``."""
    if not pattern:
        raise InvalidPattern(pattern, "empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(pattern[:32] + "…", "too long")
    segments = tuple(pattern.split("."))
    for segment in segments:
        if segment in ("*", "**"):
            continue
        if not _SEGMENT.fullmatch(segment):
            raise InvalidPattern(pattern, f"bad segment {segment!r}")
    return segments


def match_pattern(segments: Sequence[str], topic: Sequence[str]) -> bool:
    """Whether a parsed pattern matches a split topic."""
    return _match(tuple(segments), 0, tuple(topic), 0)


def _match(pat: tuple[str, ...], i: int, topic: tuple[str, ...], j: int) -> bool:
    while i < len(pat):
        segment = pat[i]
        if segment == "**":
            # Collapse runs of "**"; then try every possible number of consumed segments.
            while i + 1 < len(pat) and pat[i + 1] == "**":
                i += 1
            if i + 1 == len(pat):
                return True
            return any(_match(pat, i + 1, topic, k) for k in range(j, len(topic) + 1))
        if j >= len(topic):
            return False
        if segment != "*" and segment != topic[j]:
            return False
        i += 1
        j += 1
    return j == len(topic)


class TopicFilter:
    """A set of patterns; ``matches`` is memoised per topic (topics are few, events many)."""

    __slots__ = ("_cache", "_patterns", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(dict.fromkeys(patterns))
        if not self.patterns:
            raise InvalidPattern("", "at least one topic pattern is required")
        if len(self.patterns) > MAX_PATTERNS:
            raise InvalidPattern("", f"at most {MAX_PATTERNS} patterns")
        self._patterns = [parse_pattern(p) for p in self.patterns]
        self._cache: dict[str, bool] = {}

    def matches(self, topic: str) -> bool:
        """Whether any pattern matches ``topic``."""
        hit = self._cache.get(topic)
        if hit is None:
            split = tuple(topic.split("."))
            hit = any(_match(p, 0, split, 0) for p in self._patterns)
            if len(self._cache) < 1024:
                self._cache[topic] = hit
        return hit
