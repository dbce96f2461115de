"""Topic globs: ``*`` is one segment, ``**`` any number (including none)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ui_bridge.topics import InvalidPattern, TopicFilter, match_pattern, parse_pattern


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("message.created", "message.created", True),
        ("message.created", "message.updated", False),
        ("message.*", "message.created", True),
        ("message.*", "message", False),
        ("message.*", "message.a.b", False),
        ("*.created", "task.created", True),
        ("*", "task", True),
        ("*", "task.created", False),
        ("**", "task.created", True),
        ("**", "a", True),
        ("sync.**", "sync.status", True),
        ("sync.**", "sync.a.b.c", True),
        ("sync.**", "sync", True),
        ("sync.**", "syncx.status", False),
        ("**.created", "a.b.created", True),
        ("**.created", "created", True),
        ("**.created", "a.created.x", False),
        ("a.**.z", "a.z", True),
        ("a.**.z", "a.b.c.z", True),
        ("a.**.z", "a.b.c.y", False),
        ("a.**.**.z", "a.q.z", True),
        ("*.*", "a.b", True),
        ("*.*", "a", False),
    ],
)
def test_match(pattern: str, topic: str, expected: bool) -> None:
    assert match_pattern(parse_pattern(pattern), topic.split(".")) is expected
    assert TopicFilter([pattern]).matches(topic) is expected


@pytest.mark.parametrize("pattern", ["", "mess*", "a..b", ".a", "a.", "a b", "a.*x", "***", "é"])
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(InvalidPattern):
        parse_pattern(pattern)


def test_filter_needs_patterns_and_bounds_them() -> None:
    with pytest.raises(InvalidPattern):
        TopicFilter([])
    with pytest.raises(InvalidPattern):
        TopicFilter([f"t{i}" for i in range(65)])
    with pytest.raises(InvalidPattern):
        TopicFilter(["a" * 300])


def test_filter_matches_any_pattern_and_memoises() -> None:
    topics = TopicFilter(["workspace.*", "task.updated", "workspace.*"])
    assert topics.patterns == ("workspace.*", "task.updated")
    assert topics.matches("task.updated") and topics.matches("workspace.deleted")
    assert not topics.matches("task.created")
    assert topics.matches("task.updated")  # from the cache, same answer


segment = st.from_regex(r"[a-z]{1,3}", fullmatch=True)
topic_segments = st.lists(segment, min_size=1, max_size=5)


@given(topic_segments)
def test_double_star_matches_everything(topic: list[str]) -> None:
    assert match_pattern(("**",), topic)


@given(topic_segments)
def test_a_topic_matches_itself_and_its_star_shape(topic: list[str]) -> None:
    assert match_pattern(tuple(topic), topic)
    assert match_pattern(tuple("*" for _ in topic), topic)
    assert not match_pattern(tuple("*" for _ in topic) + ("*",), topic)


@given(topic_segments, st.integers(min_value=0, max_value=5))
def test_prefix_double_star(topic: list[str], cut: int) -> None:
    cut = min(cut, len(topic))
    assert match_pattern((*topic[:cut], "**"), topic)
