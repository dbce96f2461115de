"""The `syncd` command's parser: what its help promises."""

from __future__ import annotations

import pytest

from daemon.cli import build_parser


def test_help_describes_the_service_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`syncd service` installs the start-at-login service: the help names its actions, what it
    runs and its exit codes (it said "not available yet" before it was)."""
    overview = " ".join(build_parser().format_help().split())
    assert "start the daemon at login" in overview and "not available" not in overview
    with pytest.raises(SystemExit):
        build_parser().parse_args(["service", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("install write the data dir's service", "`-m daemon run --data-dir DIR`",
                  "status 0 installed and the data dir's daemon runs; 3 installed, no daemon runs;"
                  " 4 not installed"):  # fmt: skip
        assert words in text
    args = build_parser().parse_args(["service", "status", "--data-dir", "/d", "--json"])
    assert (args.action, str(args.data_dir), args.json) == ("status", "/d", True)
