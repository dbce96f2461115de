"""The local API's method table: it both dispatches calls and generates ``rpc.discover``.

Later features add their methods to the same table (``table.add(Method(...))``) so that the
documentation cannot drift from what is served.
"""

from __future__ import annotations

from ui_bridge.methods.context import CallContext
from ui_bridge.methods.data import add_data_methods
from ui_bridge.methods.spec import Method, MethodTable, Param, bind_params, invalid_params
from ui_bridge.methods.system import add_system_methods

__all__ = [
    "CallContext",
    "Method",
    "MethodTable",
    "Param",
    "bind_params",
    "build_method_table",
    "invalid_params",
]


def build_method_table() -> MethodTable:
    """A table holding every method of the local API."""
    table = MethodTable()
    add_system_methods(table)
    add_data_methods(table)
    return table
