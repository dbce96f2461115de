"""The devcloud command line's parsing (no server is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcloud.cli import build_parser, default_data_dir


def test_server_defaults():
    args = build_parser().parse_args([])
    assert (args.command, args.port, args.jwt_expiry, args.ai_upstream) == (None, 54321, 3600, None)
    assert not hasattr(args, "data_dir") and not hasattr(args, "database_url")
    assert args.max_rows == 1000  # Supabase's db-max-rows


def test_max_rows_option():
    assert build_parser().parse_args(["--max-rows", "5"]).max_rows == 5


def test_user_create_takes_storage_options_before_or_after():
    before = build_parser().parse_args(
        ["--data-dir", "/d", "user", "create", "--email", "e@x.co", "--password", "p"]
    )
    after = build_parser().parse_args(
        ["user", "create", "--email", "e@x.co", "--password", "p", "--data-dir", "/d"]
    )
    for args in (before, after):
        assert (args.command, args.user_command, args.data_dir) == ("user", "create", Path("/d"))
        assert (args.email, args.password, args.org, args.role) == ("e@x.co", "p", None, "owner")


def test_user_needs_a_subcommand():
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["user"])
    assert caught.value.code == 2


def test_default_data_dir_honours_syncd_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNCD_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path / "devcloud"
    monkeypatch.delenv("SYNCD_DATA_DIR")
    assert default_data_dir().name == "devcloud" and default_data_dir().parent.name == "syncd"
