"""The ``xetfs serve`` aiohttp application: wiring only (docs/architecture.md).

``make_app(state)`` installs the error middleware (``middleware``) and the route modules: ``routes.ops``
(health, metrics), ``routes.cas`` and ``routes.data`` (the Xet CAS API), ``routes.discussions`` (pull requests),
``routes.listings`` (listings, settings, moves, tags),
``routes.hub`` (the Hub API) and
``routes.resolve`` (plain-HTTP file reads). Shared state is ``context.State``.
"""
from __future__ import annotations

from aiohttp import web

from xetfs.server.context import STATE, State
from xetfs.server.middleware import error_middleware
from xetfs.server.routes import cas, data, discussions, hub, listings, ops, resolve

__all__ = ["HANDLER_LIMITS", "State", "make_app"]

# aiohttp request-handler settings: a request line long enough for a 4096-byte path percent-encoded
# (longer lines are refused by the HTTP parser), and idle keep-alive connections closed after 75 s.
HANDLER_LIMITS = {"max_line_size": 65536, "keepalive_timeout": 75.0}


def make_app(state: State) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 ** 3)
    app[STATE] = state
    for routes in (ops, cas, data, discussions, listings, hub, resolve):     # before hub: its catch-all is last
        routes.setup(app)
    return app
