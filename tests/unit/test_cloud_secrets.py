"""SecretStore: the backend it picks, the 0600 fallback file, falling back on keyring errors."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringError, PasswordDeleteError

from daemon.sync.cloud.secrets import (
    FILE_NAME,
    SERVICE,
    SecretStore,
    StoredSession,
    is_usable_keyring,
)
from daemon.sync.cloud.wire import CloudUser

URL = "http://127.0.0.1:54321"
TOKEN = "abcdefghij12"


class MemoryKeyring(KeyringBackend):
    """A working keyring held in memory (the machines running the tests have no OS keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.entries:
            raise PasswordDeleteError("not found")
        del self.entries[(service, username)]


class BrokenKeyring(MemoryKeyring):
    """A keyring that looks usable but fails at every call (a locked D-Bus collection...)."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("the collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError(f"cannot store {password}")  # a message quoting the secret

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringError("the collection is locked")


def chainer_of(*backends: KeyringBackend) -> chainer.ChainerBackend:
    class Chained(chainer.ChainerBackend):
        pass

    Chained.backends = list(backends)  # type: ignore[misc,assignment]
    return Chained()


@pytest.mark.parametrize(
    ("backend", "usable"),
    [
        (None, False),
        (fail.Keyring(), False),
        (null.Keyring(), False),
        (chainer_of(), False),
        (chainer_of(fail.Keyring(), null.Keyring()), False),
        (chainer_of(null.Keyring(), MemoryKeyring()), True),
        (MemoryKeyring(), True),
    ],
)
def test_usable_keyring(backend: Any, usable: bool) -> None:
    assert is_usable_keyring(backend) is usable


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_without_a_keyring_the_token_goes_to_a_private_file(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, URL + "/", keyring_backend=fail.Keyring())
    assert store.backend == "file"
    assert store.get() is None and not store.path.exists()
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        store.set(TOKEN)
    finally:
        os.umask(old_umask)
    assert store.path == tmp_path / FILE_NAME
    if os.name == "posix":
        assert file_mode(store.path) == 0o600
    assert store.get() == TOKEN
    assert orjson.loads(store.path.read_bytes()) == {
        "version": 1,
        "refresh_tokens": {URL: TOKEN},
    }
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary file left
    store.set("zyxwvutsrq98")
    assert store.get() == "zyxwvutsrq98"
    store.delete()
    assert store.get() is None and not store.path.exists()
    store.delete()  # deleting nothing is fine


def test_one_entry_per_cloud_url(tmp_path: Path) -> None:
    a = SecretStore(tmp_path, URL, use_keyring=False)
    b = SecretStore(tmp_path, "https://example.supabase.co", use_keyring=False)
    a.set("aaaaaaaaaaaa")
    b.set("bbbbbbbbbbbb")
    assert (a.get(), b.get()) == ("aaaaaaaaaaaa", "bbbbbbbbbbbb")
    a.delete()
    assert (a.get(), b.get()) == (None, "bbbbbbbbbbbb")
    assert SecretStore(tmp_path, "https://example.supabase.co/", use_keyring=False).get() == (
        "bbbbbbbbbbbb"
    )


def test_a_corrupt_file_reads_as_empty_and_is_replaced(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"{not json")
    store = SecretStore(tmp_path, URL, use_keyring=False)
    assert store.get() is None
    store.set(TOKEN)
    assert store.get() == TOKEN


def test_a_working_keyring_holds_the_token_per_data_dir_and_url(tmp_path: Path) -> None:
    ring = MemoryKeyring()
    store = SecretStore(tmp_path, URL, keyring_backend=ring)
    assert store.backend == "keyring"
    store.set(TOKEN)
    assert ring.entries == {(SERVICE, f"{tmp_path.resolve()}|{URL}"): TOKEN}
    assert not store.path.exists()
    other_dir = SecretStore(tmp_path / "other", URL, keyring_backend=ring)
    assert other_dir.get() is None
    assert store.get() == TOKEN
    store.delete()
    assert ring.entries == {} and store.get() is None
    store.delete()  # PasswordDeleteError for a missing entry is not an error


def test_a_keyring_token_replaces_a_stale_file_copy(tmp_path: Path) -> None:
    SecretStore(tmp_path, URL, use_keyring=False).set("oldoldoldold")
    ring = MemoryKeyring()
    store = SecretStore(tmp_path, URL, keyring_backend=ring)
    assert store.get() == "oldoldoldold"  # found in the file while the keyring has none
    store.set(TOKEN)
    assert not store.path.exists()
    assert store.get() == TOKEN


def test_keyring_errors_fall_back_to_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = SecretStore(tmp_path, URL, keyring_backend=BrokenKeyring())
    assert store.backend == "keyring"
    store.set(TOKEN)
    assert store.backend == "file"
    assert store.get() == TOKEN
    assert orjson.loads(store.path.read_bytes())["refresh_tokens"] == {URL: TOKEN}
    assert any("secret.keyring_failed" in r.getMessage() for r in caplog.records)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert TOKEN not in repr(store)


def test_failing_reads_and_deletes_also_fall_back(tmp_path: Path) -> None:
    SecretStore(tmp_path, URL, use_keyring=False).set(TOKEN)
    reader = SecretStore(tmp_path, URL, keyring_backend=BrokenKeyring())
    assert reader.get() == TOKEN and reader.backend == "file"
    deleter = SecretStore(tmp_path, URL, keyring_backend=BrokenKeyring())
    deleter.delete()
    assert deleter.backend == "file" and deleter.get() is None


def test_bad_values_are_refused(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, URL, use_keyring=False)
    with pytest.raises(ValueError):
        store.set("")
    with pytest.raises(ValueError):
        SecretStore(tmp_path, "ftp://host")
    assert not store.path.exists()


ADA = CloudUser("8d7f0f52-5a3e-4f0e-9a57-0c1d2e3f4a5b", "ada@example.com")


@pytest.mark.parametrize("ring", [None, MemoryKeyring()], ids=["file", "keyring"])
def test_the_user_is_stored_with_the_token(tmp_path: Path, ring: MemoryKeyring | None) -> None:
    store = SecretStore(tmp_path, URL, keyring_backend=ring or fail.Keyring())
    store.save(StoredSession(TOKEN, ADA))
    again = SecretStore(tmp_path, URL, keyring_backend=ring or fail.Keyring())
    assert again.load() == StoredSession(TOKEN, ADA)
    assert again.get() == TOKEN
    assert TOKEN not in repr(again.load())
    again.set("zyxwvutsrq98")  # a token alone replaces the entry, user and all
    assert again.load() == StoredSession("zyxwvutsrq98")
    again.delete()
    assert again.load() is None


def test_entries_of_an_older_syncd_and_bad_entries() -> None:
    assert StoredSession.decode(TOKEN) == StoredSession(TOKEN)  # the bare token
    assert StoredSession.decode(StoredSession(TOKEN, ADA).encode()) == StoredSession(TOKEN, ADA)
    assert StoredSession(TOKEN).encode() == TOKEN  # what an older syncd reads
    odd = StoredSession("{looks-like-json")  # never from GoTrue, still kept intact
    assert StoredSession.decode(odd.encode()) == odd
    no_email = '{"refresh_token": "t", "user": {"id": "u", "email": 3}}'
    assert StoredSession.decode(no_email) == StoredSession("t", CloudUser("u", None))
    no_user = '{"refresh_token": "t", "user": {"email": "a@b.c"}}'
    assert StoredSession.decode(no_user) == StoredSession("t")
    for bad in ("", None, 7, "{not json", '{"user": {"id": "u"}}', '{"refresh_token": ""}'):
        assert StoredSession.decode(bad) is None, bad
