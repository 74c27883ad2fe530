"""The wire's checks: error codes, request and message errors, JSON, single fields. Pure.

Every request a client sends and every message the gateway reads from Kafka is checked
field by field with the functions here; a request that breaks a rule raises
:class:`RequestError` (its code one of :data:`ERRORS`), a topic message
:class:`BadMessage`. Scopes, alert states and the window syntax are those of
:mod:`callcost.streams.vocabulary`. ``docs/PROTOCOL.md`` is the protocol's full text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from callcost.errors import CallcostError, ProtocolError
from callcost.streams.vocabulary import ALERT_STATES, SCOPES, is_window

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

_CENTRE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: the longest alert id, rule or key in a request
MAX_NAME = 256


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


# --------------------------------------------------------------------------- predicates


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def good_centre(value: Any) -> bool:
    return isinstance(value, str) and _CENTRE.fullmatch(value) is not None


def nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


# --------------------------------------------------------------------------- request fields


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
    if not is_window(value):
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


def optional(request: Mapping[str, Any], field: str, check: Callable[[Any], Any]) -> Any:
    """``check(request[field])``, or None when the field is absent or null."""
    value = request.get(field)
    return None if value is None else check(value)


# --------------------------------------------------------------------------- message fields


def load_object(value: bytes | str, what: str) -> dict[str, Any]:
    """A topic message's JSON object; :class:`BadMessage` when it is not one."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage("invalid_json", f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadMessage("not_an_object", f"{what} is not a JSON object: {show(data)}")
    return data


def need(
    data: Mapping[str, Any], field: str, ok: Callable[[Any], bool], rule: str, where: str
) -> Any:
    """``data[field]`` when present and ``ok``; else :class:`BadMessage` naming ``rule``."""
    if field not in data:
        raise BadMessage("missing_field", f"{where} has no '{field}'")
    value = data[field]
    if not ok(value):
        raise BadMessage("invalid_value", f"{where} '{field}' must be {rule}, got {show(value)}")
    return value
