"""Settings: precedence, casting, clear errors naming the key, redacted secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.config import (
    BridgeSettings,
    Secret,
    Settings,
    StoreSettings,
    check_owned,
    default_data_dir,
    load_settings,
)
from daemon.errors import ConfigError
from ui_bridge.discovery import DiscoveryInfo, read_discovery, write_discovery


def write_toml(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.toml").write_text(text)


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, environ={})
    assert settings == Settings(data_dir=tmp_path)
    assert settings.store == StoreSettings("NORMAL", 5000, 100_000, integrity_check=True)
    assert settings.bridge == BridgeSettings("127.0.0.1", 7749, 1 << 20, (), 16384, 300)
    assert not settings.cloud.configured
    assert settings.log_level == "INFO"


def test_data_dir_flag_beats_env_beats_platform_default(tmp_path: Path) -> None:
    env = {"SYNCD_DATA_DIR": str(tmp_path / "env")}
    assert load_settings(data_dir=tmp_path / "flag", environ=env).data_dir == tmp_path / "flag"
    assert load_settings(environ=env).data_dir == tmp_path / "env"
    assert load_settings(environ={}).data_dir == default_data_dir()


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    write_toml(tmp_path, "[bridge]\nport = 1111\nmax_frame_bytes = 4096\n")
    assert load_settings(data_dir=tmp_path, environ={}).bridge.port == 1111
    env = {"SYNCD_PORT": "2222"}
    settings = load_settings(data_dir=tmp_path, environ=env)
    assert settings.bridge.port == 2222
    assert settings.bridge.max_frame_bytes == 4096  # file value kept for the other key
    assert load_settings(data_dir=tmp_path, port=0, environ=env).bridge.port == 0


def test_a_bad_value_stops_us_even_when_a_later_source_overrides_it(tmp_path: Path) -> None:
    """A typo in config.toml must not hide until the day the flag or variable that overrides
    it is gone (was: `[bridge] port = "x"` passed whenever --port was given)."""
    write_toml(tmp_path, '[bridge]\nport = "x"\n')
    for env, port in (({"SYNCD_PORT": "2222"}, None), ({}, 0)):
        with pytest.raises(ConfigError) as info:
            load_settings(data_dir=tmp_path, port=port, environ=env)
        assert info.value.key == "bridge.port"
    write_toml(tmp_path, "[bridge]\nport = 1111\n")
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, port=0, environ={"SYNCD_PORT": "x"})
    assert info.value.key == "SYNCD_PORT"


def test_every_key_from_the_environment(tmp_path: Path) -> None:
    env = {
        "SYNCD_LOG_LEVEL": "debug",
        "SYNCD_SYNCHRONOUS": "full",
        "SYNCD_BUSY_TIMEOUT_MS": "250",
        "SYNCD_CHANGELOG_RETAIN": "10_000",
        "SYNCD_CHANGELOG_RETAIN_BYTES": "1048576",
        "SYNCD_INTEGRITY_CHECK": "off",
        "SYNCD_MAX_FRAME_BYTES": "65536",
        "SYNCD_ALLOWED_ORIGINS": "http://localhost:3000, https://app.example",
        "SYNCD_SEND_QUEUE_SIZE": "16",
        "SYNCD_SEND_QUEUE_BYTES": "1048576",
        "SYNCD_SPIN_US": "0",
        "SYNCD_CLOUD_URL": "http://127.0.0.1:54321/",
        "SYNCD_CLOUD_ANON_KEY": "anon-key-value",
        "SYNCD_UNRELATED_TEST_SETTING": "ignored",
    }
    s = load_settings(data_dir=tmp_path, environ=env)
    assert s.log_level == "DEBUG"
    assert s.store == StoreSettings("FULL", 250, 10_000, 1 << 20, integrity_check=False)
    assert s.bridge.max_frame_bytes == 65536
    assert s.bridge.allowed_origins == ("http://localhost:3000", "https://app.example")
    assert s.bridge.send_queue_size == 16
    assert s.bridge.send_queue_bytes == 1 << 20
    assert s.bridge.spin_us == 0
    assert s.cloud.url == "http://127.0.0.1:54321"
    assert s.cloud.anon_key == Secret("anon-key-value")
    assert s.cloud.configured


def test_cloud_needs_both_url_and_key(tmp_path: Path) -> None:
    only_url = load_settings(data_dir=tmp_path, environ={"SYNCD_CLOUD_URL": "https://x.io"})
    assert not only_url.cloud.configured


def test_file_sections(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        'log_level = "WARNING"\n[store]\nsynchronous = "FULL"\nchangelog_retain = 5\n'
        "integrity_check = false\n"
        '[bridge]\nallowed_origins = ["vscode-webview://abc"]\n'
        '[cloud]\nurl = "https://p.supabase.co"\nanon_key = "k"\n',
    )
    s = load_settings(data_dir=tmp_path, environ={})
    assert (s.log_level, s.store.synchronous, s.store.changelog_retain) == ("WARNING", "FULL", 5)
    assert s.store.integrity_check is False
    assert s.bridge.allowed_origins == ("vscode-webview://abc",)
    assert s.cloud.configured


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SYNCD_PORT": "http"}, "SYNCD_PORT"),
        ({"SYNCD_PORT": "70000"}, "SYNCD_PORT"),
        ({"SYNCD_SYNCHRONOUS": "OFF"}, "SYNCD_SYNCHRONOUS"),
        ({"SYNCD_LOG_LEVEL": "LOUD"}, "SYNCD_LOG_LEVEL"),
        ({"SYNCD_CHANGELOG_RETAIN": "0"}, "SYNCD_CHANGELOG_RETAIN"),
        ({"SYNCD_CHANGELOG_RETAIN_BYTES": "0"}, "SYNCD_CHANGELOG_RETAIN_BYTES"),
        ({"SYNCD_CHANGELOG_RETAIN_BYTES": "64MiB"}, "SYNCD_CHANGELOG_RETAIN_BYTES"),
        ({"SYNCD_CLOUD_URL": "ftp://x"}, "SYNCD_CLOUD_URL"),
        ({"SYNCD_ALLOWED_ORIGINS": "localhost"}, "SYNCD_ALLOWED_ORIGINS"),
        ({"SYNCD_DATA_DIR": " "}, "SYNCD_DATA_DIR"),
        ({"SYNCD_SPIN_US": "-1"}, "SYNCD_SPIN_US"),
        ({"SYNCD_SPIN_US": "20000"}, "SYNCD_SPIN_US"),
        ({"SYNCD_INTEGRITY_CHECK": "sometimes"}, "SYNCD_INTEGRITY_CHECK"),
        ({"SYNCD_SEND_QUEUE_BYTES": "1000"}, "SYNCD_SEND_QUEUE_BYTES"),
    ],
)
def test_bad_environment_values_name_the_key(tmp_path: Path, env: dict[str, str], key: str) -> None:
    env = {"SYNCD_DATA_DIR": str(tmp_path), **env}
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert info.value.key == key
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[bridge]\nport = true\n", "bridge.port"),
        ("[bridge]\nprot = 1\n", "bridge.prot"),
        ("[store]\nbusy_timeout_ms = -1\n", "store.busy_timeout_ms"),
        ("colour = 1\n", "colour"),
        ("store = 1\n", "store"),
        ("[cloud]\nanon_key = 3\n", "cloud.anon_key"),
        ("[store]\nintegrity_check = 1\n", "store.integrity_check"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, environ={})
    assert info.value.key == key


def test_unparsable_file_names_the_file(tmp_path: Path) -> None:
    write_toml(tmp_path, "[bridge\n")
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, environ={})
    assert "config.toml" in info.value.key


def test_port_flag_out_of_range_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, port=-1, environ={})
    assert info.value.key == "--port"


def test_secret_never_shows_its_value(tmp_path: Path) -> None:
    env = {"SYNCD_CLOUD_URL": "https://x.io", "SYNCD_CLOUD_ANON_KEY": "very-secret-key"}
    settings = load_settings(data_dir=tmp_path, environ=env)
    for text in (repr(settings), str(settings), repr(settings.cloud), f"{settings.cloud.anon_key}"):
        assert "very-secret-key" not in text
    assert settings.cloud.anon_key is not None
    assert settings.cloud.anon_key.reveal() == "very-secret-key"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, environ={})
    with pytest.raises(AttributeError):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_allowed_origins_are_normalised_as_browsers_send_them(tmp_path: Path) -> None:
    env = {
        "SYNCD_ALLOWED_ORIGINS": " http://localhost:3000 , https://app.example/,"
        "HTTPS://App.Example:8443, https://x.example:443, vscode-webview://*, http://[::1]:80",
    }
    s = load_settings(data_dir=tmp_path, environ=env)
    assert s.bridge.allowed_origins == (
        "http://localhost:3000",
        "https://app.example",
        "https://app.example:8443",
        "https://x.example",  # the default port: browsers leave it out
        "vscode-webview://*",
        "http://[::1]",
    )
    write_toml(
        tmp_path,
        '[bridge]\nallowed_origins = ["https://Editor.Example/", "app://*", "http://[::1]:*",'
        ' "http://Localhost:*"]\n',
    )
    s = load_settings(data_dir=tmp_path, environ={})
    assert s.bridge.allowed_origins == (
        "https://editor.example",
        "app://*",
        "http://[::1]:*",  # any port of one host
        "http://localhost:*",
    )


@pytest.mark.parametrize(
    "entry",
    [
        "https://app.example/path",
        "https://app.example/path/",
        "https://app.example?x=1",
        "https://app.example#top",
        "https://user@app.example",
        "https://app.example:99999",
        "https://app.example:port",
        "https://",
        "app.example",
        "null",
        "://app.example",
        "1http://app.example",
        "https://a*b.example",
        "https://app.example/*",
        # wildcards that admit more than they say: another host, or every web page
        "http://*",
        "https://*",
        "https://app.example*",
        "http://localhost*",
        "http://localhost:3*",
        "vscode-webview://abc*",
        "http://:*",
    ],
)
def test_an_allowed_origin_that_is_not_an_origin_names_the_key(tmp_path: Path, entry: str) -> None:
    env = {"SYNCD_ALLOWED_ORIGINS": f"http://localhost:3000, {entry}"}
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, environ=env)
    assert info.value.key == "SYNCD_ALLOWED_ORIGINS"
    assert repr(entry) in str(info.value)
    write_toml(tmp_path, f"[bridge]\nallowed_origins = [{entry!r}]\n".replace("'", '"'))
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, environ={})
    assert info.value.key == "bridge.allowed_origins"


def test_a_data_dir_or_config_of_another_user_or_writable_by_all_is_refused(
    tmp_path: Path,
) -> None:
    """Another user who can write into the data dir could put a config.toml there that sends
    the cloud login to their server (or a daemon.json sending a client's token and calls to
    their port): the data dir and config.toml must be this user's, and not world-writable,
    as ssh asks of ~/.ssh."""
    me = os.geteuid()
    write_toml(tmp_path, '[cloud]\nurl = "http://127.0.0.1:9"\nanon_key = "k"\n')
    tmp_path.chmod(0o700)
    assert load_settings(data_dir=tmp_path).cloud.url == "http://127.0.0.1:9"  # ours: fine
    check_owned("data dir", tmp_path, uid=me)
    with pytest.raises(ConfigError) as foreign:
        check_owned("data dir", tmp_path, uid=me + 1)
    assert foreign.value.key == "data dir" and "another user" in foreign.value.message
    with pytest.raises(ConfigError) as foreign_config:
        check_owned("config.toml", tmp_path / "config.toml", uid=me + 1)
    assert "another user" in foreign_config.value.message
    check_owned("config.toml", tmp_path / "missing.toml", uid=me + 1)  # nothing there: fine
    tmp_path.chmod(0o777)
    try:
        with pytest.raises(ConfigError) as shared:
            load_settings(data_dir=tmp_path)
        assert shared.value.key == "data dir" and "writable by every user" in shared.value.message
        tmp_path.chmod(0o775)  # a group's: its user chose to share it
        (tmp_path / "config.toml").chmod(0o666)
        with pytest.raises(ConfigError) as config:
            load_settings(data_dir=tmp_path)
        assert config.value.key == "config.toml"
    finally:
        tmp_path.chmod(0o700)


def test_a_discovery_file_of_another_user_is_not_followed(tmp_path: Path) -> None:
    info = DiscoveryInfo(os.getpid(), 7749, "ws://127.0.0.1:7749/", "t" * 43, "1", "x")
    write_discovery(tmp_path, info)
    assert read_discovery(tmp_path) is not None
    assert read_discovery(tmp_path, uid=os.geteuid() + 1) is None  # not one our daemon wrote
