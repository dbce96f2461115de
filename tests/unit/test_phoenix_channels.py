"""The workspace channel's topic and join payload (daemon/realtime/channels.py)."""

from __future__ import annotations

import pytest

from daemon.errors import InvalidInput
from daemon.realtime.channels import workspace_id_of, workspace_join_payload, workspace_topic

WS = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def test_join_payload_filters_every_synced_table_to_the_workspace() -> None:
    payload = workspace_join_payload(WS, "device-1")
    assert payload == {
        "config": {
            "broadcast": {"self": False, "ack": False},
            "presence": {"key": "device-1", "enabled": True},
            "private": True,
            "postgres_changes": [
                {"event": "*", "schema": "public", "table": "workspaces", "filter": f"id=eq.{WS}"},
                {
                    "event": "*",
                    "schema": "public",
                    "table": "conversations",
                    "filter": f"workspace_id=eq.{WS}",
                },
                {
                    "event": "*",
                    "schema": "public",
                    "table": "messages",
                    "filter": f"workspace_id=eq.{WS}",
                },
                {
                    "event": "*",
                    "schema": "public",
                    "table": "tasks",
                    "filter": f"workspace_id=eq.{WS}",
                },
                {
                    "event": "*",
                    "schema": "public",
                    "table": "documents",
                    "filter": f"workspace_id=eq.{WS}",
                },
                {
                    "event": "*",
                    "schema": "public",
                    "table": "doc_updates",
                    "filter": f"workspace_id=eq.{WS}",
                },
            ],
        }
    }


def test_topic_round_trip_and_canonical_ids() -> None:
    assert workspace_topic(WS.upper()) == f"realtime:workspace:{WS}"
    assert workspace_id_of(workspace_topic(WS)) == WS
    assert workspace_id_of("realtime:room1") is None
    assert workspace_id_of("realtime:workspace:nope") is None


@pytest.mark.parametrize("bad", ["", "x", f"{WS},status=eq.1", f"{WS}&x", "1 OR 1=1"])
def test_ids_that_are_not_uuids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        workspace_topic(bad)
    with pytest.raises(InvalidInput):
        workspace_join_payload(bad, "device-1")


def test_device_id_is_required() -> None:
    with pytest.raises(InvalidInput):
        workspace_join_payload(WS, " ")
