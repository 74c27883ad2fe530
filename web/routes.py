"""The gateway's HTTP route table: each path, the methods it takes and their handlers.

One table, no if-chain: :func:`find` gives a request path's :class:`Route`, whose
``handlers`` name the method of :class:`callcost.web.http_api.HttpApi` that answers it.
What each route needs of a token is in :data:`callcost.web.access.PERMISSION_OF`;
``docs/PROTOCOL.md`` ("HTTP") says what each answers. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: the websocket's path (its handshake is not a route)
WEBSOCKET_PATH = "/ws"
STATIC_PREFIX = "/static/"

#: the pages: path -> file in web/static/
PAGES: Mapping[str, str] = {
    "/": "index.html",
    "/wallboard": "wallboard.html",
    "/supervisor": "supervisor.html",
    "/alerts": "alerts.html",
}


@dataclass(frozen=True, slots=True)
class Route:
    """A path (its label in ``/metrics``) and, per method, the name of its handler."""

    label: str
    handlers: Mapping[str, str]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.handlers)


ROUTES: Mapping[str, Route] = {
    **{path: Route(path, {"GET": "page"}) for path in PAGES},
    "/api/figures": Route("/api/figures", {"GET": "figures"}),
    "/api/alerts": Route("/api/alerts", {"GET": "alerts"}),
    "/api/alerts/ack": Route("/api/alerts/ack", {"POST": "post_ack"}),
    "/api/snoozes": Route("/api/snoozes", {"GET": "snoozes", "POST": "post_snooze"}),
    "/api/centres": Route("/api/centres", {"GET": "centres"}),
    "/healthz": Route("/healthz", {"GET": "health"}),
    "/metrics": Route("/metrics", {"GET": "metrics"}),
    "/api/whoami": Route("/api/whoami", {"GET": "whoami"}),
}
#: every file under web/static/
STATIC = Route("/static", {"GET": "static"})
#: any other path: 404 (405 for another method than GET)
OTHER = Route("other", {"GET": "not_found"})


def find(path: str) -> Route:
    """The route of a request path (without its query)."""
    route = ROUTES.get(path)
    if route is not None:
        return route
    return STATIC if path.startswith(STATIC_PREFIX) else OTHER
