"""Cloud and sync methods: cloud.status/login/logout/workspaces/link/unlink and
sync.status/push/pull/conflicts/resolve/rejected. Thin: validate, call the cloud facade.

The facade is ``daemon.sync.service.CloudService`` when the cloud is configured, else
``DisabledCloud`` (cloud calls answer -32003; the local conflict and rejection lists work).
Results: status snapshots as documented; ``cloud.workspaces`` is ``{items}``, the local lists
(conflicts, rejections) are keyset pages ``{items, next_cursor}``.
"""

from __future__ import annotations

from typing import Any, Final, Literal, Protocol

from ui_bridge.jsonrpc import ErrorCode
from ui_bridge.methods.spec import (
    CURSOR_PARAM,
    PAGE_RESULT,
    Handler,
    ListPage,
    Method,
    MethodTable,
    Param,
    limit_param,
    page_result,
)

__all__ = ["CloudFacade", "add_cloud_methods"]

ID_LENGTH: Final = 64
_OBJECT: Final[dict[str, Any]] = {"type": "object"}
_ITEMS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": _OBJECT}},
    "required": ["items"],
}
_CLOUD_ERRORS: Final = (
    ErrorCode.CLOUD_NOT_CONFIGURED,
    ErrorCode.LOGIN_REQUIRED,
    ErrorCode.RATE_LIMITED,
)


class CloudFacade(Protocol):
    """What the cloud methods call (CloudService / DisabledCloud)."""

    def cloud_status(self) -> dict[str, Any]: ...

    async def login(self, email: str, password: str) -> dict[str, Any]: ...

    async def logout(self) -> dict[str, Any]: ...

    async def workspaces(self) -> dict[str, Any]: ...

    async def link(
        self,
        *,
        workspace_id: str | None = None,
        cloud_workspace_id: str | None = None,
        path: str | None = None,
    ) -> dict[str, Any]: ...

    async def unlink(self, workspace_id: str) -> dict[str, Any]: ...

    async def sync_status(self) -> dict[str, Any]: ...

    async def sync_now(self, kind: Literal["push", "pull"]) -> dict[str, Any]: ...

    async def conflicts(
        self, *, include_resolved: bool = False, limit: int = ..., cursor: str | None = None
    ) -> ListPage: ...

    async def resolve(
        self, conflict_id: str, *, choice: str | None, value: Any, has_value: bool
    ) -> dict[str, Any]: ...

    async def rejected(self, *, limit: int = ..., cursor: str | None = None) -> ListPage: ...


def _id(name: str, *, required: bool = True, what: str = "") -> Param:
    return Param(name, "string", required=required, max_length=ID_LENGTH, description=what)


def _handlers(cloud: CloudFacade) -> dict[str, Handler]:
    async def status(ctx: Any, params: dict[str, Any]) -> Any:
        return cloud.cloud_status()

    async def login(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.login(params["email"], params["password"])

    async def logout(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.logout()

    async def workspaces(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.workspaces()

    async def link(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.link(**params)

    async def unlink(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.unlink(params["workspace_id"])

    async def sync_status(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.sync_status()

    async def push(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.sync_now("push")

    async def pull(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.sync_now("pull")

    async def conflicts(ctx: Any, params: dict[str, Any]) -> Any:
        return page_result(await cloud.conflicts(**params))

    async def resolve(ctx: Any, params: dict[str, Any]) -> Any:
        return await cloud.resolve(
            params["conflict_id"],
            choice=params.get("choice"),
            value=params.get("value"),
            has_value="value" in params,
        )

    async def rejected(ctx: Any, params: dict[str, Any]) -> Any:
        return page_result(await cloud.rejected(**params))

    return {
        "cloud.status": status,
        "cloud.login": login,
        "cloud.logout": logout,
        "cloud.workspaces": workspaces,
        "cloud.link": link,
        "cloud.unlink": unlink,
        "sync.status": sync_status,
        "sync.push": push,
        "sync.pull": pull,
        "sync.conflicts": conflicts,
        "sync.resolve": resolve,
        "sync.rejected": rejected,
    }


def add_cloud_methods(table: MethodTable, cloud: CloudFacade) -> None:
    """Register the cloud and sync methods, served by ``cloud``."""
    h = _handlers(cloud)
    ws = _id("workspace_id", what="local workspace id")
    path = Param("path", "string", max_length=4096, description="absolute folder path")
    for method in (
        Method(
            "cloud.status",
            h["cloud.status"],
            (),
            "Cloud configuration, session, user, organisation, links and sync state"
            " (`clock_ahead`: null, or `{ahead_ms, until}` while this device's clock runs more"
            " than the cloud's allowed hour ahead of its wall clock, as in sync.status;"
            " `account_as_of`: null, or when the profile, organization and role shown were"
            " loaded: kept from an earlier run while the cloud has not confirmed them).",
            _OBJECT,
        ),
        Method(
            "cloud.login",
            h["cloud.login"],
            (
                Param("email", "string", required=True, max_length=320, description="the user"),
                Param(
                    "password",
                    "string",
                    required=True,
                    max_length=1024,
                    description="never stored or logged",
                ),
            ),
            "Log in to the cloud (the daemon keeps and refreshes the session).",
            _OBJECT,
            (*_CLOUD_ERRORS, ErrorCode.INVALID_PARAMS),
        ),
        Method(
            "cloud.logout", h["cloud.logout"], (), "Log out of the cloud.", _OBJECT, _CLOUD_ERRORS
        ),  # fmt: skip
        Method(
            "cloud.workspaces",
            h["cloud.workspaces"],
            (),
            "The organisation's cloud workspaces.",
            _ITEMS,
            _CLOUD_ERRORS,
        ),
        Method(
            "cloud.link",
            h["cloud.link"],
            (
                _id("workspace_id", required=False, what="publish this local workspace"),
                _id("cloud_workspace_id", required=False, what="clone this cloud workspace"),
                path,
            ),
            "Link a workspace: publish a local one, or clone a cloud one into `path`.",
            _OBJECT,
            (
                *_CLOUD_ERRORS,
                ErrorCode.INVALID_PARAMS,
                ErrorCode.NOT_FOUND,
                ErrorCode.REJECTED_BY_POLICY,
            ),  # fmt: skip
        ),
        Method(
            "cloud.unlink",
            h["cloud.unlink"],
            (ws,),
            "Stop syncing a workspace (its local data stays).",
            _OBJECT,
            (ErrorCode.CLOUD_NOT_CONFIGURED, ErrorCode.NOT_FOUND),
        ),
        Method(
            "sync.status",
            h["sync.status"],
            (),
            "Sync state, outbox depth, rejected count, last push/pull, last error.",
            _OBJECT,
        ),
        Method(
            "sync.push",
            h["sync.push"],
            (),
            "Push now and wait; the counts pushed.",
            _OBJECT,
            _CLOUD_ERRORS,
        ),
        Method(
            "sync.pull",
            h["sync.pull"],
            (),
            "Pull now and wait; the counts pulled.",
            _OBJECT,
            _CLOUD_ERRORS,
        ),
        Method(
            "sync.conflicts",
            h["sync.conflicts"],
            (
                Param("include_resolved", "boolean", description="settled ones too"),
                limit_param(100),
                CURSOR_PARAM,
            ),
            "Conflicts of manual fields (open ones unless include_resolved), oldest first.",
            PAGE_RESULT,
        ),
        Method(
            "sync.resolve",
            h["sync.resolve"],
            (
                _id("conflict_id", what="conflict id"),
                Param(
                    "choice",
                    "string",
                    enum=("local", "remote"),
                    description="keep this device's value or the cloud's (or give `value`)",
                ),
                Param("value", "any", nullable=True, description="the value to keep instead"),
            ),
            "Settle a conflict with the local or remote value, or a value of your own.",
            _OBJECT,
            (ErrorCode.INVALID_PARAMS, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
        ),
        Method(
            "sync.rejected",
            h["sync.rejected"],
            (limit_param(100), CURSOR_PARAM),
            "Changes the cloud refused (kept until settled), oldest first.",
            PAGE_RESULT,
        ),
    ):
        table.add(method)
