"""The gateway's state and client protocol. Pure module: no I/O, no asyncio.

The gateway (``web/gateway.py``) reads three Kafka topics and serves their content to
browsers. Everything it knows lives here, in stores rebuilt from the topics at every
start (a restart loses nothing), and one :class:`Session` per websocket connection; the
acks, snoozes and webhook delivery records of ``callcost-control`` are kept by
:class:`callcost.web.control.ControlStore`.

Stores
======

:class:`FigureStore`
    The latest figures of every centre. A ``cost-figures`` message holds *every* figure
    of one centre at one instant ``as_of``, so the store keeps, per centre, the figures
    of the newest message: a message with a smaller ``as_of`` than the one held for its
    centre is ignored (Kafka redelivery, a compacted topic read from the start); one with
    the same ``as_of`` replaces it (a worker that republished an instant). Within a
    message a (scope, key, window) that appears twice keeps its last figure.

:class:`AlertStore`
    Every ``cost-alerts`` message in arrival order, and the alerts firing now: an alert is
    firing from its ``firing`` message until the ``resolved`` message with the same
    ``id``. A message whose (``id``, ``state``) was already seen (a restarted worker
    publishes the same alert again) is a duplicate: kept once, sent to nobody.

``ControlStore`` (:mod:`callcost.web.control`)
    The latest acknowledgement of each alert id and the latest snooze of each (centre,
    rule, key), from the compacted ``callcost-control`` topic. An ACK is::

        {"type": "ack", "id": ALERT_ID, "centre", "scope", "rule", "key", "by": NAME,
         "note": TEXT|null, "at": MS}

    and a SNOOZE::

        {"type": "snooze", "centre", "rule", "key", "by": NAME, "note": TEXT|null,
         "at": MS, "until": MS}

    ``at`` is when it was made and ``until`` when the snooze ends, both by the gateway's
    clock (ms since the epoch). A snooze is active while ``until`` > now; a cancelled
    snooze has ``until`` = ``at``. While a snooze is active on (centre, rule, key) the
    webhook sinks stay quiet about its alerts; the alerts are still tracked and shown.

HTTP (answered by the gateway from the stores)
==============================================

``GET /api/figures?centre=&scope=&window=``
    ``{"figures": [FIGURE, ...]}``: the latest figure of every key; each parameter is
    optional. Centres in name order; within a centre, the order of the worker's message.
``GET /api/alerts?centre=&state=firing|all&since=&until=``
    ``{"alerts": [ALERT, ...]}``; ``state`` defaults to ``firing`` (the alerts firing
    now, in the order they fired), each with ``"ack": ACK|null`` and ``"snooze":
    SNOOZE|null`` (the active snooze of its centre, rule and key); ``all`` is every
    alert message, oldest first (by ``at``, then arrival), where each ``firing``
    message carries ``"ack": ACK|null``. ``since`` and ``until`` (ms since the epoch,
    each optional) keep the messages with ``since`` <= ``at`` < ``until``.
``POST /api/alerts/ack`` with the body ``{"id": ALERT_ID, "by": NAME, "note": TEXT}``
    (``note`` optional; an ``"op"`` field, if any, must be ``"ack"``): acknowledges a
    firing alert, as the websocket ``ack`` op. 200 ``{"ack": ACK}``; 404
    ``unknown_alert``, 409 ``not_firing``.
``POST /api/snoozes`` with the body ``{"centre", "rule", "key", "for_s": N, "by": NAME,
"note": TEXT}``
    as the websocket ``snooze`` op (``for_s`` 0, or ``"op": "unsnooze"`` without
    ``for_s``, cancels). 200 ``{"snooze": SNOOZE}``.
``GET /api/snoozes?centre=``
    ``{"snoozes": [SNOOZE, ...]}``: the active snoozes (of one centre, or of all), by
    centre, rule and key.

A bad parameter or body answers 400 ``{"error": CODE, "message": TEXT}`` with the codes
below (and ``unknown_parameter`` for a parameter name that is not one of those listed);
a write that cannot reach Kafka 503 ``unavailable``. A POST body is JSON, sent with a
``Content-Length`` (411 without one), at most 64 KiB (413).

Alert messages also go to the webhook sinks of the configuration (``[[sinks]]``); what
goes where, the body and the signature header are described in
:mod:`callcost.web.sinks`.

WebSocket protocol (``/ws``)
============================

Every frame is one JSON object. The client sends requests in text frames (a binary frame
holding UTF-8 JSON is accepted too); the server sends text frames only. Every request
gets exactly one reply, in order; the connection stays open after an error. Fields not
listed are ignored; a field given as ``null`` counts as absent.

Requests
--------

``{"op": "subscribe", "channel": "figures", "centre": C, "scope": S, "window": W, "sub": ID}``
    ``centre`` is required (1-64 chars of ``A-Z a-z 0-9 . _ -``); ``scope`` (one of
    ``centre``, ``queue``, ``channel``, ``direction``) and ``window`` (``today`` or
    ``N`` followed by ``s``, ``m`` or ``h``, e.g. ``15m``) are optional and mean *all*
    when absent. Reply::

        {"type": "snapshot", "sub": ID, "channel": "figures", "seq": 0, "centre": C,
         "scope": S|null, "window": W|null, "as_of": T|null, "figures": [FIGURE, ...]}

    with every current figure of the subscription (``as_of`` null and ``figures`` empty
    when the centre has none yet). Then, for each new figures message of that centre::

        {"type": "update", "sub": ID, "channel": "figures", "seq": N, "centre": C,
         "as_of": T, "figures": [FIGURE, ...]}

    ``figures`` holds every figure of the message that matches the subscription, so an
    update *replaces* what the client shows for the subscription: it is the whole
    current state, never a delta. (It may be empty when no figure matches.)

``{"op": "subscribe", "channel": "alerts", "sub": ID, "centre": C, "scope": S, ...}``
    The filters ``centre``, ``scope``, ``rule`` (R), ``key`` (K) and ``state`` (X), each
    optional (absent: every value): ``centre`` and ``scope`` as above,
    ``rule`` and ``key`` strings of 1-256 characters, ``state`` ``firing`` or
    ``resolved``. Reply::

        {"type": "snapshot", "sub": ID, "channel": "alerts", "seq": 0, "centre": C|null,
         "scope": S|null, "rule": R|null, "key": K|null, "state": X|null,
         "alerts": [ALERT + {"ack": ACK|null, "snooze": SNOOZE|null}, ...],
         "snoozes": [SNOOZE, ...]}

    with the alerts firing now that match (none with ``state`` ``resolved``), each with
    its ack and the active snooze of its rule and key, and the active snoozes of the
    subscription's centre, rule and key. Then one message per new alert message that
    matches (SPEC section 5)::

        {"type": "alert", "sub": ID, "seq": N, "id": ..., "state": "firing"|"resolved",
         "rule": ..., "centre": ..., "scope": ..., "key": ..., "window": ...,
         "direction": ..., "value": ..., "low": ..., "high": ..., "handled": ...,
         "since": ..., "at": ...}

    one per acknowledgement of an alert that matches (the ``state`` filter aside)::

        {"type": "ack", "sub": ID, "seq": N, "id", "centre", "scope", "rule", "key",
         "by", "note", "at"}

    and one per snooze, new or cancelled, whose centre, rule and key match (``scope``
    and ``state`` aside: a snooze names no scope)::

        {"type": "snooze", "sub": ID, "seq": N, "centre", "rule", "key", "by", "note",
         "at", "until"}

``{"op": "ack", "id": ALERT_ID, "by": NAME, "note": TEXT}``
    Acknowledges the alert ``id`` while it fires (``by`` 1-128 characters, who; ``note``
    optional, at most 2000). Acknowledging again replaces the ack. The ack is written to
    the control topic first; then every alerts subscription that takes it (on every
    connection, this one included) gets its ``ack`` message, then the reply::

        {"type": "acked", "ack": ACK}

    Errors: ``unknown_alert``, ``not_firing``, ``unavailable``.

``{"op": "snooze", "centre": C, "rule": R, "key": K, "for_s": N, "by": NAME, "note": TEXT}``
    Snoozes rule ``R`` for key ``K`` of centre ``C`` for ``N`` seconds (a whole number,
    0 to 2592000 = 30 days) from now, replacing any snooze of that (centre, rule, key);
    ``for_s`` 0 cancels. The subscriptions get their ``snooze`` message, then the reply
    ``{"type": "snoozed", "snooze": SNOOZE}`` (``"unsnoozed"`` when it cancels).

``{"op": "unsnooze", "centre": C, "rule": R, "key": K, "by": NAME, "note": TEXT}``
    Cancels the snooze: as ``snooze`` with ``for_s`` 0.

``sub`` (optional on both): the subscription id, a string of 1-64 characters chosen by
the client; when absent the server assigns one, ``"s1"``, ``"s2"``, ... (clients that
choose their own should not use that form). At most ``max_subscriptions`` (64)
subscriptions per connection, and one subscription per channel and set of filters.

``{"op": "unsubscribe", "sub": ID}`` or ``{"op": "unsubscribe", "channel": ...,
"centre": ..., "scope": ..., "window": ...}`` (the same fields as the subscription)
    Reply ``{"type": "unsubscribed", "sub": ID}``. Nothing more is sent for that
    subscription, not even what was waiting to be sent; its id can be used again.

``{"op": "ping", "id": X}``
    Reply ``{"type": "pong", "id": X}`` (``id`` is optional, any JSON value, echoed).

``seq``
    Per subscription: 0 for the snapshot, then 1, 2, 3, ... in the order sent, without
    gaps. ``seq`` numbers what is *sent*: when a client reads too slowly, figures updates
    for a subscription are conflated (the newest replaces the one still waiting, which
    loses nothing since an update is the whole state); alerts and replies are never
    dropped. A client that falls further behind (more than ``hard_limit`` messages
    waiting) is disconnected with close code 1013 (try again later); it should reconnect
    and subscribe again: the snapshots then hold the current figures and the alerts
    firing now, so nothing it missed is lost.

Limits
------

Each is a key of the ``[gateway]`` section of the settings (default in brackets):

- a message bigger than ``max_frame_bytes`` (64 KiB), whole or in fragments, closes the
  connection with 1009 (message too big); a text frame that is not UTF-8 with 1007;
- ``max_subscriptions`` (64) per connection: ``too_many_subscriptions``;
- requests: ``max_requests_per_s`` (20) on average, in bursts of up to
  ``request_burst`` (100); a request above that is not handled and gets the error
  ``rate_limited`` (the connection stays open); a client with more than
  ``request_burst`` requests refused in a row (it ignores the errors) is closed with 1008
  (policy violation);
- ``soft_limit`` (64) and ``hard_limit`` (1024) messages waiting to be sent: figures
  conflated, then close 1013 (above); a message the client does not take for
  ``send_timeout_s`` (30) closes with 1013 too;
- keepalive: a ping every ``ping_interval_s`` (20); no pong within ``ping_timeout_s``
  (20) closes with 1011;
- ``max_connections`` (10000) websocket connections: the handshake of one more is
  answered ``503`` ``{"error": "too_many_connections"}`` with ``Retry-After``;
  ``max_connections_per_ip`` (0: none) TCP connections from one address: one more is
  closed at once;
- the opening handshake must be done within ``open_timeout_s`` (10).

A client that is closed should reconnect with backoff and subscribe again.

Access
------

When the gateway has tokens (``[[gateway.tokens]]``; README "Security"), the handshake
must carry one: ``Authorization: Bearer TOKEN``, or, from a browser (which cannot set
headers on a websocket), the subprotocol ``callcost.token.TOKEN`` offered next to
``callcost.v1``::

    new WebSocket(url, ["callcost.v1", "callcost.token." + token])

The server selects ``callcost.v1`` (never the token's subprotocol). A token in the
address (``?token=``) is refused: addresses are logged. A handshake without a valid
token is answered ``401`` ``{"error": "unauthorized"}``; one whose ``Origin`` is not
allowed (not the gateway's own host nor one of ``[gateway] origins``) ``403``
``{"error": "forbidden"}``. The token's role then decides what the connection may do:

=====================================  ===========================================
``subscribe`` to ``figures``           ``wallboard``, ``supervisor``, ``admin``
``subscribe`` to ``alerts``            ``supervisor``, ``admin``
``ack``, ``snooze``, ``unsnooze``      ``supervisor``, ``admin``
``ping``, ``unsubscribe``              every role
=====================================  ===========================================

A request the role may not make gets the error ``forbidden`` and the connection stays
open. Without tokens configured everything is allowed. The same roles guard the HTTP
routes (401 ``unauthorized`` without a valid ``Authorization: Bearer``, 403
``forbidden`` for a route the role may not use): ``/api/figures`` and ``/api/centres``
need ``figures``; ``GET /api/alerts`` and ``GET /api/snoozes`` ``alerts``;
``POST /api/alerts/ack`` ``ack``; ``POST /api/snoozes`` ``snooze``; ``/metrics`` the
role ``admin`` or ``metrics``. ``GET /api/whoami`` answers ``{"open", "name", "role",
"permissions"}`` for any valid token. The pages, ``/static/``, and ``/healthz`` need none.

Errors
------

``{"type": "error", "error": CODE, "message": TEXT, "request": OP|null, "sub": ID}``
where ``request`` is the request's ``op`` when it is a string, ``sub`` is present when
the request carried a string ``sub``, and ``TEXT`` names the value at fault. CODE:

=========================  =================================================================
``invalid_json``           the frame is not JSON (or a binary frame that is not UTF-8)
``not_an_object``          the JSON value is not an object
``missing_field``          a required field is absent (``op``, ``channel``, figures ``centre``,
                           an ``unsubscribe`` with neither ``sub`` nor ``channel``)
``wrong_type``             a field has the wrong JSON type
``invalid_value``          a field breaks its rule (centre characters, window form, sub length)
``unknown_op``             ``op`` is not one of ``subscribe``, ``unsubscribe``, ``ping``,
                           ``ack``, ``snooze``, ``unsnooze``
``unknown_channel``        ``channel`` is not ``figures`` or ``alerts``
``unknown_scope``          ``scope`` is not ``centre``, ``queue``, ``channel``, ``direction``
``duplicate_sub``          the ``sub`` id is already in use on this connection
``already_subscribed``     a subscription with the same channel/centre/scope/window exists
``too_many_subscriptions`` the connection already has ``max_subscriptions`` subscriptions
``rate_limited``           the request came above the rate limit and was not handled
``unknown_sub``            ``unsubscribe`` names no subscription of this connection
``unknown_alert``          ``ack`` names an alert id the gateway has never seen
``not_firing``             ``ack`` names an alert that is not firing (it resolved)
``unavailable``            the record could not be written to ``callcost-control`` (Kafka
                           down): nothing changed, try again
``forbidden``              the connection's token has a role that may not make this request
                           (HTTP: 403; also a refused ``Origin``)
``unauthorized``           HTTP only (401): no valid token where the gateway needs one
=========================  =================================================================
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from callcost.errors import CallcostError, ProtocolError

if TYPE_CHECKING:
    from callcost.web.control import ControlStore, Record

SCOPES: tuple[str, ...] = ("centre", "queue", "channel", "direction")
CHANNELS: tuple[str, ...] = ("figures", "alerts")
OPS: tuple[str, ...] = ("subscribe", "unsubscribe", "ping", "ack", "snooze", "unsnooze")
#: the ops that write to the control topic (the shell completes them)
CONTROL_OPS: tuple[str, ...] = ("ack", "snooze", "unsnooze")
ALERT_STATES: tuple[str, ...] = ("firing", "resolved")
DIRECTIONS: tuple[str, ...] = ("above", "below")

#: every error code a client can get, with what it means
ERRORS: dict[str, str] = {
    "invalid_json": "the frame is not JSON",
    "not_an_object": "the JSON value is not an object",
    "missing_field": "a required field is absent",
    "wrong_type": "a field has the wrong JSON type",
    "invalid_value": "a field breaks its rule",
    "unknown_op": "op is not subscribe, unsubscribe, ping, ack, snooze or unsnooze",
    "unknown_channel": "channel is not figures or alerts",
    "unknown_scope": "scope is not centre, queue, channel or direction",
    "duplicate_sub": "the sub id is already in use on this connection",
    "already_subscribed": "the same subscription exists on this connection",
    "too_many_subscriptions": "the connection has reached its subscription limit",
    "rate_limited": "the request came above the rate limit and was not handled",
    "unknown_sub": "no such subscription on this connection",
    "unknown_parameter": "an HTTP query parameter is not one the path takes",
    "unknown_alert": "ack names no alert the gateway knows",
    "not_firing": "ack names an alert that is not firing (any more)",
    "unavailable": "the control topic could not be written; try again",
    "forbidden": "the token's role may not make this request",
    "unauthorized": "no valid token (HTTP 401)",
}

MAX_SUBSCRIPTIONS = 64
#: figures updates are conflated once this many messages wait for one client
SOFT_LIMIT = 64
#: a client with more than this many messages waiting is disconnected (close code 1013)
HARD_LIMIT = 1024

#: requests per second per connection on average, and the burst above it
MAX_REQUESTS_PER_S = 20.0
REQUEST_BURST = 100

_CENTRE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: alert ids, rules and keys in requests
MAX_NAME = 256
_WINDOW = re.compile(r"today|[1-9][0-9]{0,8}[smh]")


class RequestError(ProtocolError):
    """A client request that cannot be served; ``code`` is one of :data:`ERRORS`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadMessage(CallcostError):
    """A message on a gateway topic that breaks its format; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def show(value: Any) -> str:
    """A short JSON rendering of ``value`` for an error message."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as UTF-8 JSON, ready for a text frame or an HTTP body."""
    return orjson.dumps(message)


# --------------------------------------------------------------------------- fields


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_centre(value: Any, field: str = "centre") -> str:
    if not isinstance(value, str):
        raise RequestError("wrong_type", f"'{field}' must be a string, got {show(value)}")
    if not _CENTRE.fullmatch(value):
        raise RequestError(
            "invalid_value",
            f"'{field}' must be 1-64 characters of A-Z a-z 0-9 . _ -, got {show(value)}",
        )
    return value


def check_scope(value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError("wrong_type", f"'scope' must be a string, got {show(value)}")
    if value not in SCOPES:
        raise RequestError(
            "unknown_scope", f"unknown scope {show(value)}; expected one of {', '.join(SCOPES)}"
        )
    return value


def check_window(value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError("wrong_type", f"'window' must be a string, got {show(value)}")
    if not _WINDOW.fullmatch(value):
        raise RequestError(
            "invalid_value",
            f"'window' must be 'today' or a length like '15m', '1h', '90s', got {show(value)}",
        )
    return value


def check_name(value: Any, field: str) -> str:
    """A rule or key (any non-empty string of at most :data:`MAX_NAME` characters)."""
    if not isinstance(value, str):
        raise RequestError("wrong_type", f"'{field}' must be a string, got {show(value)}")
    if not 1 <= len(value) <= MAX_NAME:
        raise RequestError(
            "invalid_value", f"'{field}' must be 1-{MAX_NAME} characters, got {show(value)}"
        )
    return value


def check_state(value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError("wrong_type", f"'state' must be a string, got {show(value)}")
    if value not in ALERT_STATES:
        raise RequestError(
            "invalid_value", f"'state' must be firing or resolved, got {show(value)}"
        )
    return value


def _optional(request: Mapping[str, Any], field: str, check: Any) -> Any:
    value = request.get(field)
    return None if value is None else check(value)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class FiguresMessage:
    """One ``cost-figures`` message: every figure of ``centre`` at ``as_of``."""

    centre: str
    as_of: int
    figures: tuple[dict[str, Any], ...]


def _load_object(value: bytes | str, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage("invalid_json", f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadMessage("not_an_object", f"{what} is not a JSON object: {show(data)}")
    return data


def _need(data: Mapping[str, Any], field: str, ok: Any, rule: str, where: str) -> Any:
    if field not in data:
        raise BadMessage("missing_field", f"{where} has no '{field}'")
    value = data[field]
    if not ok(value):
        raise BadMessage("invalid_value", f"{where} '{field}' must be {rule}, got {show(value)}")
    return value


def _good_centre(v: Any) -> bool:
    return isinstance(v, str) and _CENTRE.fullmatch(v) is not None


def _nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def parse_figures(value: bytes | str) -> FiguresMessage:
    """Decode and check one ``cost-figures`` message value; raises :class:`BadMessage`.

    The identity of every figure (centre, scope, key, window) is checked, since the store
    and the subscriptions key on it; the other fields are passed through as they are.
    """
    data = _load_object(value, "figures message")
    where = "figures message"
    _need(data, "type", lambda v: v == "figures", "'figures'", where)
    centre = _need(data, "centre", _good_centre, "a centre id", where)
    as_of = _need(data, "as_of", _is_int, "an integer (ms)", where)
    figures = _need(data, "figures", lambda v: isinstance(v, list), "a list", where)
    out: list[dict[str, Any]] = []
    for i, figure in enumerate(figures):
        # the usual case first, without building a single error text
        if (
            type(figure) is dict
            and figure.get("centre") == centre
            and figure.get("scope") in SCOPES
            and _nonempty_str(figure.get("key"))
            and _nonempty_str(figure.get("window"))
            and ("as_of" not in figure or _is_int(figure["as_of"]))
        ):
            out.append(figure)
            continue
        at = f"figure {i} of {centre}@{as_of}"
        if not isinstance(figure, dict):
            raise BadMessage("not_an_object", f"{at} is not a JSON object: {show(figure)}")
        _need(figure, "centre", lambda v: v == centre, f"the message's centre {show(centre)}", at)
        _need(figure, "scope", lambda v: v in SCOPES, f"one of {', '.join(SCOPES)}", at)
        _need(figure, "key", _nonempty_str, "a non-empty string", at)
        _need(figure, "window", _nonempty_str, "a non-empty string", at)
        if "as_of" in figure and not _is_int(figure["as_of"]):
            raise BadMessage("invalid_value", f"{at} 'as_of' must be an integer")
        out.append(figure)
    return FiguresMessage(centre, as_of, tuple(out))


def parse_alert(value: bytes | str) -> dict[str, Any]:
    """Decode and check one ``cost-alerts`` message value (SPEC section 5)."""
    data = _load_object(value, "alert message")
    where = "alert message"
    _need(data, "type", lambda v: v == "alert", "'alert'", where)
    alert_id = _need(data, "id", _nonempty_str, "a non-empty string", where)
    where = f"alert {show(alert_id)}"
    _need(data, "state", lambda v: v in ALERT_STATES, "'firing' or 'resolved'", where)
    _need(data, "centre", _good_centre, "a centre id", where)
    _need(data, "rule", _nonempty_str, "a non-empty string", where)
    _need(data, "scope", lambda v: v in SCOPES, f"one of {', '.join(SCOPES)}", where)
    _need(data, "key", _nonempty_str, "a non-empty string", where)
    _need(data, "window", _nonempty_str, "a non-empty string", where)
    _need(data, "direction", lambda v: v in DIRECTIONS, "'above' or 'below'", where)
    for field in ("value", "low", "high"):
        _need(data, field, lambda v: v is None or _is_number(v), "a number or null", where)
    _need(data, "handled", lambda v: v is None or _is_int(v), "an integer or null", where)
    _need(data, "since", _is_int, "an integer (ms)", where)
    _need(data, "at", _is_int, "an integer (ms)", where)
    return data


# --------------------------------------------------------------------------- stores


FigureId = tuple[str, str, str]  # (scope, key, window)


class FigureStore:
    """The latest figures message of every centre (see the module docstring)."""

    def __init__(self) -> None:
        self._centres: dict[str, tuple[int, dict[FigureId, dict[str, Any]]]] = {}

    def apply(self, message: FiguresMessage) -> bool:
        """Take ``message``; False when it is older than what is held for its centre."""
        held = self._centres.get(message.centre)
        if held is not None and message.as_of < held[0]:
            return False
        figures = {(f["scope"], f["key"], f["window"]): f for f in message.figures}
        self._centres[message.centre] = (message.as_of, figures)
        return True

    def centres(self) -> list[str]:
        return sorted(self._centres)

    def as_of(self, centre: str) -> int | None:
        held = self._centres.get(centre)
        return None if held is None else held[0]

    def query(
        self, centre: str | None = None, scope: str | None = None, window: str | None = None
    ) -> list[dict[str, Any]]:
        """The figures held, any filter optional (None: all)."""
        names = self.centres() if centre is None else [centre]
        out: list[dict[str, Any]] = []
        for name in names:
            held = self._centres.get(name)
            if held is not None:
                out.extend(select(held[1].values(), scope, window))
        return out

    def __len__(self) -> int:
        return sum(len(held[1]) for held in self._centres.values())


def select(
    figures: Iterable[dict[str, Any]], scope: str | None, window: str | None
) -> list[dict[str, Any]]:
    return [
        f
        for f in figures
        if (scope is None or f["scope"] == scope) and (window is None or f["window"] == window)
    ]


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alert messages a subscription or a query takes; None takes every value."""

    centre: str | None = None
    scope: str | None = None
    rule: str | None = None
    key: str | None = None
    state: str | None = None

    def takes(self, alert: Mapping[str, Any]) -> bool:
        return (
            (self.centre is None or alert["centre"] == self.centre)
            and (self.scope is None or alert["scope"] == self.scope)
            and (self.rule is None or alert["rule"] == self.rule)
            and (self.key is None or alert["key"] == self.key)
            and (self.state is None or alert["state"] == self.state)
        )

    def takes_ack(self, ack: Mapping[str, Any]) -> bool:
        """An ack goes where its alert goes, whatever the state filter."""
        return (
            (self.centre is None or ack["centre"] == self.centre)
            and (self.scope is None or ack["scope"] == self.scope)
            and (self.rule is None or ack["rule"] == self.rule)
            and (self.key is None or ack["key"] == self.key)
        )

    def takes_snooze(self, snooze: Mapping[str, Any]) -> bool:
        """A snooze names no scope: the scope and state filters do not apply."""
        return (
            (self.centre is None or snooze["centre"] == self.centre)
            and (self.rule is None or snooze["rule"] == self.rule)
            and (self.key is None or snooze["key"] == self.key)
        )


class AlertStore:
    """Every alert message in arrival order, and the alerts firing now."""

    def __init__(self) -> None:
        self._history: list[dict[str, Any]] = []
        self._firing: dict[str, dict[str, Any]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._ids: set[str] = set()

    def apply(self, alert: dict[str, Any]) -> bool:
        """Take ``alert`` (from :func:`parse_alert`); False when it is a duplicate."""
        mark = (alert["id"], alert["state"])
        if mark in self._seen:
            return False
        self._seen.add(mark)
        self._ids.add(alert["id"])
        self._history.append(alert)
        if alert["state"] == "firing":
            if (alert["id"], "resolved") not in self._seen:
                self._firing[alert["id"]] = alert
        else:
            self._firing.pop(alert["id"], None)
        return True

    def query(
        self,
        centre: str | None = None,
        state: str = "firing",
        *,
        since: int | None = None,
        until: int | None = None,
        match: AlertFilter | None = None,
    ) -> list[dict[str, Any]]:
        """``firing``: the alerts firing now, in the order they fired; ``all``: every
        alert message, oldest first (by ``at``, then arrival). ``since`` <= ``at`` <
        ``until`` when given; ``match`` filters further."""
        if state == "firing":
            source: Iterable[dict[str, Any]] = self._firing.values()
        else:
            source = sorted(self._history, key=lambda a: a["at"])
        return [
            a
            for a in source
            if (centre is None or a["centre"] == centre)
            and (since is None or a["at"] >= since)
            and (until is None or a["at"] < until)
            and (match is None or match.takes(a))
        ]

    def firing(self, alert_id: str) -> dict[str, Any] | None:
        """The ``firing`` message of ``alert_id`` while it fires, else None."""
        return self._firing.get(alert_id)

    def known(self, alert_id: str) -> bool:
        return alert_id in self._ids

    def __len__(self) -> int:
        return len(self._history)

    @property
    def firing_count(self) -> int:
        return len(self._firing)


# --------------------------------------------------------------------------- HTTP queries


def _params(params: Mapping[str, list[str]], allowed: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, values in params.items():
        if name not in allowed:
            raise RequestError(
                "unknown_parameter",
                f"unknown parameter {show(name)}; expected {', '.join(allowed)}",
            )
        out[name] = values[-1] if values and values[-1] != "" else None
    return out


def figures_query(params: Mapping[str, list[str]]) -> tuple[str | None, str | None, str | None]:
    """(centre, scope, window) of ``GET /api/figures`` from its parsed query string."""
    p = _params(params, ("centre", "scope", "window"))
    return (
        _optional(p, "centre", check_centre),
        _optional(p, "scope", check_scope),
        _optional(p, "window", check_window),
    )


def _ms(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"-?[0-9]{1,15}", value):
        raise RequestError(
            "invalid_value", f"'{field}' must be a time in ms since the epoch, got {show(value)}"
        )
    return int(value)


def alerts_query(
    params: Mapping[str, list[str]],
) -> tuple[str | None, str, int | None, int | None]:
    """(centre, state, since, until) of ``GET /api/alerts`` from its parsed query string."""
    p = _params(params, ("centre", "state", "since", "until"))
    state = p.get("state") or "firing"
    if state not in ("firing", "all"):
        raise RequestError("invalid_value", f"'state' must be firing or all, got {show(state)}")
    since, until = _ms(p.get("since"), "since"), _ms(p.get("until"), "until")
    return _optional(p, "centre", check_centre), state, since, until


def snoozes_query(params: Mapping[str, list[str]]) -> str | None:
    """The centre of ``GET /api/snoozes`` (None: every centre)."""
    return _optional(_params(params, ("centre",)), "centre", check_centre)


# --------------------------------------------------------------------------- sessions


class FiguresUpdate:
    """A new figures message on its way to the sessions.

    The figures selected for one (scope, window) are encoded once and shared by every
    subscription with that filter, so fanning a message out to many clients costs one
    small envelope per client, not one encoding of the figures each.
    """

    __slots__ = ("_cache", "message")

    def __init__(self, message: FiguresMessage) -> None:
        self.message = message
        self._cache: dict[tuple[str | None, str | None], orjson.Fragment] = {}

    def figures(self, scope: str | None, window: str | None) -> orjson.Fragment:
        key = (scope, window)
        fragment = self._cache.get(key)
        if fragment is None:
            fragment = orjson.Fragment(orjson.dumps(select(self.message.figures, scope, window)))
            self._cache[key] = fragment
        return fragment


@dataclass(eq=False, slots=True)
class Subscription:
    sub: str
    channel: str
    centre: str | None
    scope: str | None = None
    window: str | None = None
    #: alerts only: the alert filter (its centre and scope are the two above)
    rule: str | None = None
    key: str | None = None
    state: str | None = None
    #: the seq of the next message sent on this subscription
    seq: int = 0
    #: the update waiting to be sent, if any (the one a newer update replaces)
    waiting: _Entry | None = None
    match: AlertFilter = dataclasses.field(init=False, default=AlertFilter())

    def __post_init__(self) -> None:
        self.match = AlertFilter(self.centre, self.scope, self.rule, self.key, self.state)

    @property
    def filters(self) -> tuple[str | None, ...]:
        return (self.channel, self.centre, self.scope, self.window, self.rule, self.key, self.state)

    def describe(self) -> str:
        if self.channel == "figures":
            return (
                f"figures centre {show(self.centre)} scope {show(self.scope)} "
                f"window {show(self.window)}"
            )
        return (
            f"alerts centre {show(self.centre)} scope {show(self.scope)} rule "
            f"{show(self.rule)} key {show(self.key)} state {show(self.state)}"
        )


@dataclass(eq=False, slots=True)
class PendingWrite:
    """A request that writes a control record: the shell writes :attr:`record` to the
    control topic, then calls :meth:`Session.written` (or :meth:`Session.write_failed`),
    which queues the reply; the next request is read only after that."""

    op: str
    record: Record
    #: ``acked``, ``snoozed`` or ``unsnoozed``
    reply_type: str

    @property
    def kind(self) -> str:
        """``ack`` or ``snooze``: the reply's field that holds the record."""
        return "ack" if self.op == "ack" else "snooze"


def control_request(
    op: str, request: Mapping[str, Any], alerts: AlertStore, now_ms: int
) -> PendingWrite:
    """Check an ``ack``, ``snooze`` or ``unsnooze`` request (websocket or REST) and
    make its record; raises :class:`RequestError`."""
    from callcost.web import control

    if op == "ack":
        return PendingWrite(op, control.ack_record(request, alerts, now_ms), "acked")
    record = control.snooze_record(request, now_ms, cancel=op == "unsnooze")
    cancelled = record.value["until"] <= record.value["at"]
    return PendingWrite(op, record, "unsnoozed" if cancelled else "snoozed")


class RequestLimiter:
    """A token bucket for one connection's requests: ``rate_per_s`` on average, up to
    ``burst`` at once. Time is an argument (seconds on any monotonic clock).

    :meth:`take` says whether a request may be handled; :attr:`refused_in_a_row` counts
    the requests refused since the last one taken, and :attr:`abusive` is true once
    more than ``burst`` were refused in a row (the client ignores the errors).
    """

    __slots__ = ("_at_s", "_tokens", "burst", "rate_per_s", "refused_in_a_row")

    def __init__(self, rate_per_s: float = MAX_REQUESTS_PER_S, burst: int = REQUEST_BURST) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, not {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at_s: float | None = None
        self.refused_in_a_row = 0

    def take(self, now_s: float) -> bool:
        if self._at_s is not None and now_s > self._at_s:
            self._tokens = min(self.burst, self._tokens + (now_s - self._at_s) * self.rate_per_s)
        if self._at_s is None or now_s > self._at_s:
            self._at_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False

    @property
    def abusive(self) -> bool:
        return self.refused_in_a_row > self.burst


#: what each permission allows, for the ``forbidden`` messages
PERMISSION_TEXT: dict[str, str] = {
    "figures": "subscribe to figures",
    "alerts": "subscribe to alerts",
    "ack": "acknowledge alerts",
    "snooze": "snooze or unsnooze rules",
}


def permission_of(request: Mapping[str, Any]) -> str | None:
    """The permission a websocket request needs (``callcost.web.access``), None for one
    any connection may make (``ping``, ``unsubscribe``, and requests that are wrong
    anyway: those get their own error)."""
    op = request.get("op")
    if op == "subscribe":
        channel = request.get("channel")
        return channel if channel in CHANNELS else None
    if op == "ack":
        return "ack"
    if op in ("snooze", "unsnooze"):
        return "snooze"
    return None


@dataclass(eq=False, slots=True)
class _Entry:
    """One message waiting to be sent; ``seq`` is stamped when it leaves."""

    sub: Subscription | None
    body: dict[str, Any]
    kind: str  # "reply", "snapshot", "update", "alert"


class Session:
    """The protocol state of one websocket connection.

    Requests go in through :meth:`receive`, topic messages through :meth:`on_figures` and
    :meth:`on_alert`; everything to send waits in one outbox, read by :meth:`next_frame`,
    so a reply and the updates of a subscription always leave in the order they were
    made. The outbox conflates figures updates once ``soft_limit`` messages wait, and
    sets :attr:`overflowed` once more than ``hard_limit`` wait: the caller then closes
    the connection.
    """

    def __init__(
        self,
        figures: FigureStore,
        alerts: AlertStore,
        control: ControlStore | None = None,
        *,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
        soft_limit: int = SOFT_LIMIT,
        hard_limit: int = HARD_LIMIT,
        permissions: frozenset[str] | None = None,
        role: str | None = None,
    ) -> None:
        """``permissions`` (``callcost.web.access``; None: every one) are what the
        connection's token allows, ``role`` its name for the ``forbidden`` messages."""
        if control is None:
            from callcost.web.control import ControlStore

            control = ControlStore()
        self.figures = figures
        self.alerts = alerts
        self.control = control
        self.max_subscriptions = max_subscriptions
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.permissions = permissions
        self.role = role
        self.subscriptions: dict[str, Subscription] = {}
        self.overflowed = False
        #: figures updates replaced by a newer one before they were sent
        self.conflated = 0
        self._outbox: deque[_Entry] = deque()
        self._next_id = 1
        self._now: int | None = None

    # ----------------------------------------------------------------- requests

    def receive(
        self, frame: str | bytes, now_ms: int | None = None
    ) -> dict[str, Any] | PendingWrite:
        """Handle one client frame; queue its reply and return it (before its seq).

        ``now_ms`` is the gateway's clock: the time of acks and snoozes, and what tells
        the active snoozes of an alerts snapshot. An ``ack``, ``snooze`` or ``unsnooze``
        that is correct returns a :class:`PendingWrite` and queues nothing yet.
        """
        request: Any = None
        self._now = now_ms
        try:
            try:
                request = orjson.loads(frame)
            except orjson.JSONDecodeError as exc:
                raise RequestError("invalid_json", f"the frame is not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise RequestError(
                    "not_an_object", f"a request must be a JSON object, got {show(request)}"
                )
            self._check_permission(request)
            if request.get("op") in CONTROL_OPS:
                if now_ms is None:
                    raise ValueError("a control request needs now_ms")
                return control_request(request["op"], request, self.alerts, now_ms)
            reply = self._dispatch(request)
        except RequestError as exc:
            return self._error(request, exc.code, exc.message)
        return reply

    def _check_permission(self, request: dict[str, Any]) -> None:
        """Raise ``forbidden`` when the connection's role may not make ``request``."""
        if self.permissions is None:
            return
        needed = permission_of(request)
        if needed is not None and needed not in self.permissions:
            what = PERMISSION_TEXT.get(needed, needed)
            raise RequestError(
                "forbidden", f"the role {show(self.role)} of this connection may not {what}"
            )

    def refuse(self, frame: str | bytes, code: str, message: str) -> dict[str, Any]:
        """Answer ``frame`` with the error ``code`` without handling it (rate limit);
        the reply names the request's ``op`` and ``sub`` when the frame has them."""
        try:
            request: Any = orjson.loads(frame)
        except orjson.JSONDecodeError:
            request = None
        return self._error(request, code, message)

    def _error(self, request: Any, code: str, message: str) -> dict[str, Any]:
        reply: dict[str, Any] = {"type": "error", "error": code, "message": message}
        op = request.get("op") if isinstance(request, dict) else None
        reply["request"] = op if isinstance(op, str) else None
        sub = request.get("sub") if isinstance(request, dict) else None
        if isinstance(sub, str):
            reply["sub"] = sub
        self._push(_Entry(None, reply, "reply"))
        return reply

    def written(self, pending: PendingWrite, record: dict[str, Any]) -> dict[str, Any]:
        """``pending``'s record is in the control topic: queue and return its reply."""
        reply = {"type": pending.reply_type, pending.kind: record}
        self._push(_Entry(None, reply, "reply"))
        return reply

    def write_failed(self, pending: PendingWrite, message: str) -> dict[str, Any]:
        """``pending``'s record could not be written: queue and return an error."""
        return self._error({"op": pending.op}, "unavailable", message)

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op is None:
            raise RequestError("missing_field", "a request needs 'op'")
        if not isinstance(op, str):
            raise RequestError("wrong_type", f"'op' must be a string, got {show(op)}")
        if op == "subscribe":
            return self._subscribe(request)
        if op == "unsubscribe":
            return self._unsubscribe(request)
        if op == "ping":
            reply = {"type": "pong"}
            if request.get("id") is not None:
                reply["id"] = request["id"]
            self._push(_Entry(None, reply, "reply"))
            return reply
        raise RequestError("unknown_op", f"unknown op {show(op)}; expected {', '.join(OPS)}")

    def _filters(self, request: dict[str, Any]) -> Subscription:
        """The subscription a request describes, with its sub id still unset."""
        channel = request.get("channel")
        if channel is None:
            raise RequestError("missing_field", "a subscription needs 'channel'")
        if not isinstance(channel, str):
            raise RequestError("wrong_type", f"'channel' must be a string, got {show(channel)}")
        if channel == "figures":
            if request.get("centre") is None:
                raise RequestError("missing_field", "a figures subscription needs 'centre'")
            return Subscription(
                "",
                channel,
                check_centre(request["centre"]),
                _optional(request, "scope", check_scope),
                _optional(request, "window", check_window),
            )
        if channel == "alerts":
            return Subscription(
                "",
                channel,
                _optional(request, "centre", check_centre),
                _optional(request, "scope", check_scope),
                None,
                _optional(request, "rule", lambda v: check_name(v, "rule")),
                _optional(request, "key", lambda v: check_name(v, "key")),
                _optional(request, "state", check_state),
            )
        raise RequestError(
            "unknown_channel",
            f"unknown channel {show(channel)}; expected {', '.join(CHANNELS)}",
        )

    def _check_sub(self, request: dict[str, Any]) -> str | None:
        sub = request.get("sub")
        if sub is None:
            return None
        if not isinstance(sub, str):
            raise RequestError("wrong_type", f"'sub' must be a string, got {show(sub)}")
        if not 1 <= len(sub) <= 64:
            raise RequestError("invalid_value", f"'sub' must be 1-64 characters, got {show(sub)}")
        return sub

    def _subscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        subscription = self._filters(request)
        sub = self._check_sub(request)
        if sub is not None and sub in self.subscriptions:
            raise RequestError("duplicate_sub", f"sub {show(sub)} is already in use")
        for other in self.subscriptions.values():
            if other.filters == subscription.filters:
                raise RequestError(
                    "already_subscribed",
                    f"already subscribed to {other.describe()} as sub {show(other.sub)}",
                )
        if len(self.subscriptions) >= self.max_subscriptions:
            raise RequestError(
                "too_many_subscriptions",
                f"at most {self.max_subscriptions} subscriptions per connection",
            )
        if sub is None:
            while f"s{self._next_id}" in self.subscriptions:
                self._next_id += 1
            sub = f"s{self._next_id}"
            self._next_id += 1
        subscription.sub = sub
        self.subscriptions[sub] = subscription
        if subscription.channel == "figures":
            centre = subscription.centre
            assert centre is not None
            snapshot: dict[str, Any] = {
                "type": "snapshot",
                "sub": sub,
                "channel": "figures",
                "seq": None,
                "centre": centre,
                "scope": subscription.scope,
                "window": subscription.window,
                "as_of": self.figures.as_of(centre),
                "figures": self.figures.query(centre, subscription.scope, subscription.window),
            }
        else:
            now, match = self._now, subscription.match
            firing = self.alerts.query(match=match) if match.state != "resolved" else []
            snapshot = {
                "type": "snapshot",
                "sub": sub,
                "channel": "alerts",
                "seq": None,
                "centre": subscription.centre,
                "scope": subscription.scope,
                "rule": subscription.rule,
                "key": subscription.key,
                "state": subscription.state,
                "alerts": [self.control.with_ack_and_snooze(a, now) for a in firing],
                "snoozes": self.control.snoozes(
                    now, subscription.centre, subscription.rule, subscription.key
                ),
            }
        self._push(_Entry(subscription, snapshot, "snapshot"))
        return snapshot

    def _unsubscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        sub = self._check_sub(request)
        if sub is not None:
            subscription = self.subscriptions.get(sub)
            if subscription is None:
                raise RequestError("unknown_sub", f"no subscription {show(sub)}")
        elif request.get("channel") is None:
            raise RequestError("missing_field", "unsubscribe needs 'sub' or 'channel'")
        else:
            wanted = self._filters(request)
            found = [s for s in self.subscriptions.values() if s.filters == wanted.filters]
            if not found:
                raise RequestError("unknown_sub", f"no subscription to {wanted.describe()}")
            subscription = found[0]
        del self.subscriptions[subscription.sub]
        self._outbox = deque(e for e in self._outbox if e.sub is not subscription)
        reply = {"type": "unsubscribed", "sub": subscription.sub}
        self._push(_Entry(None, reply, "reply"))
        return reply

    # ----------------------------------------------------------------- topic messages

    def on_figures(self, update: FiguresUpdate) -> int:
        """Queue ``update`` for every figures subscription to its centre; returns how many."""
        message = update.message
        count = 0
        for subscription in self.subscriptions.values():
            if subscription.channel != "figures" or subscription.centre != message.centre:
                continue
            count += 1
            figures = update.figures(subscription.scope, subscription.window)
            waiting = subscription.waiting
            if waiting is not None and len(self._outbox) >= self.soft_limit:
                waiting.body["as_of"] = message.as_of
                waiting.body["figures"] = figures
                self.conflated += 1
                continue
            body = {
                "type": "update",
                "sub": subscription.sub,
                "channel": "figures",
                "seq": None,
                "centre": message.centre,
                "as_of": message.as_of,
                "figures": figures,
            }
            entry = _Entry(subscription, body, "update")
            subscription.waiting = entry
            self._push(entry)
        return count

    def on_alert(self, alert: dict[str, Any]) -> int:
        """Queue ``alert`` for every alerts subscription that takes it; returns how many."""
        count = 0
        for subscription in self.subscriptions.values():
            if subscription.channel != "alerts" or not subscription.match.takes(alert):
                continue
            count += 1
            body = {"type": "alert", "sub": subscription.sub, "seq": None}
            body.update((k, v) for k, v in alert.items() if k not in body)
            self._push(_Entry(subscription, body, "alert"))
        return count

    def on_control(self, record: dict[str, Any]) -> int:
        """Queue an ack or a snooze (a control record the store took) for every alerts
        subscription that takes it; returns how many."""
        kind = record["type"]
        count = 0
        for subscription in self.subscriptions.values():
            if subscription.channel != "alerts":
                continue
            match = subscription.match
            if not (match.takes_ack(record) if kind == "ack" else match.takes_snooze(record)):
                continue
            count += 1
            body = {"type": kind, "sub": subscription.sub, "seq": None}
            body.update((k, v) for k, v in record.items() if k not in body)
            self._push(_Entry(subscription, body, "alert"))
        return count

    # ----------------------------------------------------------------- outbox

    def _push(self, entry: _Entry) -> None:
        if self.overflowed:
            return  # the connection is being closed: queue nothing more
        self._outbox.append(entry)
        if len(self._outbox) > self.hard_limit:
            self.overflowed = True

    @property
    def pending(self) -> int:
        """How many messages wait to be sent."""
        return len(self._outbox)

    def next_message(self) -> dict[str, Any] | None:
        """The next message to send, its seq stamped, or None when none waits.

        Figures in updates are pre-encoded (:class:`orjson.Fragment`); use
        :func:`encode` on the result, or :meth:`next_frame`.
        """
        if not self._outbox:
            return None
        entry = self._outbox.popleft()
        subscription = entry.sub
        if subscription is not None:
            entry.body["seq"] = subscription.seq
            subscription.seq += 1
            if subscription.waiting is entry:
                subscription.waiting = None
        return entry.body

    def next_frame(self) -> bytes | None:
        """The next message to send as UTF-8 JSON, or None when none waits."""
        message = self.next_message()
        return None if message is None else encode(message)
