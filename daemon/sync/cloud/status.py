"""The cloud session's status: an immutable snapshot for ``cloud.status`` (pure; no token),
and the account ``cloud.status`` shows beside it (``AccountSnapshot``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.sync.cloud.records import Membership, Profile
from daemon.sync.cloud.wire import CloudUser

__all__ = [
    "AccountSnapshot",
    "SecretBackend",
    "SessionStatus",
    "StatusListener",
    "account_fields",
]

SecretBackend = Literal["keyring", "file"]


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """What ``cloud.status`` shows about the session; never a token."""

    #: a session is held: granted, or restored at start and not granted yet (``expires_at``
    #: None; ``last_error`` says why, e.g. ``connect``: the cloud cannot be reached)
    logged_in: bool = False
    auth_required: bool = False
    user: CloudUser | None = None
    expires_at: float | None = None
    secret_backend: SecretBackend = "file"
    last_error: str | None = None  # a reason code (``connect``, ``http_503``...), or None

    def to_json(self) -> dict[str, Any]:
        return {
            "logged_in": self.logged_in,
            "auth_required": self.auth_required,
            "user": None if self.user is None else self.user.to_json(),
            "expires_at": self.expires_at,
            "secret_backend": self.secret_backend,
            "last_error": self.last_error,
        }


StatusListener = Callable[[SessionStatus], None]

_PROFILE_KEYS = ("id", "email", "display_name", "avatar_url")


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The logged-in user's account in one cloud (``url``) as loaded at ``as_of`` (ISO 8601):
    ``profile`` (``{id, email, display_name, avatar_url}``) and first ``organization``
    (``{id, name}``) with its ``role``, each None when the cloud has none. The last one loaded
    is kept in the local store, so a restart shows it before the cloud can confirm it."""

    url: str
    user_id: str
    profile: Mapping[str, str | None] | None
    organization: Mapping[str, str] | None
    role: str | None
    as_of: str

    @classmethod
    def loaded(
        cls, url: str, user_id: str, profile: Profile | None, member: Membership | None, as_of: str
    ) -> AccountSnapshot:
        fields = account_fields(profile, member)
        return cls(url, user_id, fields["profile"], fields["organization"], fields["role"], as_of)

    def status_fields(self) -> dict[str, Any]:
        """This account as ``cloud.status`` shows it when the cloud has not confirmed it yet."""
        return {
            "profile": None if self.profile is None else dict(self.profile),
            "organization": None if self.organization is None else dict(self.organization),
            "role": self.role,
            "account_as_of": self.as_of,
        }

    def shows(self, url: str, user: CloudUser | None) -> bool:
        """Whether this is the account of ``user`` in the cloud at ``url``."""
        return user is not None and user.id == self.user_id and url == self.url

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "user_id": self.user_id,
            "profile": None if self.profile is None else dict(self.profile),
            "organization": None if self.organization is None else dict(self.organization),
            "role": self.role,
            "as_of": self.as_of,
        }

    @classmethod
    def from_json(cls, data: Any) -> AccountSnapshot:
        """What ``to_json`` wrote; ValueError naming the first field of another shape."""
        if not isinstance(data, Mapping):
            raise ValueError("account: not an object")
        profile, organization = data.get("profile"), data.get("organization")
        if profile is not None and not (
            isinstance(profile, Mapping)
            and isinstance(profile.get("id"), str)
            and all(_text_or_none(profile.get(k)) for k in _PROFILE_KEYS)
        ):
            raise ValueError("account: profile")
        if organization is not None and not (
            isinstance(organization, Mapping)
            and all(isinstance(organization.get(k), str) for k in ("id", "name"))
        ):
            raise ValueError("account: organization")
        for name in ("url", "user_id", "as_of"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"account: {name}")
        if not _text_or_none(data.get("role")):
            raise ValueError("account: role")
        return cls(
            url=data["url"],
            user_id=data["user_id"],
            profile=None if profile is None else {k: profile.get(k) for k in _PROFILE_KEYS},
            organization=None
            if organization is None
            else {"id": organization["id"], "name": organization["name"]},
            role=data.get("role"),
            as_of=data["as_of"],
        )


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def account_fields(profile: Profile | None, member: Membership | None) -> dict[str, Any]:
    """The account ``cloud.status`` shows as loaded from the cloud (``account_as_of`` null:
    current)."""
    return {
        "profile": None
        if profile is None
        else {
            "id": profile.id,
            "email": profile.email,
            "display_name": profile.display_name,
            "avatar_url": profile.avatar_url,
        },
        "organization": None if member is None else {"id": member.org_id, "name": member.org_name},
        "role": None if member is None else member.role,
        "account_as_of": None,
    }
