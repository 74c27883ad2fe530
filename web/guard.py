"""The gateway's access guard: who a request is from, and whether it may go on.

:mod:`callcost.web.access` decides (roles, tokens, origins, the permission table); the
guard applies it to websockets' requests: a websocket handshake without a valid token
is answered 401 and one from an origin not allowed 403, before it counts toward
``max_connections``; an HTTP route checks ``Authorization: Bearer`` the same way, and a
POST its ``Origin``. Every refusal is counted and logged (the path without its query,
never a header). It also makes the TLS context of ``[gateway] tls_cert``/``tls_key``.
"""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from urllib.parse import SplitResult, parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from callcost.errors import ConfigError
from callcost.streams.config import Settings
from callcost.web import access as a
from callcost.web.connection import GatewayConnection
from callcost.web.metrics import Metrics
from callcost.web.responses import error_response
from callcost.web.routes import WEBSOCKET_PATH
from callcost.web.wire import show

log = logging.getLogger("callcost.gateway")

#: what a 401 says to a client that sent no token
NO_TOKEN = "this needs a token: 'Authorization: Bearer TOKEN'"


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of ``[gateway] tls_cert`` and ``tls_key``; None without them."""
    access = settings.gateway
    if access.tls_cert is None or access.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(access.tls_cert, access.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{settings.source}: gateway.tls_cert, gateway.tls_key: cannot load "
            f"{access.tls_cert!r} with {access.tls_key!r}: {exc}"
        ) from None
    return context


class Guard:
    """The tokens and origins of ``settings`` applied to websockets' requests."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        access = settings.gateway
        self.settings = settings
        self.authenticator = a.Authenticator(access.tokens)
        self.tls = access.tls_cert is not None
        self.origin_policy = a.OriginPolicy(access.origins, tls=self.tls)
        self.metrics = metrics

    def announce(self, host: str, port: int) -> None:
        """Log at start what access control there is: loudly when there is none."""
        authenticator = self.authenticator
        if authenticator.open:
            log.warning(
                "NO ACCESS CONTROL: %s has no [[gateway.tokens]]; anyone who reaches "
                "%s:%d reads every figure and alert, and acknowledges and snoozes alerts. "
                "Configure tokens (README, Security).",
                self.settings.source,
                host,
                port,
            )
        else:
            roles = Counter(t.role for t in authenticator.tokens)
            log.info(
                "access control: %d token(s) (%s); origins: own host%s; %s",
                len(authenticator.tokens),
                ", ".join(f"{n} {r}" for r, n in sorted(roles.items())),
                "".join(f", {o}" for o in self.settings.gateway.origins),
                "TLS" if self.tls else "no TLS",
            )

    @property
    def open(self) -> bool:
        """No token configured: every request is allowed."""
        return self.authenticator.open

    def principal(
        self, request: Request, url: SplitResult, subprotocols: list[str]
    ) -> tuple[a.Principal | None, str]:
        """Who the request's token says it is, or None and why not (never the token)."""
        if self.authenticator.open:
            return a.OPEN, ""
        authorization = request.headers.get_all("Authorization")
        try:
            if len(authorization) > 1:
                raise a.CredentialError("more than one Authorization header")
            token = a.presented_token(
                authorization[0] if authorization else None,
                subprotocols,
                parse_qs(url.query, keep_blank_values=True),
            )
        except a.CredentialError as exc:
            return None, str(exc)
        if token is None:
            if url.path == WEBSOCKET_PATH:
                return None, f"{NO_TOKEN}, or the subprotocol '{a.TOKEN_SUBPROTOCOL}TOKEN'"
            return None, NO_TOKEN
        principal = self.authenticator.authenticate(token)
        if principal is None:
            return None, "the token is not valid"
        return principal, ""

    def refuse(
        self,
        kind: str,
        reason: str,
        connection: ServerConnection,
        request: Request,
        status: int,
        message: str,
    ) -> Response:
        """A 401 or 403, counted and logged: the path without its query, never a header."""
        self.metrics.auth_refused[(kind, reason)] += 1
        path = urlsplit(request.path).path
        log.info(
            "refused %s %s from %s: %d %s",
            request.method,
            show(path),
            connection.remote_address,
            status,
            message,
        )
        if status == 401:
            challenge = 'Bearer realm="callcost"'
            if message == "the token is not valid":
                challenge += ', error="invalid_token"'
            return error_response(401, "unauthorized", message, WWW_Authenticate=challenge)
        return error_response(status, "forbidden", message)

    def origin_refused(
        self, kind: str, connection: ServerConnection, request: Request
    ) -> Response | None:
        """None when the request's ``Origin`` is allowed, else a 403."""
        origins = request.headers.get_all("Origin")
        hosts = request.headers.get_all("Host")
        origin = None if not origins else origins[0] if len(origins) == 1 else ""
        if self.origin_policy.allows(origin, hosts[0] if len(hosts) == 1 else None):
            return None
        return self.refuse(
            kind,
            "origin",
            connection,
            request,
            403,
            f"the origin {show(origin)} may not use this gateway; the gateway's own host "
            "and [gateway] origins may",
        )

    def check_handshake(
        self, connection: ServerConnection, request: Request, url: SplitResult
    ) -> Response | None:
        """None when the websocket handshake may go on (its principal kept on the
        connection); else 403 (``Origin``) or 401 (token)."""
        refused = self.origin_refused("websocket", connection, request)
        if refused is not None:
            return refused
        offered = a.offered_subprotocols(request.headers.get_all("Sec-WebSocket-Protocol"))
        principal, problem = self.principal(request, url, offered)
        if principal is None:
            return self.refuse("websocket", "unauthorized", connection, request, 401, problem)
        if isinstance(connection, GatewayConnection):
            connection.principal = principal
        return None

    def authorize(
        self, connection: ServerConnection, request: Request, url: SplitResult
    ) -> tuple[a.Principal | None, Response | None]:
        """(who, None) when the HTTP request may be served, else (who, a 401 or 403)."""
        method, path = request.method, url.path
        if method == "POST":
            refused = self.origin_refused("http", connection, request)
            if refused is not None:
                return None, refused
        needs_token, needed = a.route_permission(method, path)
        if not needs_token:
            return None, None  # a page, a static file, /healthz, or a 404
        principal, problem = self.principal(request, url, [])
        if principal is None:
            return None, self.refuse("http", "unauthorized", connection, request, 401, problem)
        if needed is not None and not principal.can(needed):
            return principal, self.refuse(
                "http",
                "forbidden",
                connection,
                request,
                403,
                f"the role {show(principal.role)} may not use {method} {path}",
            )
        return principal, None
