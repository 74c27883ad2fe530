"""The gateway's ``/metrics``: its counters, and a Prometheus collector over them.

:class:`Metrics` holds what the gateway counts as it goes; :class:`GatewayCollector`
reads those and the gateway's live state (connections, stores, readers, sinks) at each
scrape. Each gateway has a registry of its own (:func:`registry`), never the global one,
so that several gateways in one process do not mix. :data:`METRIC_NAMES` lists every
metric; ``docs/PROTOCOL.md`` ("Metrics") describes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callcost.web.control import ControlStore
from callcost.web.sinks import REASONS, Dispatcher
from callcost.web.stores import AlertStore, FigureStore
from callcost.web.wire import ERRORS


class Metrics:
    """Counters for ``/metrics``; gauges are read from the gateway at each scrape."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()  # websocket messages by type
        self.consumed: Counter[str] = Counter()  # good messages by topic
        self.bad: Counter[tuple[str, str]] = Counter()  # (topic, reason)
        self.errors: Counter[str] = Counter({code: 0 for code in ERRORS})
        self.http: Counter[tuple[str, int]] = Counter()  # (route, status)
        self.conflated_closed = 0  # conflations of sessions already closed
        self.slow_closes = 0
        self.connections_total = 0
        #: (http|websocket, unauthorized|forbidden|origin): refused by access control
        self.auth_refused: Counter[tuple[str, str]] = Counter(
            {
                (k, r): 0
                for k in ("http", "websocket")
                for r in ("unauthorized", "forbidden", "origin")
            }
        )
        self.send_timeouts = 0  # connections closed: one message not taken in time
        self.rate_limit_closes = 0  # connections closed (1008): refused requests in a row
        self.refused: Counter[str] = Counter({"too_many_connections": 0, "per_ip": 0})
        self.reads_paused = 0  # connections not read because their pongs piled up
        self.control_writes: Counter[tuple[str, str]] = Counter(
            {(t, r): 0 for t in ("ack", "snooze", "sent") for r in ("ok", "error")}
        )  # (record type, ok|error)


class _Session(Protocol):
    @property
    def subscriptions(self) -> Mapping[str, Any]: ...
    @property
    def pending(self) -> int: ...
    @property
    def conflated(self) -> int: ...


class _Client(Protocol):
    @property
    def session(self) -> _Session: ...


class _Reader(Protocol):
    @property
    def caught_up(self) -> bool: ...


class _SinkWorker(Protocol):
    @property
    def delivered(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def record_errors(self) -> int: ...
    @property
    def queued(self) -> int: ...


class Source(Protocol):
    """What the collector reads of a gateway."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def clients(self) -> Iterable[_Client]: ...
    @property
    def figures_topic(self) -> str: ...
    @property
    def alerts_topic(self) -> str: ...
    @property
    def control_topic(self) -> str: ...
    @property
    def readers(self) -> Mapping[str, _Reader]: ...
    @property
    def figures(self) -> FigureStore: ...
    @property
    def alerts(self) -> AlertStore: ...
    @property
    def control(self) -> ControlStore: ...
    @property
    def clock(self) -> Callable[[], int]: ...
    @property
    def sink_workers(self) -> Mapping[str, _SinkWorker]: ...
    @property
    def dispatcher(self) -> Dispatcher: ...


_PREFIX = "callcost_gateway_"

#: every metric: name (without the prefix) -> (type, help, label names), in scrape order
SPECS: Mapping[str, tuple[str, str, tuple[str, ...]]] = {
    "connections": ("gauge", "Open websocket connections.", ()),
    "connections_total": ("counter", "Websocket connections accepted.", ()),
    "subscriptions": ("gauge", "Subscriptions of the open connections.", ()),
    "pending_messages": (
        "gauge",
        "Messages waiting in the outboxes of the open connections.",
        (),
    ),
    "messages_sent_total": ("counter", "Websocket messages sent, by type.", ("type",)),
    "figures_consumed_total": ("counter", "Figures messages read from Kafka.", ()),
    "alerts_consumed_total": ("counter", "Alert messages read from Kafka.", ()),
    "bad_messages_total": (
        "counter",
        "Kafka messages skipped because they could not be decoded, by topic and reason.",
        ("topic", "reason"),
    ),
    "request_errors_total": (
        "counter",
        "Websocket requests answered with an error, by code.",
        ("code",),
    ),
    "conflated_total": (
        "counter",
        "Figures updates replaced by a newer one before a slow client read them.",
        (),
    ),
    "slow_client_closes_total": (
        "counter",
        "Connections closed (1013) because too many messages waited for them.",
        (),
    ),
    "send_timeouts_total": (
        "counter",
        "Connections closed (1013) because one message waited send_timeout_s for the client.",
        (),
    ),
    "rate_limit_closes_total": (
        "counter",
        "Connections closed (1008) for sending on after request_burst refused requests.",
        (),
    ),
    "connections_refused_total": (
        "counter",
        "Connections refused: too_many_connections (handshake answered 503), per_ip "
        "(closed at once).",
        ("reason",),
    ),
    "reads_paused_total": (
        "counter",
        "Times a connection was not read while its unread pongs filled the write buffer.",
        (),
    ),
    "auth_refused_total": (
        "counter",
        "Requests refused by access control, by kind (http, websocket handshake) and reason "
        "(unauthorized: 401, forbidden: 403 for the role, origin: 403 for the Origin).",
        ("kind", "reason"),
    ),
    "http_requests_total": (
        "counter",
        "HTTP requests other than websocket handshakes, by route and status.",
        ("route", "status"),
    ),
    "reader_caught_up": (
        "gauge",
        "1 once the topic's reader reached the end offsets it saw at start.",
        ("topic",),
    ),
    "centres": ("gauge", "Centres with figures.", ()),
    "figures": ("gauge", "Figures held.", ()),
    "alerts_firing": ("gauge", "Alerts firing now.", ()),
    "control_consumed_total": (
        "counter",
        "Control records (acks, snoozes, deliveries) read from Kafka.",
        (),
    ),
    "control_writes_total": (
        "counter",
        "Control records written, by type and result.",
        ("type", "result"),
    ),
    "acks": ("gauge", "Acknowledgements held.", ()),
    "snoozes_active": ("gauge", "Snoozes active now.", ()),
    "sink_deliveries_total": ("counter", "Alert messages delivered (2xx).", ("sink",)),
    "sink_failures_total": ("counter", "Delivery attempts that failed.", ("sink",)),
    "sink_retries_total": (
        "counter",
        "Delivery attempts made again after a failure.",
        ("sink",),
    ),
    "sink_record_errors_total": (
        "counter",
        "Deliveries whose record could not be written to the control topic.",
        ("sink",),
    ),
    "sink_queued": ("gauge", "Alert messages waiting to be delivered.", ("sink",)),
    "sink_skipped_total": (
        "counter",
        "Alert messages a sink takes but was not sent, by reason: duplicate (sent "
        "already), stale (older than the replay horizon at start), snoozed (waited for a "
        "snooze), unannounced (resolved of a firing never sent), dropped (queue full), "
        "gave_up (every attempt failed).",
        ("sink", "reason"),
    ),
}

#: every metric the gateway exposes, as scraped, with its type
METRIC_NAMES: Mapping[str, str] = {_PREFIX + name: spec[0] for name, spec in SPECS.items()}
#: the per-sink metrics and the attribute of the sink's worker each reads
_PER_SINK = {
    "sink_deliveries_total": "delivered",
    "sink_failures_total": "failures",
    "sink_retries_total": "retries",
    "sink_record_errors_total": "record_errors",
    "sink_queued": "queued",
}

Samples = Iterable[tuple[Iterable[object], float]]


def _metric(name: str, samples: Samples) -> Metric:
    kind, help_text, labels = SPECS[name]
    family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    metric = family(_PREFIX + name, help_text, labels=list(labels))
    for values, value in samples:
        metric.add_metric([str(v) for v in values], value)
    return metric


def _one(value: float) -> Samples:
    return [((), value)]


def _by(counter: Mapping[Any, int]) -> Samples:
    """A counter's samples in key order; a key is one label value or a tuple of them."""
    return (
        (key if isinstance(key, tuple) else (key,), n) for key, n in sorted(counter.items())
    )


class GatewayCollector(Collector):
    """Every gateway metric, read from ``gateway`` when scraped."""

    def __init__(self, gateway: Source) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        g = self.gateway
        m = g.metrics
        clients = list(g.clients)
        conflated = m.conflated_closed + sum(c.session.conflated for c in clients)
        values: dict[str, Samples] = {
            "connections": _one(len(clients)),
            "connections_total": _one(m.connections_total),
            "subscriptions": _one(sum(len(c.session.subscriptions) for c in clients)),
            "pending_messages": _one(sum(c.session.pending for c in clients)),
            "messages_sent_total": _by(m.sent),
            "figures_consumed_total": _one(m.consumed[g.figures_topic]),
            "alerts_consumed_total": _one(m.consumed[g.alerts_topic]),
            "bad_messages_total": _by(m.bad),
            "request_errors_total": _by(m.errors),
            "conflated_total": _one(conflated),
            "slow_client_closes_total": _one(m.slow_closes),
            "send_timeouts_total": _one(m.send_timeouts),
            "rate_limit_closes_total": _one(m.rate_limit_closes),
            "connections_refused_total": _by(m.refused),
            "reads_paused_total": _one(m.reads_paused),
            "auth_refused_total": _by(m.auth_refused),
            "http_requests_total": _by(m.http),
            "reader_caught_up": [((t,), int(r.caught_up)) for t, r in g.readers.items()],
            "centres": _one(len(g.figures.centres())),
            "figures": _one(len(g.figures)),
            "alerts_firing": _one(g.alerts.firing_count),
            "control_consumed_total": _one(m.consumed[g.control_topic]),
            "control_writes_total": _by(m.control_writes),
            "acks": _one(g.control.ack_count),
            "snoozes_active": _one(len(g.control.snoozes(g.clock()))),
        }
        workers = sorted(g.sink_workers.items())
        for name, attr in _PER_SINK.items():
            values[name] = [((i,), getattr(w, attr)) for i, w in workers]
        skipped = g.dispatcher.skipped
        values["sink_skipped_total"] = [
            ((i, r), skipped[(i, r)]) for i, _ in workers for r in REASONS
        ]
        for name in SPECS:
            yield _metric(name, values[name])


def registry(gateway: Source) -> CollectorRegistry:
    """A registry of the gateway's own, its collector registered."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(GatewayCollector(gateway))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    """The Prometheus text format (version 0.0.4) of ``reg``."""
    return generate_latest(reg)
