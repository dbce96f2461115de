"""devcloud's PostgREST subset, mounted at ``/rest/v1`` (see ``routes``)."""

from __future__ import annotations

from devcloud.rest.routes import RestApi, routes

__all__ = ["RestApi", "routes"]
