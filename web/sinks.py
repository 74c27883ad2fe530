"""Webhook sinks: what goes to which sink, when, and in what words. Pure: no I/O, no clock.

The gateway's webhook workers (``web/webhooks.py``) post alert messages to the
``[[sinks]]`` of the configuration (:class:`callcost.streams.config.Sink`); this module
makes every decision and the workers only move bytes. Times are passed in (``now_ms``,
the gateway's clock).

What a sink is told
===================

Each sink is told, once, each alert message (``firing``, then ``resolved``) that it takes:

* **filters**: a sink takes the messages whose centre, scope, rule and state match its
  own (each optional).
* **once**: a delivery is recorded in the control topic (``sent/<sink id>/<alert
  id>/<state>``, see :mod:`callcost.web.control`) when the endpoint answered 2xx; a
  recorded or queued (sink, alert id, state) is never queued again, by this gateway or
  by the next one. (Between the 2xx and the record reaching Kafka a crash can still
  cause one repeat; the ``X-Callcost-Delivery`` header lets a receiver drop it.)
* **no blast on start**: a message whose ``at`` is more than the sink's
  ``replay_horizon_s`` before the gateway started, and that was never sent, is not sent
  (it is counted as ``stale``); messages that came while the gateway was down but
  within the horizon are sent.
* **snoozed**: while a snooze is active on the message's (centre, rule, key) it waits
  (``snoozed``); when the snooze ends or is cancelled, the *latest* message of that
  alert is reconsidered: a sink told of a firing hears of its resolution, and an alert
  that fired and resolved within the snooze is never told at all.
* **resolved after firing**: a ``resolved`` goes to a sink that was told (or is about to
  be told) of the ``firing`` (or that takes only ``resolved`` messages); otherwise it is
  skipped as ``unannounced``.

The body is ``{"text": LINE, "alert": ALERT}`` where LINE is one human-readable line,
shown as is by Slack and Teams incoming webhooks, e.g. (one line)::

    :red_circle: prg queue billing cost per call $6.12 above band $2.70-$5.60
    (15m, 34 calls) since 14:02

(times in the centre's time zone), and ALERT the alert message unchanged (SPEC section
5). Every ``&``, ``<`` and ``>`` in LINE is escaped as Slack documents (``&amp;``,
``&lt;``, ``&gt;``; the fixed words hold none, so this escapes exactly the text that
comes from the data: centre, queue and other key names, window), so that a name such
as ``<!channel>`` or ``<https://evil|sso>`` is shown as text, never as a mention or a
link. ALERT is not escaped.

Every request carries ``X-Callcost-Timestamp: T``, the gateway's clock at sending in
whole seconds since the epoch. With a ``secret`` it also carries
``X-Callcost-Signature: sha256=HEX``, the HMAC-SHA256, keyed with the secret, of the
bytes of ``T`` and ``.`` followed by the raw body (``f"{T}.".encode() + body``), so
that a receiver can check the timestamp is its own recent one and refuse replays.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from callcost.streams.config import Settings, Sink

if TYPE_CHECKING:
    from callcost.web.control import ControlStore

SEND = "send"
#: why a message is not sent to a sink (``filtered`` is not counted)
REASONS = ("duplicate", "stale", "snoozed", "unannounced", "dropped", "gave_up")

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
#: the longest wait between two attempts, in seconds
MAX_BACKOFF_S = 60.0

# --------------------------------------------------------------------------- words


def _money(value: float | None, currency: str) -> str:
    if value is None:
        return "n/a"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {currency}"


def _clock(ms: int, settings: Settings, centre: str) -> str:
    return datetime.fromtimestamp(ms / 1000, settings.rates_for(centre).tz).strftime("%H:%M")


def escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack's message formatting wants them written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_text(alert: Mapping[str, Any], settings: Settings) -> str:
    """The one line a person reads in Slack or Teams, escaped (:func:`escape`)."""
    return escape(_line(alert, settings))


def _line(alert: Mapping[str, Any], settings: Settings) -> str:
    centre, scope, key = alert["centre"], alert["scope"], alert["key"]
    currency = settings.rates_for(centre).currency
    what = centre if scope == "centre" else f"{centre} {scope} {key}"
    value = _money(alert["value"], currency)
    band = f"{_money(alert['low'], currency)}-{_money(alert['high'], currency)}"
    handled = alert.get("handled")
    detail = alert["window"] if handled is None else f"{alert['window']}, {handled} calls"
    since = _clock(alert["since"], settings, centre)
    if alert["state"] == "firing":
        icon = ":red_circle:" if alert["direction"] == "above" else ":large_blue_circle:"
        return (
            f"{icon} {what} cost per call {value} {alert['direction']} band {band} "
            f"({detail}) since {since}"
        )
    at = _clock(alert["at"], settings, centre)
    return (
        f":white_check_mark: {what} cost per call {value} back within band {band} "
        f"({detail}) at {at}, {alert['direction']} since {since}"
    )


def payload(alert: Mapping[str, Any], settings: Settings) -> bytes:
    """The request body: ``{"text": LINE, "alert": ALERT}``."""
    return orjson.dumps({"text": alert_text(alert, settings), "alert": alert})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``f"{timestamp}."`` then ``body``,
    keyed with ``secret``."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def delivery_id(sink: str, alert: Mapping[str, Any]) -> str:
    """The same for every attempt of (sink, alert id, state): a receiver's dedup key."""
    text = f"{sink}\n{alert['id']}\n{alert['state']}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def headers(sink: Sink, alert: Mapping[str, Any], body: bytes, now_ms: int) -> dict[str, str]:
    timestamp = str(now_ms // 1000)
    out = {
        "Content-Type": "application/json",
        "User-Agent": "callcost-gateway",
        "X-Callcost-Delivery": delivery_id(sink.id, alert),
        "X-Callcost-Timestamp": timestamp,
    }
    if sink.secret is not None:
        out["X-Callcost-Signature"] = signature(sink.secret, timestamp, body)
    return out


def scrub(text: str, sink: Sink, forms: Sequence[str] = ()) -> str:
    """``text`` (an error, often an HTTP client's, that may quote the request's URL)
    with the sink's URL, its path and its user info, and any of ``forms`` (the URL as
    the HTTP client writes it), replaced by ``<sink ID>``: the URL is often a
    credential itself (a Slack webhook), and errors are shown by ``/healthz``."""
    secrets = {sink.url, sink.url.rstrip("/"), *forms}
    _, sep, rest = sink.url.partition("://")
    if sep:
        secrets.add(rest)
        host, slash, path = rest.partition("/")
        if slash and path:
            secrets.add("/" + path)
            secrets.add(path)
        if "@" in host:  # user:password@
            secrets.add(host.rpartition("@")[0])
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) > 1:
            text = text.replace(secret, f"<sink {sink.id}>")
    return text


def backoff_s(attempt: int, base_s: float, rand: float) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2, ...): ``base_s`` doubled
    each time, at most :data:`MAX_BACKOFF_S`, then scaled by 0.5-1.0 (``rand`` in
    [0, 1)) so that sinks that failed together do not retry together."""
    delay = min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1))
    return delay * (0.5 + rand / 2)


def outcome(status: int) -> str:
    """``ok`` (2xx), ``retry`` (408, 425, 429, 5xx) or ``fail`` (any other answer:
    the same request would get it again)."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "fail"


def takes(sink: Sink, alert: Mapping[str, Any]) -> bool:
    return (
        (sink.centre is None or alert["centre"] == sink.centre)
        and (sink.scope is None or alert["scope"] == sink.scope)
        and (sink.rule is None or alert["rule"] == sink.rule)
        and (sink.state is None or alert["state"] == sink.state)
    )


# --------------------------------------------------------------------------- decisions

Mark = tuple[str, str, str]  # (sink id, alert id, state)


class Dispatcher:
    """Which alert message goes to which sink, now (see the module docstring).

    Feed it every new alert message (:meth:`offer`), the end of the control topic's
    replay (:meth:`release`: nothing is decided before, since what was sent is only
    known then), and the clock (:meth:`tick`, for snoozes that end); each returns the
    (sink, message) pairs to queue. The shell reports back what became of each:
    :meth:`take` when it is about to send, then :meth:`delivered` or :meth:`abandoned`.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        control: ControlStore,
        start_ms: int,
        *,
        ready: bool = False,
    ) -> None:
        self.sinks = tuple(sinks)
        self.control = control
        self.start_ms = start_ms
        self.ready = ready
        self._stale_before = {s.id: start_ms - int(s.replay_horizon_s * 1000) for s in sinks}
        self._backlog: list[dict[str, Any]] = []
        self._queued: set[Mark] = set()
        self._deferred: dict[tuple[str, str], tuple[Sink, dict[str, Any]]] = {}
        #: messages not sent, by (sink id, reason)
        self.skipped: Counter[tuple[str, str]] = Counter()

    @property
    def deferred(self) -> int:
        """Messages waiting for a snooze to end."""
        return len(self._deferred)

    def offer(self, alert: dict[str, Any], now_ms: int) -> list[tuple[Sink, dict[str, Any]]]:
        """A new alert message (each (id, state) once): where it goes now."""
        if not self.sinks:
            return []
        if not self.ready:
            self._backlog.append(alert)
            return []
        return [(s, alert) for s in self.sinks if self._decide(s, alert, now_ms) == SEND]

    def release(self, now_ms: int) -> list[tuple[Sink, dict[str, Any]]]:
        """The control topic is read: decide the messages that came before."""
        self.ready = True
        out: list[tuple[Sink, dict[str, Any]]] = []
        backlog, self._backlog = self._backlog, []
        for alert in backlog:
            out.extend(self.offer(alert, now_ms))
        return out

    def tick(self, now_ms: int) -> list[tuple[Sink, dict[str, Any]]]:
        """Messages whose snooze ended (or was cancelled) by ``now_ms``."""
        out: list[tuple[Sink, dict[str, Any]]] = []
        for mark, (sink, alert) in list(self._deferred.items()):
            if self._snoozed(alert, now_ms):
                continue
            del self._deferred[mark]
            if self._decide(sink, alert, now_ms) == SEND:
                out.append((sink, alert))
        return out

    def take(self, sink: Sink, alert: dict[str, Any], now_ms: int) -> bool:
        """The shell is about to send ``alert`` to ``sink``: False when a snooze began
        while it waited (it waits for the snooze now)."""
        if not self._snoozed(alert, now_ms):
            return True
        self._queued.discard((sink.id, alert["id"], alert["state"]))
        self._defer(sink, alert)
        return False

    def delivered(self, sink: Sink, alert: Mapping[str, Any]) -> None:
        self._queued.discard((sink.id, alert["id"], alert["state"]))
        self.control.mark_sent(sink.id, alert["id"], alert["state"])

    def abandoned(self, sink: Sink, alert: Mapping[str, Any], reason: str) -> None:
        """Not sent after all: ``dropped`` (queue full) or ``gave_up`` (attempts spent)."""
        self._queued.discard((sink.id, alert["id"], alert["state"]))
        self.skipped[(sink.id, reason)] += 1

    # ----------------------------------------------------------------- the rules

    def _snoozed(self, alert: Mapping[str, Any], now_ms: int) -> bool:
        return self.control.snooze(alert["centre"], alert["rule"], alert["key"], now_ms) is not None

    def _told(self, sink: Sink, alert_id: str, state: str) -> bool:
        mark = (sink.id, alert_id, state)
        return mark in self._queued or self.control.sent(*mark)

    def _defer(self, sink: Sink, alert: dict[str, Any]) -> None:
        self._deferred[(sink.id, alert["id"])] = (sink, alert)
        self.skipped[(sink.id, "snoozed")] += 1

    def _decide(self, sink: Sink, alert: dict[str, Any], now_ms: int) -> str:
        """``send`` or why not (``filtered`` or one of :data:`REASONS`), with effects:
        ``send`` counts the message as queued, ``snoozed`` keeps it for later."""
        if not takes(sink, alert):
            return "filtered"
        alert_id, state = alert["id"], alert["state"]
        reason: str | None = None
        if self._told(sink, alert_id, state):
            reason = "duplicate"
        else:
            if state == "resolved":
                # the alert is over: a firing still waiting for its snooze is moot
                waiting = self._deferred.get((sink.id, alert_id))
                if waiting is not None and waiting[1]["state"] == "firing":
                    del self._deferred[(sink.id, alert_id)]
            if alert["at"] < self._stale_before[sink.id]:
                reason = "stale"
            elif (
                state == "resolved"
                and sink.state is None
                and not self._told(sink, alert_id, "firing")
            ):
                reason = "unannounced"
            elif self._snoozed(alert, now_ms):
                self._defer(sink, alert)
                return "snoozed"
        if reason is not None:
            self.skipped[(sink.id, reason)] += 1
            return reason
        self._queued.add((sink.id, alert_id, state))
        return SEND
