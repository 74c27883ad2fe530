"""Who may do what on the gateway: roles, tokens, origins, and keeping tokens out of logs.

Pure module: standard library only (no websockets, no asyncio); the gateway's guard
(``web/guard.py``) asks it, and :data:`PERMISSION_OF` is the one table of what each
websocket request and HTTP route needs. The README's "Security" section is the user's
guide, ``docs/PROTOCOL.md`` ("Access") what a client sees.

Roles and permissions
=====================

A token (``[[gateway.tokens]]`` of the settings) has one role; a role is a set of
permissions:

==============  ====================================================================
``wallboard``   ``figures``: subscribe to figures, ``GET /api/figures``, ``/api/centres``
``supervisor``  ``figures``, ``alerts`` (subscribe to alerts, ``GET /api/alerts``,
                ``GET /api/snoozes``), ``ack`` and ``snooze`` (websocket ops and POSTs)
``admin``       everything, ``/metrics`` included
``metrics``     ``metrics`` only: ``GET /metrics``, for a Prometheus scraper's own token
==============  ====================================================================

With no token configured the gateway is open: every request is allowed, as an ``admin``
without a name (:data:`OPEN`). The pages and their static files, and ``/healthz``,
never need a token (the pages hold no data; a load balancer probes ``/healthz``).

Tokens
======

The configuration holds only SHA-256 digests; a token presented is hashed and compared
with every configured digest by :func:`hmac.compare_digest` (constant time, and all of
them are compared whatever matches). A token travels in ``Authorization: Bearer TOKEN``
(REST, and websocket clients that can set headers) or, for browsers, which cannot set
headers on a websocket, as the subprotocol ``callcost.token.TOKEN`` offered next to
``callcost.v1`` (the server selects ``callcost.v1`` and never echoes the token). A token
in the query string (``?token=``) is refused: addresses end up in proxy and server logs,
browser history and ``Referer`` headers.

Origins
=======

A browser sends ``Origin`` with every websocket handshake and every POST. One is allowed
when it is the gateway's own host (``Origin`` host and port equal to ``Host``, default
ports aside) or one of ``[gateway] origins`` (``"*"``: any); a request without
``Origin`` is not from a browser page and is allowed (its token is what counts).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from callcost.streams.config import ROLES as ROLE_NAMES
from callcost.streams.config import AccessToken

PERMISSIONS: tuple[str, ...] = ("figures", "alerts", "ack", "snooze", "metrics")

#: role -> what it may do
ROLES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "wallboard": frozenset({"figures"}),
        "supervisor": frozenset({"figures", "alerts", "ack", "snooze"}),
        "admin": frozenset(PERMISSIONS),
        "metrics": frozenset({"metrics"}),
    }
)
assert tuple(ROLES) == ROLE_NAMES, "the roles of config.py and access.py differ"

#: The one table of what needs a token, and which permission: websocket requests
#: (``subscribe`` by channel) and HTTP routes (method and path). None: any valid token.
#: What is not listed needs none (``ping``, ``unsubscribe``, the pages, ``/static/``,
#: ``/healthz``, and requests wrong anyway, which get their own error).
PERMISSION_OF: Mapping[tuple[str, str], str | None] = MappingProxyType(
    {
        ("websocket", "subscribe figures"): "figures",
        ("websocket", "subscribe alerts"): "alerts",
        ("websocket", "ack"): "ack",
        ("websocket", "snooze"): "snooze",
        ("websocket", "unsnooze"): "snooze",
        ("http", "GET /api/figures"): "figures",
        ("http", "GET /api/centres"): "figures",
        ("http", "GET /api/alerts"): "alerts",
        ("http", "GET /api/snoozes"): "alerts",
        ("http", "POST /api/alerts/ack"): "ack",
        ("http", "POST /api/snoozes"): "snooze",
        ("http", "GET /metrics"): "metrics",
        ("http", "GET /api/whoami"): None,
    }
)

#: what each permission allows, for the ``forbidden`` messages of websocket requests
PERMISSION_TEXT: Mapping[str, str] = MappingProxyType(
    {
        "figures": "subscribe to figures",
        "alerts": "subscribe to alerts",
        "ack": "acknowledge alerts",
        "snooze": "snooze or unsnooze rules",
    }
)


def permission_of(request: Mapping[str, Any]) -> str | None:
    """The permission a websocket request needs, None for one any connection may make."""
    op = request.get("op")
    if not isinstance(op, str):
        return None
    if op == "subscribe":
        channel = request.get("channel")
        if not isinstance(channel, str):
            return None
        op = f"subscribe {channel}"
    return PERMISSION_OF.get(("websocket", op))


def route_permission(method: str, path: str) -> tuple[bool, str | None]:
    """(whether the HTTP route needs a valid token, the permission it needs if any)."""
    what = ("http", f"{method} {path}")
    return what in PERMISSION_OF, PERMISSION_OF.get(what)


#: the websocket subprotocol of this protocol; a client that offers it gets it back
SUBPROTOCOL = "callcost.v1"
#: a subprotocol that carries a token: ``callcost.token.`` + the token
TOKEN_SUBPROTOCOL = "callcost.token."


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: the token's name (None: open access) and its role."""

    name: str | None
    role: str
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def describe(self) -> dict[str, Any]:
        """``GET /api/whoami``: never the token, only what it may do."""
        return {
            "open": self.name is None,
            "name": self.name,
            "role": self.role,
            "permissions": [x for x in PERMISSIONS if x in self.permissions],
        }


#: everyone, when no token is configured
OPEN = Principal(None, "admin", ROLES["admin"])


class Authenticator:
    """Turns a presented token into a :class:`Principal`, or None when it is unknown."""

    def __init__(self, tokens: Iterable[AccessToken]) -> None:
        self.tokens = tuple(tokens)

    @property
    def open(self) -> bool:
        """No token configured: every request is allowed."""
        return not self.tokens

    def authenticate(self, token: str | None) -> Principal | None:
        if self.open:
            return OPEN
        if token is None:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: AccessToken | None = None
        for entry in self.tokens:  # every one, so the time says nothing of which matched
            if hmac.compare_digest(digest, entry.sha256) and found is None:
                found = entry
        if found is None:
            return None
        return Principal(found.name, found.role, ROLES[found.role])


class CredentialError(Exception):
    """Credentials sent in a way that is refused; the message never holds the token."""


def presented_token(
    authorization: str | None, subprotocols: Sequence[str], query: Mapping[str, Any]
) -> str | None:
    """The token a request carries (``Authorization: Bearer``, else a ``callcost.token.``
    subprotocol), None when it carries none; :class:`CredentialError` when it carries one
    in a form that is refused (another scheme, two tokens, a token in the query)."""
    if "token" in query or "access_token" in query:
        raise CredentialError(
            "a token in the address is refused (proxies and servers log addresses): send "
            "it as 'Authorization: Bearer TOKEN', or on a websocket as the subprotocol "
            f"'{TOKEN_SUBPROTOCOL}TOKEN'"
        )
    offered = [s for s in subprotocols if s.startswith(TOKEN_SUBPROTOCOL)]
    if len(offered) > 1:
        raise CredentialError(f"more than one '{TOKEN_SUBPROTOCOL}' subprotocol")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if not offered:  # another scheme (a proxy's own Basic, say) beside a token is let be
            raise CredentialError("the Authorization header must be 'Bearer TOKEN'")
    if offered:
        return offered[0][len(TOKEN_SUBPROTOCOL) :] or None
    return None


def offered_subprotocols(header_values: Iterable[str]) -> list[str]:
    """The subprotocols of ``Sec-WebSocket-Protocol`` headers (comma-separated)."""
    return [s.strip() for value in header_values for s in value.split(",") if s.strip()]


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """``callcost.v1`` when the client offers it, else none (never a token's)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


# --------------------------------------------------------------------------- origins

_DEFAULT_PORT = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _host_port(scheme: str, netloc: str) -> str:
    """``netloc`` in lower case without the scheme's default port."""
    netloc = netloc.strip().lower()
    default = _DEFAULT_PORT.get(scheme)
    if default and netloc.endswith(":" + default):
        netloc = netloc[: -len(default) - 1]
    return netloc


class OriginPolicy:
    """Which browser origins may open a websocket or POST: the gateway's own host and
    ``allowed`` (``"*"``: any). ``tls``: the gateway serves https (for default ports)."""

    def __init__(self, allowed: Iterable[str] = (), tls: bool = False) -> None:
        allowed = tuple(allowed)
        self.any = "*" in allowed
        self.scheme = "https" if tls else "http"
        self.allowed = frozenset(
            f"{u.scheme}://{_host_port(u.scheme, u.netloc)}"
            for u in (urlsplit(a.lower()) for a in allowed if a != "*")
        )

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not sent by a browser page
        if self.any:
            return True
        u = urlsplit(origin.strip().lower())
        if u.scheme not in ("http", "https") or not u.netloc:
            return False  # "null" (a sandboxed page, a file), or garbage
        if f"{u.scheme}://{_host_port(u.scheme, u.netloc)}" in self.allowed:
            return True
        if host is None:
            return False
        return _host_port(u.scheme, u.netloc) == _host_port(self.scheme, host)


# --------------------------------------------------------------------------- redaction

_REDACT = "[redacted]"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a token subprotocol, in a header line, a list or an exception's repr
    (re.compile(r"(callcost\.token\.)[^\s,;'\"\]\)\\]*", re.IGNORECASE), r"\1" + _REDACT),
    # an Authorization header: "Authorization: Bearer X", ('Authorization', 'Bearer X')
    (
        re.compile(r"(authorization['\"]?\s*[:=,]\s*['\"]?)[^\r\n'\"\\]*", re.IGNORECASE),
        r"\1" + _REDACT,
    ),
    (re.compile(r"(\bbearer\s+)[^\s'\",\\]+", re.IGNORECASE), r"\1" + _REDACT),
    # a token in an address: ?token=X, &access_token=X, #token=X
    (re.compile(r"([?&#;](?:access_)?token=)[^&\s'\"#\\]*", re.IGNORECASE), r"\1" + _REDACT),
)


def redact(text: str) -> str:
    """``text`` with every token-looking credential replaced by ``[redacted]``: the
    values of Authorization headers and bearer credentials, ``callcost.token.``
    subprotocols, and ``token=`` in addresses."""
    if not text:
        return text
    lowered = text.lower()
    if "token" not in lowered and "authorization" not in lowered and "bearer" not in lowered:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
