"""Interop tests use the ``devcloud`` and ``devcloud_factory`` fixtures of tests/conftest.py."""

from tests.conftest import DevcloudFactory, devcloud, devcloud_factory

__all__ = ["DevcloudFactory", "devcloud", "devcloud_factory"]
