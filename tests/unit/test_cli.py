"""The `syncd` command's parser: what its help promises."""

from __future__ import annotations

import pytest

from daemon.cli import build_parser


def test_help_says_service_is_not_available_yet(capsys: pytest.CaptureFixture[str]) -> None:
    """`syncd --help` listed `service` as if it installed a start-at-login service, which only
    prints "not available yet" and exits 2: the help says so before a user relies on it."""
    overview = " ".join(build_parser().format_help().split())
    assert "start-at-login service: not available yet" in overview
    with pytest.raises(SystemExit):
        build_parser().parse_args(["service", "--help"])
    assert "not available yet" in " ".join(capsys.readouterr().out.split())
