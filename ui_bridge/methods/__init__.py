"""The local API's method table: it both dispatches calls and generates ``rpc.discover``.

Later features add their methods to the same table (``table.add(Method(...))``) so that the
documentation cannot drift from what is served.
"""

from __future__ import annotations

from ui_bridge.methods.cloud import CloudFacade, add_cloud_methods
from ui_bridge.methods.context import CallContext
from ui_bridge.methods.data import add_data_methods
from ui_bridge.methods.docs import add_doc_methods
from ui_bridge.methods.presence import LiveFacade, add_presence_methods
from ui_bridge.methods.spec import Method, MethodTable, Param, bind_params, invalid_params
from ui_bridge.methods.system import add_system_methods

__all__ = [
    "CallContext",
    "CloudFacade",
    "LiveFacade",
    "Method",
    "MethodTable",
    "Param",
    "bind_params",
    "build_method_table",
    "invalid_params",
]


def build_method_table(
    cloud: CloudFacade | None = None, live: LiveFacade | None = None
) -> MethodTable:
    """A table holding every method of the local API (the cloud and sync methods when
    ``cloud`` is given: app.py passes the CloudService, or DisabledCloud; the presence and
    broadcast methods when ``live`` is: its LiveSync, or DisabledLive)."""
    table = MethodTable()
    add_system_methods(table)
    add_data_methods(table)
    add_doc_methods(table)
    if cloud is not None:
        add_cloud_methods(table, cloud)
    if live is not None:
        add_presence_methods(table, live)
    return table
