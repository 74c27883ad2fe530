"""The gateway's HTTP side: each request routed by the table of :mod:`callcost.web.routes`,
guarded, and answered from the stores (``docs/PROTOCOL.md``, "HTTP").

A GET is answered at once; a POST (an ack or a snooze) returns a coroutine that writes
the control record first. The websocket handshake at ``/ws`` is checked here too (token,
origin, ``max_connections``) and then left to websockets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from callcost.streams.config import Settings
from callcost.web import queries
from callcost.web.access import Principal
from callcost.web.control import ControlStore, Record, control_request
from callcost.web.guard import Guard
from callcost.web.metrics import Metrics
from callcost.web.responses import (
    PROMETHEUS,
    error_response,
    json_response,
    response,
    static_file,
)
from callcost.web.routes import PAGES, STATIC_PREFIX, WEBSOCKET_PATH, find
from callcost.web.stores import AlertStore, FigureStore
from callcost.web.wire import RequestError, show

log = logging.getLogger("callcost.gateway")

#: HTTP status of the errors of REST writes; every other error code is 400
STATUS_OF_ERROR = {"unknown_alert": 404, "not_firing": 409, "unavailable": 503}
#: the ops each POST route takes (the first when the body names none)
POST_OPS = {"post_ack": ("ack",), "post_snooze": ("snooze", "unsnooze")}

Query = dict[str, list[str]]


class Host(Protocol):
    """What the HTTP side uses of the gateway."""

    figures: FigureStore
    alerts: AlertStore
    control: ControlStore
    settings: Settings
    static_dir: Path
    control_topic: str
    guard: Guard
    metrics: Metrics

    @property
    def clock(self) -> Callable[[], int]: ...

    def status(self) -> dict[str, Any]: ...

    def render_metrics(self) -> bytes: ...

    def admit(self, connection: ServerConnection) -> Response | None: ...

    async def write_control(self, record: Record) -> dict[str, Any]: ...


class HttpApi:
    """Answers the gateway's HTTP requests (websockets' ``process_request``)."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | Awaitable[Response] | None:
        """A Response, or None for the websocket handshake, or a coroutine (a write)."""
        host = self.host
        url = urlsplit(request.path)
        path = url.path
        if path == WEBSOCKET_PATH:
            refused = host.guard.check_handshake(connection, request, url)
            return refused if refused is not None else host.admit(connection)
        route = find(path)
        handler = route.handlers.get(request.method)
        if handler is None:
            methods = route.methods
            resp = error_response(
                405,
                "method_not_allowed",
                f"{show(request.method)} is not allowed; use {' or '.join(methods)}",
                Allow=", ".join(methods),
            )
        else:
            principal, denied = host.guard.authorize(connection, request, url)
            if denied is not None:
                resp = denied
            elif handler in POST_OPS:
                body = getattr(connection, "body", None)
                return self._post(route.label, POST_OPS[handler], body or b"", principal)
            else:
                try:
                    query = parse_qs(url.query, keep_blank_values=True)
                    resp = getattr(self, handler)(path, query, principal)
                except RequestError as exc:
                    resp = error_response(400, exc.code, exc.message)
        host.metrics.http[(route.label, resp.status_code)] += 1
        return resp

    # ----------------------------------------------------------------- GET

    def figures(self, path: str, query: Query, principal: Principal | None) -> Response:
        centre, scope, window = queries.figures_query(query)
        return json_response(200, {"figures": self.host.figures.query(centre, scope, window)})

    def alerts(self, path: str, query: Query, principal: Principal | None) -> Response:
        host = self.host
        centre, state, since, until = queries.alerts_query(query)
        alerts = host.alerts.query(centre, state, since=since, until=until)
        if state == "firing":
            now = host.clock()
            out = [host.control.with_ack_and_snooze(a, now) for a in alerts]
        else:
            out = [host.control.with_ack(a) for a in alerts]
        return json_response(200, {"alerts": out})

    def snoozes(self, path: str, query: Query, principal: Principal | None) -> Response:
        centre = queries.snoozes_query(query)
        host = self.host
        return json_response(200, {"snoozes": host.control.snoozes(host.clock(), centre)})

    def centres(self, path: str, query: Query, principal: Principal | None) -> Response:
        queries.no_parameters(query)
        return json_response(200, {"centres": self.centre_list()})

    def centre_list(self) -> list[dict[str, Any]]:
        """Every centre with figures or in the configuration: its zone, currency, band."""
        settings = self.host.settings
        names = sorted(set(self.host.figures.centres()) | set(settings.centres))
        out = []
        for cid in names:
            rates = settings.rates_for(cid)
            out.append({"centre": cid, "timezone": rates.timezone, "currency": rates.currency,
                        "band": list(rates.band)})  # fmt: skip
        return out

    def whoami(self, path: str, query: Query, principal: Principal | None) -> Response:
        queries.no_parameters(query)
        assert principal is not None  # the guard lets no request through without one
        return json_response(200, principal.describe())

    def health(self, path: str, query: Query, principal: Principal | None) -> Response:
        body = self.host.status()
        return json_response(200 if body["caught_up"] else 503, body)

    def metrics(self, path: str, query: Query, principal: Principal | None) -> Response:
        return response(200, self.host.render_metrics(), PROMETHEUS)

    def page(self, path: str, query: Query, principal: Principal | None) -> Response:
        return static_file(self.host.static_dir, PAGES[path])

    def static(self, path: str, query: Query, principal: Principal | None) -> Response:
        return static_file(self.host.static_dir, path[len(STATIC_PREFIX) :])

    def not_found(self, path: str, query: Query, principal: Principal | None) -> Response:
        return error_response(404, "not_found", f"no such path {show(path)}")

    # ----------------------------------------------------------------- POST

    async def _post(
        self, label: str, ops: tuple[str, ...], body: bytes, principal: Principal | None
    ) -> Response:
        """``POST /api/alerts/ack`` and ``POST /api/snoozes``: a control write, whose
        ``by`` is the token's name when there are tokens (else the body's)."""
        host = self.host
        try:
            try:
                request = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise RequestError("invalid_json", f"the body is not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise RequestError(
                    "not_an_object", f"the body must be a JSON object, got {show(request)}"
                )
            op = request.get("op", ops[0])
            if op not in ops:
                raise RequestError(
                    "invalid_value", f"'op' must be {' or '.join(ops)} here, got {show(op)}"
                )
            by = principal.name if principal is not None else None
            pending = control_request(op, request, host.alerts, host.clock(), by=by)
        except RequestError as exc:
            resp = error_response(STATUS_OF_ERROR.get(exc.code, 400), exc.code, exc.message)
        else:
            try:
                record = await host.write_control(pending.record)
            except Exception as exc:
                log.warning(
                    "cannot write %s to %s: %r", pending.record.key, host.control_topic, exc
                )
                resp = error_response(
                    503, "unavailable", f"cannot write to {host.control_topic}: {exc}"
                )
            else:
                resp = json_response(200, {pending.kind: record})
        host.metrics.http[(label, resp.status_code)] += 1
        return resp
