"""syncd: a local-first sync daemon."""

__version__ = "0.1.0"
