"""Collaborative document methods: doc.open, doc.update, doc.get. Thin: decode, call the store.

Documents are pycrdt/Yjs documents exchanged as Yjs updates (v1 encoding) in base64 (standard
alphabet, padded). Convention: a document's text is its root ``Text`` named "content". Every
stored update is announced to local clients as a ``doc.updated`` event
``{id, workspace_id, update_id, update, origin}``; the sender gets its own back too (applying an
update twice changes nothing).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from ui_bridge.jsonrpc import ErrorCode
from ui_bridge.methods.context import CallContext
from ui_bridge.methods.spec import Method, MethodTable, Param, invalid_params

__all__ = ["add_doc_methods", "decode_update"]

ID_LENGTH: Final = 64

_ID: Final = Param("id", "string", required=True, max_length=ID_LENGTH, description="document id")
_STATE: Final = {"type": "string", "description": "base64 Yjs update holding the whole document"}
_OPENED: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "workspace_id": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        "name": {"type": "string"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "deleted_at": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        "state": _STATE,
    },
    "required": ["id", "workspace_id", "name", "state"],
}
_UPDATED: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "update_id": {
            "oneOf": [{"type": "string"}, {"type": "null"}],
            "description": "null: the update was empty (AAA=); nothing was stored",
        },
    },
    "required": ["id", "update_id"],
    "description": "sent once the update is committed",
}
_TEXT: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "text": {"type": "string", "description": 'the string of the root Text "content"'},
        "state": _STATE,
    },
    "required": ["id", "text", "state"],
}


def decode_update(field: str, value: str) -> bytes:
    """The bytes of a base64 parameter; -32602 naming ``field`` when it is not base64."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_params(field, "must be base64 (standard alphabet, padded)") from None


async def doc_open(ctx: CallContext, params: dict[str, Any]) -> Any:
    return await ctx.store.documents.open(
        params.get("id"), workspace_id=params.get("workspace_id"), name=params.get("name")
    )


async def doc_update(ctx: CallContext, params: dict[str, Any]) -> Any:
    update = decode_update("update", params["update"])
    return await ctx.store.documents.apply_update(params["id"], update)


async def doc_get(ctx: CallContext, params: dict[str, Any]) -> Any:
    return await ctx.store.documents.get(params["id"])


def add_doc_methods(table: MethodTable) -> None:
    """Register doc.open, doc.update and doc.get."""
    open_params = (
        Param(
            "id",
            "string",
            max_length=ID_LENGTH,
            description="document id (a UUID when creating; omitted: a new document)",
        ),
        Param(
            "workspace_id",
            "string",
            nullable=True,
            max_length=ID_LENGTH,
            description="the document's workspace: on creation (none: a local-only document,"
            " until a document of the same id arrives from a linked workspace and adopts it),"
            " or to adopt an existing local-only document into it (so it syncs); refused when"
            " the workspace is unknown or deleted, or the document is of another workspace",
        ),
        Param(
            "name",
            "string",
            nullable=True,
            max_length=1_000,
            description="on creation only (none: the document is unnamed, and takes the name"
            " of the synced document it joins)",
        ),
    )
    update = Param(
        "update",
        "string",
        required=True,
        description="base64 Yjs update (v1); at most 1 MiB of base64 (an update of ~768 KiB):"
        " apply a bigger paste in several transactions, one update each",
    )
    for method in (
        Method(
            "doc.open",
            doc_open,
            open_params,
            "Open a document (created if it does not exist; not in a deleted workspace): its"
            " row and its state as a base64 Yjs update. The document's text is its root Text"
            ' named "content". Ids are identities: opening the id of a shared document that has'
            " not arrived yet creates it empty; with its workspace_id it joins it (never"
            " renaming it); without, it is local-only until the shared one arrives, which"
            " adopts it (its workspace and name; the contents merge and local edits are"
            " shared), or until it is opened with a workspace_id, which adopts it into that"
            " workspace. To follow it, subscribe to doc.updated before opening: updates"
            " committed between an open and a later subscribe are missed (Yjs then keeps the"
            " updates that follow them pending).",
            _OPENED,
            (ErrorCode.INVALID_PARAMS, ErrorCode.SHUTTING_DOWN),
        ),
        Method(
            "doc.update",
            doc_update,
            (_ID, update),
            "Apply a Yjs update (base64 of exactly one update, v1: not v2, not a y-protocols"
            " message, not several updates concatenated); answered once it is stored. Local clients"
            " (the sender included, usually before this answer) receive it as a doc.updated"
            " event; documents of a workspace also queue it for the cloud (refused in a"
            " deleted workspace).",
            _UPDATED,
            (ErrorCode.NOT_FOUND, ErrorCode.INVALID_PARAMS, ErrorCode.SHUTTING_DOWN),
        ),
        Method(
            "doc.get",
            doc_get,
            (_ID,),
            'A document\'s text (the string of its root Text "content") and state (base64).',
            _TEXT,
            (ErrorCode.NOT_FOUND,),
        ),
    ):
        table.add(method)
