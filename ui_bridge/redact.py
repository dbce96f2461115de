"""Keep credentials out of logs: websockets logs request lines and headers at DEBUG."""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["RedactCredentials", "redact"]

_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+)\S+"),
    re.compile(r"(?i)([?&]token=)[^&\s]+"),
    re.compile(r"(?i)(\"token\"\s*:\s*\")[^\"]*"),
)


def redact(text: str) -> str:
    """``text`` with bearer tokens and ``token=`` query values replaced by ``<redacted>``."""
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1<redacted>", text)
    return text


class RedactCredentials(logging.Filter):
    """A logger filter rewriting each record through ``redact``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
