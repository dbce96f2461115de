"""The daemon's Supabase adapter: the session (auth), the refresh-token store, REST calls.

Wiring (``daemon/app.py``)::

    http = CloudHttp(settings.cloud.url, settings.cloud.anon_key)
    secrets = SecretStore(settings.data_dir, settings.cloud.url)
    async with http, CloudSession(http, secrets) as session:
        session.add_listener(publish_cloud_status)
        await session.restore()              # silent login from the stored refresh token
        api = CloudApi(session)              # push / pull / reads for linking

Modules: ``session`` (CloudSession), ``secrets`` (SecretStore), ``rest`` (CloudApi), ``http``
(the shared HTTP/1.1 client and the failure seam), ``errors`` (the CloudError tree) and the pure
``wire``/``records``/``status`` (response shapes, the refresh schedule, the status snapshot).
"""

from daemon.sync.cloud.errors import (
    AnswerTooLarge,
    AuthRequired,
    CloudError,
    CloudProtocolError,
    CloudRejected,
    CloudUnavailable,
    SecretStoreError,
)
from daemon.sync.cloud.http import CloudHttp
from daemon.sync.cloud.records import CloudWorkspace, Membership, Profile
from daemon.sync.cloud.rest import CloudApi
from daemon.sync.cloud.secrets import SecretStore
from daemon.sync.cloud.session import CloudSession
from daemon.sync.cloud.status import (
    AccountSnapshot,
    SecretBackend,
    SessionStatus,
    StatusListener,
)
from daemon.sync.cloud.wire import CloudUser, TokenGrant, refresh_at

__all__ = [
    "AccountSnapshot",
    "AnswerTooLarge",
    "AuthRequired",
    "CloudApi",
    "CloudError",
    "CloudHttp",
    "CloudProtocolError",
    "CloudRejected",
    "CloudSession",
    "CloudUnavailable",
    "CloudUser",
    "CloudWorkspace",
    "Membership",
    "Profile",
    "SecretBackend",
    "SecretStore",
    "SecretStoreError",
    "SessionStatus",
    "StatusListener",
    "TokenGrant",
    "refresh_at",
]
