"""The protocol state of one websocket connection: :class:`Session`. Pure: no I/O, no clock.

Requests go in, topic messages go in, and the frames to send come out of one outbox, in
order; ``docs/PROTOCOL.md`` is the protocol a client sees.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from callcost.web.access import PERMISSION_TEXT, permission_of
from callcost.web.control import ControlStore, PendingWrite, control_request
from callcost.web.stores import AlertStore, FigureStore
from callcost.web.subscriptions import (
    Entry,
    FiguresUpdate,
    Subscription,
    check_sub,
    subscription_of,
)
from callcost.web.wire import RequestError, encode, show

OPS: tuple[str, ...] = ("subscribe", "unsubscribe", "ping", "ack", "snooze", "unsnooze")
#: the ops that write to the control topic (the shell completes them)
CONTROL_OPS: tuple[str, ...] = ("ack", "snooze", "unsnooze")

MAX_SUBSCRIPTIONS = 64
#: figures updates are conflated once this many messages wait for one client
SOFT_LIMIT = 64
#: a client with more than this many messages waiting is disconnected (close code 1013)
HARD_LIMIT = 1024


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
        name: str | None = None,
    ) -> None:
        """``permissions`` (``callcost.web.access``; None: every one) are what the
        connection's token allows, ``role`` its name for the ``forbidden`` messages,
        ``name`` the token's name: the ``by`` of its acks and snoozes, whatever the
        client sends (None: open access, the client's ``by``)."""
        if control is None:
            control = ControlStore()
        self.figures = figures
        self.alerts = alerts
        self.control = control
        self.max_subscriptions = max_subscriptions
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.permissions = permissions
        self.role = role
        self.name = name
        self.subscriptions: dict[str, Subscription] = {}
        self.overflowed = False
        #: figures updates replaced by a newer one before they were sent
        self.conflated = 0
        self._outbox: deque[Entry] = deque()
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
                return control_request(request["op"], request, self.alerts, now_ms, by=self.name)
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
        self._push(Entry(None, reply, "reply"))
        return reply

    def written(self, pending: PendingWrite, record: dict[str, Any]) -> dict[str, Any]:
        """``pending``'s record is in the control topic: queue and return its reply."""
        reply = {"type": pending.reply_type, pending.kind: record}
        self._push(Entry(None, reply, "reply"))
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
            self._push(Entry(None, reply, "reply"))
            return reply
        raise RequestError("unknown_op", f"unknown op {show(op)}; expected {', '.join(OPS)}")

    def _subscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        subscription = subscription_of(request)
        sub = check_sub(request)
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
        self._push(Entry(subscription, snapshot, "snapshot"))
        return snapshot

    def _unsubscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        sub = check_sub(request)
        if sub is not None:
            subscription = self.subscriptions.get(sub)
            if subscription is None:
                raise RequestError("unknown_sub", f"no subscription {show(sub)}")
        elif request.get("channel") is None:
            raise RequestError("missing_field", "unsubscribe needs 'sub' or 'channel'")
        else:
            wanted = subscription_of(request)
            found = [s for s in self.subscriptions.values() if s.filters == wanted.filters]
            if not found:
                raise RequestError("unknown_sub", f"no subscription to {wanted.describe()}")
            subscription = found[0]
        del self.subscriptions[subscription.sub]
        self._outbox = deque(e for e in self._outbox if e.sub is not subscription)
        reply = {"type": "unsubscribed", "sub": subscription.sub}
        self._push(Entry(None, reply, "reply"))
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
            entry = Entry(subscription, body, "update")
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
            self._push(Entry(subscription, body, "alert"))
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
            self._push(Entry(subscription, body, "alert"))
        return count

    # ----------------------------------------------------------------- outbox

    def _push(self, entry: Entry) -> None:
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
