"""Events (SPEC section 1): parse and validate one Kafka message.

``parse(key, value)`` returns an :class:`Event` or raises :class:`EventError` whose
``reason`` is one of :data:`REASONS`; the worker writes the rejected message unchanged to
the dead-letter topic with that reason. Pure module: no I/O.

Whatever the bytes, ``parse`` raises nothing but :class:`EventError` (``tests/test_fuzz.py``
checks it on random and mutated input), and the error's detail is at most
:data:`MAX_DETAIL_CHARS` characters: it never echoes a long value. Edge cases, decided:

* no value at all (``None``, a Kafka tombstone) and an empty value are ``invalid_json``;
* a byte order mark, ``NaN``, ``Infinity``, a number beyond a double, nesting deeper than
  1024, a lone surrogate escape (``"\\ud800"``) are ``invalid_json`` (orjson refuses them);
  invalid UTF-8 anywhere is ``invalid_utf8``;
* an integer beyond 64 bits comes out of orjson as a float: ``ts`` is then ``wrong_type``;
* a name repeated in the object: the last one counts (orjson's rule), as if the others
  were not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from callcost.errors import EventError
from callcost.streams.vocabulary import CALL_CHANNELS, CALL_DIRECTIONS, OUTCOMES

#: every reject reason, with what it means
REASONS: dict[str, str] = {
    "invalid_utf8": "the message value is not UTF-8",
    "invalid_json": "the message value is not JSON",
    "not_an_object": "the JSON value is not an object",
    "missing_field": "a required field is absent",
    "wrong_type": "a field has the wrong JSON type",
    "invalid_value": "a field's value breaks its rule (length, characters, range)",
    "unknown_type": "the event type is not one of SPEC section 1",
    "key_mismatch": "the Kafka message key is not the event's centre",
    # not in SPEC section 1, a product rule of the live worker (stream.max_future_ms):
    "future_ts": "ts is further ahead of the worker's clock than stream.max_future_ms",
}

# event type codes, small ints so the engine can switch on them cheaply
LOGIN, LOGOUT, OFFERED, ANSWERED, ENDED, WRAPPED, OUTCOME = range(7)
TYPES: dict[str, int] = {
    "agent.login": LOGIN,
    "agent.logout": LOGOUT,
    "call.offered": OFFERED,
    "call.answered": ANSWERED,
    "call.ended": ENDED,
    "call.wrapped": WRAPPED,
    "call.outcome": OUTCOME,
}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
_REQUIRED: dict[int, tuple[str, ...]] = {
    LOGIN: ("agent",),
    LOGOUT: ("agent",),
    OFFERED: ("call", "queue"),
    ANSWERED: ("call", "agent"),
    ENDED: ("call",),
    WRAPPED: ("call",),
    OUTCOME: ("call", "outcome"),
}
MAX_TS = 2**53
#: longest ``EventError.detail``; the worker puts it in a DLQ header
MAX_DETAIL_CHARS = 200
# hashable-only look-ups for the fast path: a str subclass or an unhashable value is
# left to parse_strict by the ``type(x) is str`` checks before them
_DIRECTION_SET = frozenset(CALL_DIRECTIONS)
_CHANNEL_SET = frozenset(CALL_CHANNELS)
_OUTCOME_SET = frozenset(OUTCOMES)
_CENTRE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_VALID_CENTRES: set[str] = set()  # centres seen valid: a set look-up beats the regex


def _valid_centre(centre: str) -> bool:
    if not _CENTRE_RE.fullmatch(centre):
        return False
    if len(_VALID_CENTRES) < 100_000:
        _VALID_CENTRES.add(centre)
    return True


@dataclass(slots=True)
class Event:
    """One valid event. Treat it as immutable: it is not frozen only because a frozen
    dataclass takes several times longer to make, and the worker makes one an event."""

    id: str
    type: int
    ts: int
    centre: str
    agent: str | None = None
    team: str | None = None
    call: str | None = None
    queue: str | None = None
    direction: str = "inbound"
    channel: str = "voice"
    outcome: str | None = None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.type]


def _string(obj: dict[str, object], name: str, max_len: int = 128) -> str:
    v = obj[name]
    if not isinstance(v, str):
        raise EventError("wrong_type", f"{name} must be a string, not {_show(v)}")
    if not 1 <= len(v) <= max_len:
        raise EventError("invalid_value", f"{name} must be 1-{max_len} characters, not {len(v)}")
    return v


def _choice(obj: dict[str, object], name: str, allowed: tuple[str, ...]) -> str:
    v = obj[name]
    if not isinstance(v, str):
        raise EventError("wrong_type", f"{name} must be a string, not {_show(v)}")
    if v not in allowed:
        raise EventError(
            "invalid_value", f"{name} must be one of {', '.join(allowed)}, not {_show(v)}"
        )
    return v


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def parse(key: bytes | None, value: bytes | None, *, check_key: bool = True) -> Event:
    """Validate one message. ``check_key`` False skips the key rule (files, replay).

    The fast path below only accepts: any doubt (a missing field, a wrong type or value,
    a bad key) hands the message to :func:`parse_strict`, which finds the reason. Types
    are compared with ``is`` (a bool is not an int; the checks are inline, not helper
    calls: this runs once an event). Both accept exactly the same messages and return
    the same events (tests/test_events_fast.py checks it on valid, mutated and random
    messages)."""
    if value is None:
        return parse_strict(key, value, check_key=check_key)
    try:
        obj = orjson.loads(value)
        eid = obj["id"]
        etype = TYPES[obj["type"]]
        ts = obj["ts"]
        centre = obj["centre"]
    except Exception:
        return parse_strict(key, value, check_key=check_key)
    if (
        type(eid) is not str or not 0 < len(eid) <= 128
        or type(ts) is not int or not 0 < ts < MAX_TS
        or type(centre) is not str or centre not in _VALID_CENTRES
        or (check_key and (key is None or key != centre.encode()))
    ):
        return parse_strict(key, value, check_key=check_key)
    get = obj.get
    if etype <= LOGOUT:
        agent = get("agent")
        if type(agent) is not str or not 0 < len(agent) <= 128:
            return parse_strict(key, value, check_key=check_key)
        team = get("team") if etype == LOGIN else None
        if team is not None and (type(team) is not str or not 0 < len(team) <= 128):
            return parse_strict(key, value, check_key=check_key)
        if team is None and etype == LOGIN and "team" in obj:
            return parse_strict(key, value, check_key=check_key)  # "team": null
        return Event(eid, etype, ts, centre, agent, team)
    call = get("call")
    if type(call) is not str or not 0 < len(call) <= 128:
        return parse_strict(key, value, check_key=check_key)
    if etype == OFFERED:
        queue = get("queue")
        direction = get("direction", "inbound")
        channel = get("channel", "voice")
        if (type(queue) is not str or not 0 < len(queue) <= 128
                or type(direction) is not str or direction not in _DIRECTION_SET
                or type(channel) is not str or channel not in _CHANNEL_SET):
            return parse_strict(key, value, check_key=check_key)
        return Event(eid, etype, ts, centre, None, None, call, queue, direction, channel)
    if etype == ANSWERED:
        agent = get("agent")
        if type(agent) is not str or not 0 < len(agent) <= 128:
            return parse_strict(key, value, check_key=check_key)
        return Event(eid, etype, ts, centre, agent, None, call)
    if etype == OUTCOME:
        outcome = get("outcome")
        if type(outcome) is not str or outcome not in _OUTCOME_SET:
            return parse_strict(key, value, check_key=check_key)
        return Event(eid, etype, ts, centre, None, None, call, None, "inbound", "voice",
                     outcome)
    return Event(eid, etype, ts, centre, None, None, call)


def parse_strict(key: bytes | None, value: bytes | None, *, check_key: bool = True) -> Event:
    """:func:`parse`, one rule after the other: the reference, and the reason of every
    reject."""
    if value is None:
        raise EventError("invalid_json", "the message has no value (a tombstone)")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("invalid_utf8", "the value is not valid UTF-8") from None
        raise EventError("invalid_json", f"not JSON: {str(exc)[:MAX_DETAIL_CHARS - 10]}") from None
    if not isinstance(obj, dict):
        raise EventError(
            "not_an_object", f"the value is a JSON {type(obj).__name__}, not an object"
        )
    for name in ("id", "type", "ts", "centre"):
        if name not in obj:
            raise EventError("missing_field", f"{name} is required")
    eid = _string(obj, "id")
    tname = obj["type"]
    if not isinstance(tname, str):
        raise EventError("wrong_type", f"type must be a string, not {_show(tname)}")
    etype = TYPES.get(tname)
    if etype is None:
        raise EventError("unknown_type", f"unknown event type {_show(tname)}")
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise EventError("wrong_type", f"ts must be an integer (ms since epoch), not {_show(ts)}")
    if not 0 < ts < MAX_TS:
        raise EventError("invalid_value", f"ts must be in (0, 2^53), not {ts}")
    centre = obj["centre"]
    if not isinstance(centre, str):
        raise EventError("wrong_type", f"centre must be a string, not {_show(centre)}")
    if centre not in _VALID_CENTRES and not _valid_centre(centre):
        raise EventError(
            "invalid_value", f"centre {_show(centre)} must be 1-64 chars of A-Z a-z 0-9 . _ -"
        )
    for name in _REQUIRED[etype]:
        if name not in obj:
            raise EventError("missing_field", f"{name} is required for {tname}")
    agent = team = call = queue = outcome = None
    direction, channel = "inbound", "voice"
    if etype <= LOGOUT:
        agent = _string(obj, "agent")
        if etype == LOGIN and "team" in obj:
            team = _string(obj, "team")
    else:
        call = _string(obj, "call")
        if etype == OFFERED:
            queue = _string(obj, "queue")
            if "direction" in obj:
                direction = _choice(obj, "direction", CALL_DIRECTIONS)
            if "channel" in obj:
                channel = _choice(obj, "channel", CALL_CHANNELS)
        elif etype == ANSWERED:
            agent = _string(obj, "agent")
        elif etype == OUTCOME:
            outcome = _choice(obj, "outcome", OUTCOMES)
    if check_key:
        if key is None:
            raise EventError(
                "key_mismatch", f"the message has no key; it must be the centre {centre!r}"
            )
        if key != centre.encode():
            raise EventError(
                "key_mismatch", f"the message key {_show(key)} is not the centre {centre!r}"
            )
    return Event(eid, etype, ts, centre, agent, team, call, queue, direction, channel, outcome)
