"""Acknowledgements, snoozes and webhook delivery records. Pure module: no I/O, no clock.

The gateway remembers nothing of its own: what people decide (an alert acknowledged, a
rule snoozed for a key) and what the webhook sinks have delivered is written to the
compacted ``callcost-control`` topic, and every gateway rebuilds a :class:`ControlStore`
from it at start, as it rebuilds the figures and the alerts from theirs.

Records, their keys and how the store orders them: ``docs/PROTOCOL.md``, "The control
topic". Besides the store, this module checks the ``ack``, ``snooze`` and ``unsnooze``
requests (websocket or REST) and makes their records (:func:`control_request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from callcost.streams.vocabulary import ALERT_STATES
from callcost.web.stores import AlertStore
from callcost.web.wire import (
    MAX_NAME,
    BadMessage,
    RequestError,
    check_centre,
    good_centre,
    is_int,
    load_object,
    need,
    nonempty_str,
    show,
)

#: the longest snooze, in seconds (30 days)
MAX_SNOOZE_S = 30 * 24 * 3600
MAX_BY = 128
MAX_NOTE = 2000

#: Position of a record in the topic: (partition, offset).
Position = tuple[int, int]


def ack_key(alert_id: str) -> str:
    return f"ack/{alert_id}"


def snooze_key(centre: str, rule: str, key: str) -> str:
    return f"snooze/{centre}/{rule}/{key}"


def sent_key(sink: str, alert_id: str, state: str) -> str:
    return f"sent/{sink}/{alert_id}/{state}"


@dataclass(frozen=True, slots=True)
class Record:
    """One control record to write: its Kafka key and its value."""

    key: str
    value: dict[str, Any]

    def encoded(self) -> tuple[bytes, bytes]:
        return self.key.encode(), orjson.dumps(self.value)


def snooze_active(snooze: Mapping[str, Any] | None, now_ms: int | None) -> bool:
    """True while ``snooze`` holds; with no clock (``now_ms`` None): not cancelled."""
    if snooze is None:
        return False
    return snooze["until"] > (snooze["at"] if now_ms is None else now_ms)


# --------------------------------------------------------------------------- requests


def _text(request: Mapping[str, Any], field: str, limit: int, *, required: bool) -> str | None:
    value = request.get(field)
    if value is None:
        if required:
            raise RequestError("missing_field", f"a request needs '{field}'")
        return None
    if not isinstance(value, str):
        raise RequestError("wrong_type", f"'{field}' must be a string, got {show(value)}")
    if not 1 <= len(value) <= limit:
        raise RequestError(
            "invalid_value", f"'{field}' must be 1-{limit} characters, got {show(value)}"
        )
    return value


def _by(request: Mapping[str, Any], principal: str | None) -> str:
    """Who makes ``request``: the token's name when the connection has one (what the
    client sends as ``by`` is then ignored, so no one acts as someone else), else the
    client's ``by`` (open access)."""
    if principal is not None:
        return principal
    by = _text(request, "by", MAX_BY, required=True)
    assert by is not None
    return by


def ack_record(
    request: Mapping[str, Any], alerts: AlertStore, now_ms: int, *, by: str | None = None
) -> Record:
    """The record of ``{"op": "ack", "id", "by", "note"?}``; raises :class:`RequestError`
    (``unknown_alert``, ``not_firing``, or a field's error). ``by``: the token's name,
    which replaces the request's ``by`` (None: open access, the request's)."""
    alert_id = _text(request, "id", MAX_NAME, required=True)
    by = _by(request, by)
    note = _text(request, "note", MAX_NOTE, required=False)
    assert alert_id is not None
    alert = alerts.firing(alert_id)
    if alert is None:
        if alerts.known(alert_id):
            raise RequestError("not_firing", f"alert {show(alert_id)} is not firing")
        raise RequestError("unknown_alert", f"no alert {show(alert_id)}")
    value = {
        "type": "ack",
        "id": alert_id,
        "centre": alert["centre"],
        "scope": alert["scope"],
        "rule": alert["rule"],
        "key": alert["key"],
        "by": by,
        "note": note,
        "at": now_ms,
    }
    return Record(ack_key(alert_id), value)


def snooze_record(
    request: Mapping[str, Any], now_ms: int, *, cancel: bool, by: str | None = None
) -> Record:
    """The record of ``{"op": "snooze", "centre", "rule", "key", "for_s", "by", "note"?}``
    or of ``{"op": "unsnooze", "centre", "rule", "key", "by", "note"?}`` (``cancel``);
    ``for_s`` 0 cancels too. ``by`` as for :func:`ack_record`."""
    if request.get("centre") is None:
        raise RequestError("missing_field", "a request needs 'centre'")
    centre = check_centre(request["centre"])
    rule = _text(request, "rule", MAX_NAME, required=True)
    key = _text(request, "key", MAX_NAME, required=True)
    by = _by(request, by)
    note = _text(request, "note", MAX_NOTE, required=False)
    assert rule is not None and key is not None
    for_s = 0
    if not cancel:
        value = request.get("for_s")
        if value is None:
            raise RequestError("missing_field", "a snooze needs 'for_s'")
        if not is_int(value):
            raise RequestError(
                "wrong_type", f"'for_s' must be a whole number of seconds, got {show(value)}"
            )
        if not 0 <= value <= MAX_SNOOZE_S:
            raise RequestError(
                "invalid_value", f"'for_s' must be 0-{MAX_SNOOZE_S} (30 days), got {show(value)}"
            )
        for_s = value
    record = {
        "type": "snooze",
        "centre": centre,
        "rule": rule,
        "key": key,
        "by": by,
        "note": note,
        "at": now_ms,
        "until": now_ms + for_s * 1000,
    }
    return Record(snooze_key(centre, rule, key), record)


def sent_record(sink: str, alert: Mapping[str, Any], now_ms: int) -> Record:
    value = {"type": "sent", "sink": sink, "id": alert["id"], "state": alert["state"], "at": now_ms}
    return Record(sent_key(sink, alert["id"], alert["state"]), value)


@dataclass(eq=False, slots=True)
class PendingWrite:
    """A request that writes a control record: the shell writes :attr:`record` to the
    control topic, then calls ``Session.written`` (or ``Session.write_failed``), which
    queues the reply; the next request is read only after that."""

    op: str
    record: Record
    #: ``acked``, ``snoozed`` or ``unsnoozed``
    reply_type: str

    @property
    def kind(self) -> str:
        """``ack`` or ``snooze``: the reply's field that holds the record."""
        return "ack" if self.op == "ack" else "snooze"


def control_request(
    op: str, request: Mapping[str, Any], alerts: AlertStore, now_ms: int, *, by: str | None = None
) -> PendingWrite:
    """Check an ``ack``, ``snooze`` or ``unsnooze`` request (websocket or REST) and
    make its record; raises :class:`RequestError`. ``by``: the name of the request's
    token, the record's ``by`` whatever the request says (None: open access)."""
    if op == "ack":
        return PendingWrite(op, ack_record(request, alerts, now_ms, by=by), "acked")
    record = snooze_record(request, now_ms, cancel=op == "unsnooze", by=by)
    cancelled = record.value["until"] <= record.value["at"]
    return PendingWrite(op, record, "unsnoozed" if cancelled else "snoozed")


# --------------------------------------------------------------------------- store


def _optional_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def parse_control(key: str, value: bytes | str) -> dict[str, Any]:
    """Decode and check one ``callcost-control`` value; raises :class:`BadMessage`."""
    data = load_object(value, "control record")
    kind = need(
        data,
        "type",
        lambda v: v in ("ack", "snooze", "sent"),
        "ack, snooze or sent",
        "control record",
    )
    where = f"{kind} record {show(key)}"
    need(data, "at", is_int, "an integer (ms)", where)
    if kind == "ack":
        for field in ("id", "rule", "scope", "key", "by"):
            need(data, field, nonempty_str, "a non-empty string", where)
        need(data, "centre", good_centre, "a centre id", where)
        need(data, "note", _optional_str, "a string or null", where)
        expected = ack_key(data["id"])
    elif kind == "snooze":
        for field in ("rule", "key", "by"):
            need(data, field, nonempty_str, "a non-empty string", where)
        need(data, "centre", good_centre, "a centre id", where)
        need(data, "note", _optional_str, "a string or null", where)
        need(data, "until", is_int, "an integer (ms)", where)
        expected = snooze_key(data["centre"], data["rule"], data["key"])
    else:
        for field in ("sink", "id"):
            need(data, field, nonempty_str, "a non-empty string", where)
        need(data, "state", lambda v: v in ALERT_STATES, "firing or resolved", where)
        expected = sent_key(data["sink"], data["id"], data["state"])
    if key != expected:
        raise BadMessage("wrong_key", f"{where} should have the key {show(expected)}")
    return data


class ControlStore:
    """The latest control record of every key (``docs/PROTOCOL.md``, "The control topic")."""

    def __init__(self) -> None:
        self._acks: dict[str, dict[str, Any]] = {}
        self._snoozes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._sent: set[tuple[str, str, str]] = set()
        self._positions: dict[str, Position] = {}
        #: what each key holds, to forget it on a tombstone
        self._held: dict[str, tuple[str, Any]] = {}

    def apply(
        self, key: str, value: bytes | str | None, position: Position | None = None
    ) -> dict[str, Any] | None:
        """Take the record of ``key`` at ``position``.

        Returns the record when it is an ack or a snooze that changes what is held (for
        the clients), else None: a record at or before the position already held for its
        key, a ``sent`` record, a tombstone. Raises :class:`BadMessage` for a bad value.
        """
        if position is not None:
            held = self._positions.get(key)
            if held is not None and held[0] == position[0] and position[1] <= held[1]:
                return None
        if value is None:
            if position is not None:
                self._positions[key] = position
            self._forget(key)
            return None
        data = parse_control(key, value)
        if position is not None:
            self._positions[key] = position
        self._forget(key)
        kind = data["type"]
        if kind == "ack":
            self._acks[data["id"]] = data
            self._held[key] = ("ack", data["id"])
            return data
        if kind == "snooze":
            target = (data["centre"], data["rule"], data["key"])
            self._snoozes[target] = data
            self._held[key] = ("snooze", target)
            return data
        mark = (data["sink"], data["id"], data["state"])
        self._sent.add(mark)
        self._held[key] = ("sent", mark)
        return None

    def _forget(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is None:
            return
        kind, what = held
        if kind == "ack":
            self._acks.pop(what, None)
        elif kind == "snooze":
            self._snoozes.pop(what, None)
        else:
            self._sent.discard(what)

    # ----------------------------------------------------------------- queries

    def ack(self, alert_id: str) -> dict[str, Any] | None:
        return self._acks.get(alert_id)

    def snooze(self, centre: str, rule: str, key: str, now_ms: int | None) -> dict[str, Any] | None:
        """The snooze of (centre, rule, key) if it is active at ``now_ms``."""
        snooze = self._snoozes.get((centre, rule, key))
        return snooze if snooze_active(snooze, now_ms) else None

    def snoozes(
        self,
        now_ms: int | None,
        centre: str | None = None,
        rule: str | None = None,
        key: str | None = None,
    ) -> list[dict[str, Any]]:
        """The active snoozes, by (centre, rule, key); each filter optional."""
        return [
            s
            for (c, r, k), s in sorted(self._snoozes.items())
            if (centre is None or c == centre)
            and (rule is None or r == rule)
            and (key is None or k == key)
            and snooze_active(s, now_ms)
        ]

    def sent(self, sink: str, alert_id: str, state: str) -> bool:
        return (sink, alert_id, state) in self._sent

    def mark_sent(self, sink: str, alert_id: str, state: str) -> None:
        """Remember a delivery at once, before (or without) its record being read back."""
        self._sent.add((sink, alert_id, state))

    @property
    def ack_count(self) -> int:
        return len(self._acks)

    @property
    def sent_count(self) -> int:
        return len(self._sent)

    def with_ack(self, alert: dict[str, Any]) -> dict[str, Any]:
        """A ``firing`` message with its ``ack`` (or null); other messages as they are."""
        if alert["state"] != "firing":
            return alert
        return {**alert, "ack": self._acks.get(alert["id"])}

    def with_ack_and_snooze(self, alert: dict[str, Any], now_ms: int | None) -> dict[str, Any]:
        """A firing alert with its ``ack`` and the ``snooze`` active on its rule and key."""
        return {
            **alert,
            "ack": self._acks.get(alert["id"]),
            "snooze": self.snooze(alert["centre"], alert["rule"], alert["key"], now_ms),
        }
