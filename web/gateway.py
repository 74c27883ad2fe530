"""``callcost gateway``: the websocket/HTTP gateway, a thin asyncio shell.

One ``websockets`` server serves both the websocket protocol at ``/ws`` and, through
``process_request``, plain HTTP (the protocol module documents every request)::

    GET  /ws                                 websocket (protocol: callcost.web.protocol)
    GET  /api/figures?centre=&scope=&window=   {"figures": [...]}
    GET  /api/alerts?centre=&state=firing|all&since=&until=   {"alerts": [...]}
    POST /api/alerts/ack                     {"ack": ACK}      body: as the ack op
    POST /api/snoozes                        {"snooze": SNOOZE}  body: as the snooze op
    GET  /api/snoozes?centre=                {"snoozes": [...]}  the active ones
    GET  /api/centres                        {"centres": [{"centre", "timezone", ...}]}
    GET  /api/whoami                         {"open", "name", "role", "permissions"}
    GET  /healthz                            200 when the Kafka readers caught up, else 503
    GET  /metrics                            Prometheus text
    GET  /, /wallboard, /supervisor, /alerts, /static/NAME   the pages, from web/static/

``/healthz`` answers ``{"status": "ok"|"starting", "caught_up": bool, "readers": {TOPIC:
{"caught_up", "partitions", "to_catch_up", "error"}}, "centres", "figures", "alerts",
"firing", "sinks": {SINK: {"ready", "queued", "delivered", "last_error"}},
"connections", "uptime_s"}``; ``to_catch_up`` counts the messages still to read up to
the end offsets seen at start, ``error`` is the reader's last problem (no broker, no
topic yet) or null. Run without Kafka (``bootstrap=None``) it has no readers and is
always 200.

Every other path answers 404, every other method 405, a bad parameter 400, each with a
JSON body ``{"error": CODE, "message": TEXT}``. Each HTTP response closes its connection
(websockets serves one request per connection outside the websocket handshake).
websockets refuses HTTP request bodies, so the connection class (:class:`_Connection`)
reads a POST's body (``Content-Length``, at most 64 KiB) before websockets parses the
request.

The state lives in :mod:`callcost.web.protocol` and :mod:`callcost.web.control` (pure):
a :class:`FigureStore`, an :class:`AlertStore` and a :class:`ControlStore` fed by one
Kafka reader task per topic (``cost-figures``, ``cost-alerts``, ``callcost-control``). A
reader takes no consumer group: it assigns every partition of its topic, seeks to the
beginning and reads to the end, so a gateway started or restarted at any time rebuilds
the latest figures, the whole alert history, the acks, the snoozes and what the webhook
sinks were sent; it holds nothing that a restart can lose. ``/healthz`` answers 503
until every reader has reached the end offsets it saw when it started. A message a
reader cannot decode is counted (``/metrics``), logged and skipped.

Acks and snoozes (websocket ops or REST) are written to ``callcost-control``
(``acks=all``) before they are answered, applied at once, and sent to the alerts
subscribers; when the reader reads them back nothing changes. The gateway's clock
(``clock``, wall time by default) is the only time they use.

Webhook sinks (``[[sinks]]`` of ``--config``): :mod:`callcost.web.sinks` decides what
goes where; here one :class:`SinkWorker` task per sink posts it (aiohttp), with a
bounded queue, retries with backoff and jitter, and a timeout per attempt, and records
each delivery in ``callcost-control``. Nothing is decided before the control topic has
been read (what was sent before is known only then).

Each websocket client has a :class:`Session` whose outbox is drained by a sender task
of its own, so a slow client never holds up the readers nor the other clients: the
readers only append to outboxes. The outbox conflates figures updates when it fills
and the connection is closed with 1013 when it overflows (see the protocol module).
Likewise the readers only append to the sinks' queues: a slow or dead endpoint holds up
its own queue and nothing else.

Limits (``[gateway]`` of the settings, :class:`callcost.streams.config.GatewaySettings`;
the protocol module lists what a client sees). What the gateway holds for one client is
bounded whatever the client does: its outbox (``hard_limit`` messages, then 1013), the
write buffer (``write_buffer_bytes``: the sender waits for the client to take the
bytes, at most ``send_timeout_s``, then 1013; the websocket layer's own answers, pongs
to a ping flood, stop being read past four times that while the client does not read),
one incoming message (``max_frame_bytes``, fragments included, then 1009; at most 16
waiting to be handled, then the socket is not read), a request's head and body
(``max_request_bytes``), and the handshake's duration (``open_timeout_s``). A close
the client does not complete is cut off after ``close_timeout_s``. Requests are rate
limited per connection (token bucket: ``rate_limited``, then 1008); connections are
capped in all (``max_connections``: 503) and per address (``max_connections_per_ip``).

Access (``[gateway]`` tokens, origins, TLS; :mod:`callcost.web.access` decides, README
"Security" explains). With tokens configured, ``_process_request`` refuses a websocket
handshake without a valid token (``Authorization: Bearer`` or the subprotocol
``callcost.token.TOKEN``) with 401, and one whose ``Origin`` is not allowed with 403,
before the connection counts toward ``max_connections``; the token's role goes with the
connection to its :class:`Session`, which answers ``forbidden`` to what the role may not
do. The REST routes check ``Authorization: Bearer`` the same way (401/403), and a POST's
``Origin``. Without tokens every request is allowed and the gateway says so loudly at
start. No token is ever logged: the gateway logs no header nor query, and a filter
(:class:`RedactTokens`) scrubs credentials from websockets' own log records (its debug
log prints every request line and header) and, under ``callcost gateway``, from every
record the process writes. With ``tls_cert`` and ``tls_key`` it serves TLS only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import http
import logging
import mimetypes
import os
import random
import signal
import ssl
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from callcost.errors import CallcostError, ConfigError
from callcost.kafka_client import acheck as kafka_check
from callcost.kafka_client import aiokafka_kwargs
from callcost.streams.config import GatewaySettings, Settings, Sink, load_settings
from callcost.streams.topics import ALERTS, CONTROL, FIGURES
from callcost.web import access as a
from callcost.web import control as c
from callcost.web import protocol as p
from callcost.web import sinks as sk

log = logging.getLogger("callcost.gateway")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
#: requests are small JSON objects; anything bigger is closed with 1009 by websockets
#: (the default of ``[gateway] max_frame_bytes``)
MAX_FRAME = GatewaySettings().max_frame_bytes

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
#: the largest HTTP request body (POST /api/alerts/ack, /api/snoozes; the default of
#: ``[gateway] max_request_bytes``)
MAX_BODY = GatewaySettings().max_request_bytes
#: the write buffer of a connection that does not read may hold this many times
#: ``write_buffer_bytes`` of the websocket layer's own answers (pongs) before the
#: connection is no longer read
READ_PAUSE_FACTOR = 4
#: a control write (ack, snooze, delivery record) gives up after this long (below the
#: 10 s websockets gives a request, a POST's write included)
CONTROL_WRITE_TIMEOUT_S = 5.0
#: HTTP status of the errors of REST writes; every other error code is 400
STATUS_OF_ERROR = {"unknown_alert": 404, "not_firing": 409, "unavailable": 503}
#: the methods each path takes (every other path: GET)
METHODS = {"/api/alerts/ack": ("POST",), "/api/snoozes": ("GET", "POST")}
#: the paths counted by name in /metrics (the others as /static or other)
#: the pages: path -> file in web/static/
PAGES = {
    "/": "index.html",
    "/wallboard": "wallboard.html",
    "/supervisor": "supervisor.html",
    "/alerts": "alerts.html",
}
ROUTES = (
    *PAGES,
    "/api/figures",
    "/api/alerts",
    "/api/alerts/ack",
    "/api/snoozes",
    "/api/centres",
    "/healthz",
    "/metrics",
    "/api/whoami",
)
#: the permission (callcost.web.access) each route needs; the others need none (the
#: pages, /static/, /healthz), but /api/whoami needs a valid token
PERMISSION_OF_ROUTE = {
    ("GET", "/api/figures"): "figures",
    ("GET", "/api/centres"): "figures",
    ("GET", "/api/alerts"): "alerts",
    ("GET", "/api/snoozes"): "alerts",
    ("POST", "/api/alerts/ack"): "ack",
    ("POST", "/api/snoozes"): "snooze",
    ("GET", "/metrics"): "metrics",
}
#: what a 401 says to a client that sent no token
NO_TOKEN = "this needs a token: 'Authorization: Bearer TOKEN'"


def wall_ms() -> int:
    """The gateway's clock: ms since the epoch."""
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- HTTP


def response(
    status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    code = http.HTTPStatus(status)
    h = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
            *headers,
        ]
    )
    return Response(code.value, code.phrase, h, body)


def json_response(status: int, data: Any) -> Response:
    return response(status, p.encode(data), JSON)


def error_response(status: int, code: str, message: str, **headers: str) -> Response:
    return response(
        status,
        p.encode({"error": code, "message": message}),
        JSON,
        [(k.replace("_", "-"), v) for k, v in headers.items()],
    )


def static_file(root: Path, name: str) -> Response:
    """The file ``name`` under ``root``, or 404; never anything outside ``root``."""
    name = unquote(name)
    if not name or "\x00" in name or "\\" in name:
        return error_response(404, "not_found", f"no static file {p.show(name)}")
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError):
        return error_response(404, "not_found", f"no static file {p.show(name)}")
    if not path.is_relative_to(root) or not path.is_file():
        return error_response(404, "not_found", f"no static file {p.show(name)}")
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return response(200, path.read_bytes(), content_type)


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Counters for ``/metrics``; gauges are read from the gateway when rendered."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()  # websocket messages by type
        self.consumed: Counter[str] = Counter()  # good messages by topic
        self.bad: Counter[tuple[str, str]] = Counter()  # (topic, reason)
        self.errors: Counter[str] = Counter({code: 0 for code in p.ERRORS})
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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(gateway: Gateway) -> str:
    m = gateway.metrics
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, int]]):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    clients = list(gateway.clients)
    metric(
        "callcost_gateway_connections", "gauge", "Open websocket connections.", [("", len(clients))]
    )
    metric(
        "callcost_gateway_connections_total",
        "counter",
        "Websocket connections accepted.",
        [("", m.connections_total)],
    )
    metric(
        "callcost_gateway_subscriptions",
        "gauge",
        "Subscriptions of the open connections.",
        [("", sum(len(c.session.subscriptions) for c in clients))],
    )
    metric(
        "callcost_gateway_pending_messages",
        "gauge",
        "Messages waiting in the outboxes of the open connections.",
        [("", sum(c.session.pending for c in clients))],
    )
    metric(
        "callcost_gateway_messages_sent_total",
        "counter",
        "Websocket messages sent, by type.",
        [(f'{{type="{_label(t)}"}}', n) for t, n in sorted(m.sent.items())],
    )
    metric(
        "callcost_gateway_figures_consumed_total",
        "counter",
        "Figures messages read from Kafka.",
        [("", m.consumed[gateway.figures_topic])],
    )
    metric(
        "callcost_gateway_alerts_consumed_total",
        "counter",
        "Alert messages read from Kafka.",
        [("", m.consumed[gateway.alerts_topic])],
    )
    metric(
        "callcost_gateway_bad_messages_total",
        "counter",
        "Kafka messages skipped because they could not be decoded, by topic and reason.",
        [
            (f'{{topic="{_label(t)}",reason="{_label(r)}"}}', n)
            for (t, r), n in sorted(m.bad.items())
        ],
    )
    metric(
        "callcost_gateway_request_errors_total",
        "counter",
        "Websocket requests answered with an error, by code.",
        [(f'{{code="{_label(c)}"}}', n) for c, n in sorted(m.errors.items())],
    )
    metric(
        "callcost_gateway_conflated_total",
        "counter",
        "Figures updates replaced by a newer one before a slow client read them.",
        [("", m.conflated_closed + sum(c.session.conflated for c in clients))],
    )
    metric(
        "callcost_gateway_slow_client_closes_total",
        "counter",
        "Connections closed (1013) because too many messages waited for them.",
        [("", m.slow_closes)],
    )
    metric(
        "callcost_gateway_send_timeouts_total",
        "counter",
        "Connections closed (1013) because one message waited send_timeout_s for the client.",
        [("", m.send_timeouts)],
    )
    metric(
        "callcost_gateway_rate_limit_closes_total",
        "counter",
        "Connections closed (1008) for sending on after request_burst refused requests.",
        [("", m.rate_limit_closes)],
    )
    metric(
        "callcost_gateway_connections_refused_total",
        "counter",
        "Connections refused: too_many_connections (handshake answered 503), per_ip "
        "(closed at once).",
        [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(m.refused.items())],
    )
    metric(
        "callcost_gateway_reads_paused_total",
        "counter",
        "Times a connection was not read while its unread pongs filled the write buffer.",
        [("", m.reads_paused)],
    )
    metric(
        "callcost_gateway_auth_refused_total",
        "counter",
        "Requests refused by access control, by kind (http, websocket handshake) and reason "
        "(unauthorized: 401, forbidden: 403 for the role, origin: 403 for the Origin).",
        [
            (f'{{kind="{_label(k)}",reason="{_label(r)}"}}', n)
            for (k, r), n in sorted(m.auth_refused.items())
        ],
    )
    metric(
        "callcost_gateway_http_requests_total",
        "counter",
        "HTTP requests other than websocket handshakes, by route and status.",
        [(f'{{route="{_label(r)}",status="{s}"}}', n) for (r, s), n in sorted(m.http.items())],
    )
    metric(
        "callcost_gateway_reader_caught_up",
        "gauge",
        "1 once the topic's reader reached the end offsets it saw at start.",
        [(f'{{topic="{_label(t)}"}}', int(r.caught_up)) for t, r in gateway.readers.items()],
    )
    metric(
        "callcost_gateway_centres",
        "gauge",
        "Centres with figures.",
        [("", len(gateway.figures.centres()))],
    )
    metric("callcost_gateway_figures", "gauge", "Figures held.", [("", len(gateway.figures))])
    metric(
        "callcost_gateway_alerts_firing",
        "gauge",
        "Alerts firing now.",
        [("", gateway.alerts.firing_count)],
    )
    metric(
        "callcost_gateway_control_consumed_total",
        "counter",
        "Control records (acks, snoozes, deliveries) read from Kafka.",
        [("", m.consumed[gateway.control_topic])],
    )
    metric(
        "callcost_gateway_control_writes_total",
        "counter",
        "Control records written, by type and result.",
        [
            (f'{{type="{_label(t)}",result="{_label(r)}"}}', n)
            for (t, r), n in sorted(m.control_writes.items())
        ],
    )
    metric(
        "callcost_gateway_acks",
        "gauge",
        "Acknowledgements held.",
        [("", gateway.control.ack_count)],
    )
    metric(
        "callcost_gateway_snoozes_active",
        "gauge",
        "Snoozes active now.",
        [("", len(gateway.control.snoozes(gateway.clock())))],
    )
    workers = sorted(gateway.sink_workers.items())

    def per_sink(attr: str) -> list[tuple[str, int]]:
        return [(f'{{sink="{_label(i)}"}}', getattr(w, attr)) for i, w in workers]

    for name, kind, help_text, attr in (
        ("deliveries_total", "counter", "Alert messages delivered (2xx).", "delivered"),
        ("failures_total", "counter", "Delivery attempts that failed.", "failures"),
        ("retries_total", "counter", "Delivery attempts made again after a failure.", "retries"),
        (
            "record_errors_total",
            "counter",
            "Deliveries whose record could not be written to the control topic.",
            "record_errors",
        ),
        ("queued", "gauge", "Alert messages waiting to be delivered.", "queued"),
    ):
        metric(f"callcost_gateway_sink_{name}", kind, help_text, per_sink(attr))
    skipped = gateway.dispatcher.skipped
    metric(
        "callcost_gateway_sink_skipped_total",
        "counter",
        "Alert messages a sink takes but was not sent, by reason: duplicate (sent "
        "already), stale (older than the replay horizon at start), snoozed (waited for a "
        "snooze), unannounced (resolved of a firing never sent), dropped (queue full), "
        "gave_up (every attempt failed).",
        [
            (f'{{sink="{_label(i)}",reason="{r}"}}', skipped[(i, r)])
            for i, _ in workers
            for r in sk.REASONS
        ],
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Kafka


class TopicReader:
    """Reads every partition of one topic from the beginning, then follows it.

    ``handle(values)`` receives the values of each batch of records, in offset order per
    partition (``raw``: the records). ``on_caught_up()`` is called once, when the reader
    first reaches the end offsets it saw at start. Connection failures are retried with
    backoff, resuming at the next offset of each partition; nothing here stops the
    gateway.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        handle: Callable[[list[Any]], None],
        *,
        raw: bool = False,
        on_caught_up: Callable[[], None] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        #: the connection's security (callcost.kafka_client.aiokafka_kwargs)
        self.client_kwargs = dict(client_kwargs or {})
        self.topic = topic
        #: with ``raw`` it receives the records themselves (key, value, partition, offset)
        self.handle = handle
        self.raw = raw
        self.on_caught_up = on_caught_up
        self.caught_up = False
        self.partitions = 0
        self.error: str | None = None
        #: end offsets seen at start, by partition: caught up once all are reached
        self.target: dict[int, int] | None = None
        #: the next offset to read, by partition
        self.offsets: dict[int, int] = {}

    def status(self) -> dict[str, Any]:
        lag = None
        if self.target is not None:
            lag = sum(max(0, end - self.offsets.get(n, 0)) for n, end in self.target.items())
        return {
            "caught_up": self.caught_up,
            "partitions": self.partitions,
            "to_catch_up": lag,
            "error": self.error,
        }

    async def run(self) -> None:
        # aiokafka is imported here so that the HTTP/websocket layer (and its tests that
        # feed the stores directly) never pays for it.
        from aiokafka import AIOKafkaConsumer, TopicPartition

        backoff = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="callcost-gateway",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # the worker may publish in transactions: never show aborted figures
                isolation_level="read_committed",
                **self.client_kwargs,
            )
            try:
                await consumer.start()
                parts = await self._wait_for_topic(consumer)
                tps = [TopicPartition(self.topic, part) for part in parts]
                consumer.assign(tps)
                for tp in tps:
                    if tp.partition in self.offsets:
                        consumer.seek(tp, self.offsets[tp.partition])
                    else:
                        await consumer.seek_to_beginning(tp)
                if self.target is None:
                    ends = await consumer.end_offsets(tps)
                    self.target = {tp.partition: end for tp, end in ends.items()}
                self.partitions = len(tps)
                self.error = None
                backoff = 0.5
                await self._check_caught_up(consumer, tps)
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for tp, records in batches.items():
                        if records:
                            self.offsets[tp.partition] = records[-1].offset + 1
                            self.handle(records if self.raw else [r.value for r in records])
                    await self._check_caught_up(consumer, tps)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("reader %s: %s; retrying in %.1fs", self.topic, self.error, backoff)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _wait_for_topic(self, consumer: Any) -> list[int]:
        while True:
            # consumer.topics() fetches this same metadata but returns only the names,
            # and partitions_for_topic() knows only topics already tracked: ask the
            # client for the cluster's metadata directly.
            cluster = await consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(self.topic)
            if parts:
                return sorted(parts)
            self.error = f"topic {self.topic!r} does not exist (yet)"
            await asyncio.sleep(1.0)

    async def _check_caught_up(self, consumer: Any, tps: list[Any]) -> None:
        if self.caught_up or self.target is None:
            return
        for tp in tps:
            position = await consumer.position(tp)
            self.offsets[tp.partition] = position
            if position < self.target.get(tp.partition, 0):
                return
        self.caught_up = True
        log.info("reader %s: caught up (%d partitions)", self.topic, len(tps))
        if self.on_caught_up is not None:
            self.on_caught_up()


class KafkaControlWriter:
    """Writes control records to the control topic and says where they landed.

    The producer starts at the first write (a gateway serves without a broker, and
    answers ``unavailable`` to writes until there is one), with ``acks=all``: a record
    acknowledged is a record the next gateway reads.
    """

    def __init__(
        self, bootstrap: str, topic: str, client_kwargs: dict[str, Any] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        #: the connection's security (callcost.kafka_client.aiokafka_kwargs)
        self.client_kwargs = dict(client_kwargs or {})
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def _started(self) -> Any:
        async with self._lock:
            if self._producer is None:
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id="callcost-gateway",
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=int(CONTROL_WRITE_TIMEOUT_S * 1000),
                    **self.client_kwargs,
                )
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def write(self, record: c.Record) -> c.Position:
        key, value = record.encoded()
        async with asyncio.timeout(CONTROL_WRITE_TIMEOUT_S):
            producer = await self._started()
            meta = await producer.send_and_wait(self.topic, value=value, key=key)
        return (meta.partition, meta.offset)

    async def stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None


class LocalControlWriter:
    """The control "topic" of a gateway without Kafka: one partition in memory."""

    def __init__(self) -> None:
        self.records: list[c.Record] = []

    async def write(self, record: c.Record) -> c.Position:
        self.records.append(record)
        return (0, len(self.records) - 1)

    async def stop(self) -> None:
        pass


class SinkWorker:
    """Delivers the alert messages queued for one sink, one at a time, in order.

    The queue is bounded (``queue_size``; the oldest message is dropped when full) and
    only this task waits on the endpoint: the readers and the websocket clients never
    do. Each message is tried up to ``max_attempts`` times, ``timeout_s`` each, with
    exponential backoff and jitter between attempts (:func:`callcost.web.sinks.backoff_s`).
    """

    def __init__(self, gateway: Gateway, sink: Sink) -> None:
        self.gateway = gateway
        self.sink = sink
        self.queue: deque[dict[str, Any]] = deque()
        self.wakeup = asyncio.Event()
        self.delivered = 0
        self.failures = 0
        self.retries = 0
        self.record_errors = 0
        self.last_error: str | None = None
        self._dropped_logged = 0

    @property
    def queued(self) -> int:
        return len(self.queue)

    def put(self, alert: dict[str, Any]) -> None:
        if len(self.queue) >= self.sink.queue_size:
            oldest = self.queue.popleft()
            self.gateway.dispatcher.abandoned(self.sink, oldest, "dropped")
            self._dropped_logged += 1
            if self._dropped_logged <= 10 or self._dropped_logged % 1000 == 0:
                log.warning(
                    "sink %s: queue full (%d), dropped %s %s",
                    self.sink.id,
                    self.sink.queue_size,
                    oldest["id"],
                    oldest["state"],
                )
        self.queue.append(alert)
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                alert = self.queue.popleft()
                if self.gateway.dispatcher.take(self.sink, alert, self.gateway.clock()):
                    await self._deliver(alert)

    async def _deliver(self, alert: dict[str, Any]) -> None:
        sink, gateway = self.sink, self.gateway
        body = sk.payload(alert, gateway.settings)
        attempt = 0
        while True:
            attempt += 1
            result = await self._post(body, sk.headers(sink, alert, body, gateway.clock()))
            if result == "ok":
                self.delivered += 1
                gateway.dispatcher.delivered(sink, alert)
                record = c.sent_record(sink.id, alert, gateway.clock())
                try:
                    await gateway.write_control(record)
                except Exception as exc:
                    self.record_errors += 1
                    log.warning(
                        "sink %s: cannot record delivery of %s: %s", sink.id, alert["id"], exc
                    )
                return
            self.failures += 1
            if result == "fail" or attempt >= sink.max_attempts:
                gateway.dispatcher.abandoned(sink, alert, "gave_up")
                log.warning(
                    "sink %s: gave up on %s %s after %d attempts: %s",
                    sink.id,
                    alert["id"],
                    alert["state"],
                    attempt,
                    self.last_error,
                )
                return
            self.retries += 1
            await asyncio.sleep(sk.backoff_s(attempt, sink.backoff_s, random.random()))

    async def _post(self, body: bytes, headers: dict[str, str]) -> str:
        import aiohttp

        session = self.gateway.http_session()
        try:
            async with session.post(
                self.sink.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.sink.timeout_s),
            ) as resp:
                await resp.read()
                result = sk.outcome(resp.status)
                self.last_error = None if result == "ok" else f"HTTP {resp.status}"
                return result
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self.last_error = f"no answer in {self.sink.timeout_s:g} s"
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
        return "retry"


class _Connection(ServerConnection):
    """A websockets connection that also takes HTTP request bodies, and keeps what it
    holds for its client bounded.

    ``websockets`` serves plain HTTP through ``process_request`` but refuses a request
    with a body. This reads a request's head and, when it announces one, its body
    (``Content-Length``, at most ``max_request_bytes``), keeps the body in :attr:`body`,
    and hands websockets the head without it.

    It also counts the connections of each address (``max_connections_per_ip``: one
    more is closed at once), and stops reading a websocket whose write buffer holds more
    than :data:`READ_PAUSE_FACTOR` times ``write_buffer_bytes``: websockets answers
    every ping with a pong written at once, so a client that sends pings and reads
    nothing would otherwise grow the buffer without end.

    :meth:`Gateway.start` makes a subclass whose :attr:`gateway` is set.
    """

    gateway: ClassVar[Gateway]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body: bytes | None = None
        #: who the websocket handshake's token says the client is (set by the gateway)
        self.principal: a.Principal | None = None
        self._head: bytearray | None = bytearray()
        self._continued = False
        self._refused = False
        #: the peer's address, once counted toward its per-address limit
        self.ip: str | None = None
        #: counted toward max_connections (the websocket handshake was let through)
        self.admitted = False
        self._paused_for_writes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        gateway = self.gateway
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.ip = ip
        gateway.per_ip[ip] += 1
        limit = gateway.limits.max_connections_per_ip
        if limit and gateway.per_ip[ip] > limit:
            gateway.metrics.refused["per_ip"] += 1
            self._refused = True
            self._head = bytearray()
            self.transport.abort()  # before reading anything: nothing is held for it

    def connection_lost(self, exc: Exception | None) -> None:
        gateway = self.gateway
        if self.ip is not None:
            gateway.per_ip[self.ip] -= 1
            if gateway.per_ip[self.ip] <= 0:
                del gateway.per_ip[self.ip]
            self.ip = None
        if self.admitted:
            self.admitted = False
            gateway.websockets_admitted -= 1
        super().connection_lost(exc)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._paused_for_writes:
            self._paused_for_writes = False
            # unless the incoming queue is full (then websockets resumes reading)
            if not self.recv_messages.paused:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head is None:
            super().data_received(data)
            limit = READ_PAUSE_FACTOR * self.gateway.limits.write_buffer_bytes
            if (
                not self._paused_for_writes
                and self.transport.get_write_buffer_size() > limit
                and not self.transport.is_closing()
            ):
                self._paused_for_writes = True
                self.gateway.metrics.reads_paused += 1
                self.transport.pause_reading()
            return
        max_body = self.gateway.limits.max_request_bytes
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 2 * max_body:
                self._pass(bytes(self._head))  # websockets answers it
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        lines = head.split(b"\r\n")
        kept, length, chunked, expect = [lines[0]], 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                if not value.strip().isdigit():
                    self._refuse(400, "bad_request", "Content-Length is not a number")
                    return
                length = int(value.strip())
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"expect":
                expect = value.strip().lower() == b"100-continue"
            else:
                kept.append(line)
        if chunked:
            self._refuse(411, "length_required", "send the body with a Content-Length")
        elif length > max_body:
            self._refuse(413, "too_large", f"a request body is at most {max_body} bytes")
        elif length == 0:
            self._pass(b"\r\n".join(kept) + rest)
        elif len(rest) < length:
            if expect and not self._continued:
                self._continued = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        else:
            self.body = rest[:length]
            self._pass(b"\r\n".join(kept) + rest[length:])

    def _pass(self, data: bytes) -> None:
        self._head = None
        super().data_received(data)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._head = bytearray()  # nothing more reaches websockets
        self._refused = True
        resp = error_response(status, code, message)
        head = f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}\r\n".encode()
        self.transport.write(head + resp.headers.serialize() + resp.body)
        self.transport.close()


# --------------------------------------------------------------------------- gateway


class _Client:
    """One websocket connection: its session and the sender task's wake-up."""

    def __init__(self, gateway: Gateway, ws: ServerConnection, session: p.Session) -> None:
        self.gateway = gateway
        self.ws = ws
        self.session = session
        self.wakeup = asyncio.Event()
        self.closing: asyncio.Task[None] | None = None
        #: the centres of its figures subscriptions (``Gateway._figures_clients``)
        self.centres: frozenset[str] = frozenset()

    def poke(self) -> None:
        """Something was queued: wake the sender, or drop a client that fell behind."""
        if self.session.overflowed:
            if self.closing is None:
                self.gateway.metrics.slow_closes += 1
                log.warning(
                    "closing %s: %d messages waiting",
                    self.ws.remote_address,
                    self.session.pending,
                )
                self.drop(CloseCode.TRY_AGAIN_LATER, "client too slow")
        else:
            self.wakeup.set()

    def drop(self, code: int, reason: str) -> None:
        """Close the connection with ``code``; a client that does not take the close
        frame within ``close_timeout_s`` (its TCP window is full) is cut off."""
        if self.closing is None:
            self.closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self.gateway.limits.close_timeout_s):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()


class Gateway:
    """The gateway: ``await start()``, then ``.port``; ``await stop()``.

    With ``bootstrap=None`` no Kafka reader runs and the stores are fed only through
    :meth:`ingest_figures` / :meth:`ingest_alerts` / :meth:`ingest_control` (the readers'
    own entry points), for embedding and tests of the websocket and HTTP layers; control
    writes then go to memory (:class:`LocalControlWriter`).

    ``settings`` gives the webhook sinks (``[[sinks]]``), for their text each centre's
    currency and time zone, and the limits (``[gateway]``); ``limits`` replaces those,
    and ``max_subscriptions``, ``soft_limit`` and ``hard_limit``, when given, replace
    theirs. ``clock`` (ms since the epoch) is the only source of time for acks, snoozes
    and the sinks' replay horizon.
    """

    def __init__(
        self,
        bootstrap: str | None,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        figures_topic: str = FIGURES,
        alerts_topic: str = ALERTS,
        control_topic: str = CONTROL,
        settings: Settings | None = None,
        clock: Callable[[], int] = wall_ms,
        static_dir: Path = STATIC_DIR,
        limits: GatewaySettings | None = None,
        max_subscriptions: int | None = None,
        soft_limit: int | None = None,
        hard_limit: int | None = None,
        sink_tick_s: float = 1.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.host = host
        self.port = port
        self.figures_topic = figures_topic
        self.alerts_topic = alerts_topic
        self.control_topic = control_topic
        self.settings = settings if settings is not None else Settings()
        self.clock = clock
        self.sink_tick_s = sink_tick_s
        self.static_dir = static_dir.resolve()
        overrides = {
            "max_subscriptions": max_subscriptions,
            "soft_limit": soft_limit,
            "hard_limit": hard_limit,
        }
        self.limits: GatewaySettings = replace(
            limits if limits is not None else self.settings.gateway,
            **{k: v for k, v in overrides.items() if v is not None},
        )
        self.session_limits = {
            "max_subscriptions": self.limits.max_subscriptions,
            "soft_limit": self.limits.soft_limit,
            "hard_limit": self.limits.hard_limit,
        }
        #: open TCP connections by peer address (``max_connections_per_ip``)
        self.per_ip: Counter[str] = Counter()
        #: websocket handshakes let through and not closed yet (``max_connections``)
        self.websockets_admitted = 0
        self.figures = p.FigureStore()
        self.alerts = p.AlertStore()
        self.control = c.ControlStore()
        self.metrics = Metrics()
        self.clients: set[_Client] = set()
        #: centre -> the clients with a figures subscription to it: a figures message
        #: visits its subscribers only, not every connection (issue 7, fan-out)
        self._figures_clients: dict[str, set[_Client]] = {}
        self.readers: dict[str, TopicReader] = {}
        #: every Kafka client's security, from [kafka] and CALLCOST_KAFKA_* (settings)
        self.kafka_kwargs: dict[str, Any] = aiokafka_kwargs(self.settings) if bootstrap else {}
        self.writer: KafkaControlWriter | LocalControlWriter = (
            KafkaControlWriter(bootstrap, control_topic, self.kafka_kwargs)
            if bootstrap
            else LocalControlWriter()
        )
        sinks = self.settings.sinks
        self.dispatcher = sk.Dispatcher(sinks, self.control, clock(), ready=not bootstrap)
        self.sink_workers: dict[str, SinkWorker] = {s.id: SinkWorker(self, s) for s in sinks}
        self._http: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._started = time.monotonic()
        self._bad_logged: Counter[str] = Counter()
        # access: from the settings' [gateway] (never from ``limits``, so that a test or
        # an embedder that replaces the limits cannot drop the tokens by mistake)
        access = self.settings.gateway
        self.authenticator = a.Authenticator(access.tokens)
        self.tls = access.tls_cert is not None
        self.origin_policy = a.OriginPolicy(access.origins, tls=self.tls)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        limits = self.limits
        connection_class = type("_GatewayConnection", (_Connection,), {"gateway": self})
        ssl_context = self._ssl_context()
        for name in ("websockets.server", "callcost.gateway"):
            install_redaction(logging.getLogger(name))
        try:
            self._server = await serve(
                self._handler,
                self.host,
                self.port,
                process_request=self._process_request,
                # No permessage-deflate: every update is sent to many clients, and
                # compression costs CPU per frame per client (deflate cannot share one
                # compressed frame between connections, each has its own context). The
                # frames are small JSON on a LAN; CPU on fan-out matters more than bytes.
                compression=None,
                # one message, whole or in fragments (at most 4096 of them, websockets)
                max_size=limits.max_frame_bytes,
                open_timeout=limits.open_timeout_s,
                ping_interval=limits.ping_interval_s or None,
                ping_timeout=limits.ping_timeout_s,
                close_timeout=limits.close_timeout_s,
                write_limit=limits.write_buffer_bytes,
                create_connection=connection_class,
                # a burst of connections waits in the kernel's queue, not refused
                backlog=4096,
                ssl=ssl_context,
                # callcost.v1 when offered, never a token's subprotocol, and no error when
                # none is offered (websockets' own negotiation refuses that)
                select_subprotocol=lambda _conn, offered: a.select_subprotocol(offered),
            )
        except OSError as exc:
            raise CallcostError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
        if self.authenticator.open:
            log.warning(
                "NO ACCESS CONTROL: %s has no [[gateway.tokens]]; anyone who reaches "
                "%s:%d reads every figure and alert, and acknowledges and snoozes alerts. "
                "Configure tokens (README, Security).",
                self.settings.source,
                self.host,
                self.port,
            )
        else:
            roles = Counter(t.role for t in self.authenticator.tokens)
            log.info(
                "access control: %d token(s) (%s); origins: own host%s; %s",
                len(self.authenticator.tokens),
                ", ".join(f"{n} {r}" for r, n in sorted(roles.items())),
                "".join(f", {o}" for o in self.settings.gateway.origins),
                "TLS" if self.tls else "no TLS",
            )
        self.dispatcher = sk.Dispatcher(
            self.settings.sinks, self.control, self.clock(), ready=not self.bootstrap
        )
        if self.bootstrap:
            self.readers[self.control_topic] = TopicReader(
                self.bootstrap,
                self.control_topic,
                self._ingest_control_records,
                raw=True,
                on_caught_up=self._release_sinks,
                client_kwargs=self.kafka_kwargs,
            )
            self.readers[self.figures_topic] = TopicReader(
                self.bootstrap,
                self.figures_topic,
                self.ingest_figures,
                client_kwargs=self.kafka_kwargs,
            )
            self.readers[self.alerts_topic] = TopicReader(
                self.bootstrap,
                self.alerts_topic,
                self.ingest_alerts,
                client_kwargs=self.kafka_kwargs,
            )
            for topic, reader in self.readers.items():
                self._tasks.append(asyncio.create_task(reader.run(), name=f"reader {topic}"))
        for sink_id, worker in self.sink_workers.items():
            self._tasks.append(asyncio.create_task(worker.run(), name=f"sink {sink_id}"))
        if self.sink_workers:
            self._tasks.append(asyncio.create_task(self._tick_sinks(), name="sink clock"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.writer.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def http_session(self) -> Any:
        """The HTTP client of the sinks (aiohttp), made at the first delivery."""
        if self._http is None:
            import aiohttp

            self._http = aiohttp.ClientSession()
        return self._http

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def caught_up(self) -> bool:
        return all(r.caught_up for r in self.readers.values())

    # ----------------------------------------------------------------- topics

    def _bad(self, topic: str, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, p.BadMessage) else "error"
        self.metrics.bad[(topic, reason)] += 1
        self._bad_logged[topic] += 1
        n = self._bad_logged[topic]
        if n <= 10 or n % 1000 == 0:
            log.warning("skipped bad message #%d on %s: %s", n, topic, exc)

    def ingest_figures(self, values: Iterable[bytes | str | None]) -> None:
        """Apply ``cost-figures`` message values, then send the news to the clients.

        Only the newest accepted message of each centre in the batch is fanned out: a
        figures message is the whole state of its centre, so the older ones are stale.
        """
        newest: dict[str, p.FiguresMessage] = {}
        for value in values:
            try:
                if value is None:
                    raise p.BadMessage("no_value", "a message without a value (tombstone)")
                message = p.parse_figures(value)
                self.metrics.consumed[self.figures_topic] += 1
                if self.figures.apply(message):
                    newest[message.centre] = message
            except Exception as exc:
                self._bad(self.figures_topic, exc)
        for message in newest.values():
            update = p.FiguresUpdate(message)
            for client in list(self._figures_clients.get(message.centre, ())):
                if client.session.on_figures(update):
                    client.poke()

    def _index(self, client: _Client, *, gone: bool = False) -> None:
        """Bring ``_figures_clients`` in step with ``client``'s subscriptions (after
        each request it made; ``gone``: it disconnected)."""
        centres = frozenset(
            ()
            if gone
            else (s.centre for s in client.session.subscriptions.values()
                  if s.channel == "figures" and s.centre is not None)
        )  # fmt: skip
        if centres == client.centres:
            return
        for centre in client.centres - centres:
            group = self._figures_clients.get(centre)
            if group is not None:
                group.discard(client)
                if not group:
                    del self._figures_clients[centre]
        for centre in centres - client.centres:
            self._figures_clients.setdefault(centre, set()).add(client)
        client.centres = centres

    def ingest_alerts(self, values: Iterable[bytes | str | None]) -> None:
        """Apply ``cost-alerts`` message values, sending each new one to the clients."""
        for value in values:
            try:
                if value is None:
                    raise p.BadMessage("no_value", "a message without a value (tombstone)")
                alert = p.parse_alert(value)
                self.metrics.consumed[self.alerts_topic] += 1
                if not self.alerts.apply(alert):
                    continue
            except Exception as exc:
                self._bad(self.alerts_topic, exc)
                continue
            for client in list(self.clients):
                if client.session.on_alert(alert):
                    client.poke()
            self._queue(self.dispatcher.offer(alert, self.clock()))

    def ingest_control(
        self, records: Iterable[tuple[str | bytes | None, bytes | str | None, c.Position | None]]
    ) -> None:
        """Apply ``callcost-control`` records (key, value, (partition, offset)), sending
        the acks and snoozes they change to the clients."""
        self._apply_control(records, read=True)

    def _apply_control(
        self,
        records: Iterable[tuple[str | bytes | None, bytes | str | None, c.Position | None]],
        *,
        read: bool,
    ) -> None:
        """``read``: records read from the topic (counted), else this gateway's writes."""
        snoozed = False
        for key, value, position in records:
            try:
                if key is None:
                    raise p.BadMessage("no_key", "a control record without a key")
                if isinstance(key, bytes):
                    key = key.decode("utf-8", errors="replace")
                record = self.control.apply(key, value, position)
                if read:
                    self.metrics.consumed[self.control_topic] += 1
            except Exception as exc:
                self._bad(self.control_topic, exc)
                continue
            if record is None:
                continue
            snoozed = snoozed or record["type"] == "snooze"
            for client in list(self.clients):
                if client.session.on_control(record):
                    client.poke()
        if snoozed:
            self._queue(self.dispatcher.tick(self.clock()))

    def _ingest_control_records(self, records: list[Any]) -> None:
        self.ingest_control((r.key, r.value, (r.partition, r.offset)) for r in records)

    async def write_control(self, record: c.Record) -> dict[str, Any]:
        """Write ``record`` to the control topic, then apply it here at once (its
        read-back changes nothing). Raises when it cannot be written."""
        kind = record.value["type"]
        try:
            position = await self.writer.write(record)
        except Exception:
            self.metrics.control_writes[(kind, "error")] += 1
            raise
        self.metrics.control_writes[(kind, "ok")] += 1
        self._apply_control([(record.key, record.encoded()[1], position)], read=False)
        return record.value

    # ----------------------------------------------------------------- sinks

    def _queue(self, pairs: list[tuple[Sink, dict[str, Any]]]) -> None:
        for sink, alert in pairs:
            self.sink_workers[sink.id].put(alert)

    def _release_sinks(self) -> None:
        """The control topic is read: what was delivered is known, deliver the rest."""
        before = Counter(self.dispatcher.skipped)
        self._queue(self.dispatcher.release(self.clock()))
        for sink_id in self.sink_workers:
            stale = self.dispatcher.skipped[(sink_id, "stale")] - before[(sink_id, "stale")]
            sent = self.dispatcher.skipped[(sink_id, "duplicate")] - before[(sink_id, "duplicate")]
            queued = self.sink_workers[sink_id].queued
            log.info(
                "sink %s: %d alert messages to send, %d sent before, %d older than the "
                "replay horizon not sent",
                sink_id,
                queued,
                sent,
                stale,
            )

    async def _tick_sinks(self) -> None:
        """The clock of the snoozes: messages whose snooze ended go out."""
        while True:
            await asyncio.sleep(self.sink_tick_s)
            if self.dispatcher.ready:
                self._queue(self.dispatcher.tick(self.clock()))

    # ----------------------------------------------------------------- websocket

    async def _handler(self, ws: ServerConnection) -> None:
        principal = getattr(ws, "principal", None)
        if principal is None and self.authenticator.open:
            principal = a.OPEN
        if principal is None:  # a handshake that did not pass _check_handshake
            await ws.close(CloseCode.POLICY_VIOLATION, "unauthorized")
            return
        session = p.Session(
            self.figures,
            self.alerts,
            self.control,
            **self.session_limits,
            permissions=None if principal is a.OPEN else principal.permissions,
            role=principal.role,
        )
        client = _Client(self, ws, session)
        self.clients.add(client)
        self.metrics.connections_total += 1
        limiter = p.RequestLimiter(self.limits.max_requests_per_s, self.limits.request_burst)
        sender = asyncio.create_task(self._sender(client))
        try:
            async for frame in ws:
                if not limiter.take(time.monotonic()):
                    if limiter.abusive:
                        self.metrics.rate_limit_closes += 1
                        log.warning(
                            "closing %s: %d requests above the rate limit in a row",
                            ws.remote_address,
                            limiter.refused_in_a_row,
                        )
                        client.drop(CloseCode.POLICY_VIOLATION, "request rate limit")
                        break
                    session.refuse(
                        frame,
                        "rate_limited",
                        f"more than {self.limits.max_requests_per_s:g} requests per second "
                        f"(bursts of {self.limits.request_burst}); this one was not handled",
                    )
                    self.metrics.errors["rate_limited"] += 1
                    client.poke()
                    continue
                reply = session.receive(frame, self.clock())
                self._index(client)
                if isinstance(reply, p.PendingWrite):
                    # the next request is read once this one is answered: replies
                    # keep the order of the requests
                    reply = await self._complete(session, reply)
                if reply["type"] == "error":
                    self.metrics.errors[reply["error"]] += 1
                client.poke()
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            self._index(client, gone=True)
            self.metrics.conflated_closed += session.conflated
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if client.closing is not None:
                with contextlib.suppress(Exception):
                    await client.closing

    async def _complete(self, session: p.Session, pending: p.PendingWrite) -> dict[str, Any]:
        try:
            record = await self.write_control(pending.record)
        except Exception as exc:
            log.warning("cannot write %s to %s: %r", pending.record.key, self.control_topic, exc)
            return session.write_failed(
                pending, f"cannot write to {self.control_topic}: {type(exc).__name__} {exc}"
            )
        return session.written(pending, record)

    async def _sender(self, client: _Client) -> None:
        session, ws, sent = client.session, client.ws, self.metrics.sent
        send_timeout_s = self.limits.send_timeout_s
        try:
            while True:
                await client.wakeup.wait()
                client.wakeup.clear()
                while client.closing is None:
                    message = session.next_message()
                    if message is None:
                        break
                    # send() waits while the client's TCP buffer is full: only this
                    # task waits, and the outbox behind it conflates or overflows.
                    try:
                        async with asyncio.timeout(send_timeout_s):
                            await ws.send(p.encode(message), text=True)
                    except TimeoutError:
                        self.metrics.send_timeouts += 1
                        self.metrics.slow_closes += 1
                        log.warning(
                            "closing %s: a message waited %gs for it", ws.remote_address,
                            send_timeout_s,
                        )  # fmt: skip
                        client.drop(CloseCode.TRY_AGAIN_LATER, "client too slow")
                        return
                    sent[message["type"]] += 1
        except ConnectionClosed:
            pass

    # ----------------------------------------------------------------- HTTP

    def _process_request(self, connection: ServerConnection, request: Request) -> Any:
        """A Response, or None for the websocket handshake, or a coroutine (a write)."""
        url = urlsplit(request.path)
        path = url.path
        if path == "/ws":
            refused = self._check_handshake(connection, request, url)
            if refused is not None:
                return refused
            return self._admit(connection)
        route = path if path in ROUTES else ("/static" if path.startswith("/static/") else "other")
        methods = METHODS.get(path, ("GET",))
        if request.method not in methods:
            resp = error_response(
                405,
                "method_not_allowed",
                f"{p.show(request.method)} is not allowed; use {' or '.join(methods)}",
                Allow=", ".join(methods),
            )
        else:
            principal, denied = self._authorize(connection, request, url, path)
            if denied is not None:
                resp = denied
            elif request.method == "POST":
                body = getattr(connection, "body", None)
                return self._post(route, path, body or b"")
            else:
                try:
                    query = parse_qs(url.query, keep_blank_values=True)
                    if path == "/api/whoami" and principal is not None:
                        resp = self._whoami(principal, query)
                    else:
                        resp = self._route(path, query)
                except p.RequestError as exc:
                    resp = error_response(400, exc.code, exc.message)
        self.metrics.http[(route, resp.status_code)] += 1
        return resp

    # ----------------------------------------------------------------- access

    def _ssl_context(self) -> ssl.SSLContext | None:
        access = self.settings.gateway
        if access.tls_cert is None or access.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(access.tls_cert, access.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{self.settings.source}: gateway.tls_cert, gateway.tls_key: cannot load "
                f"{access.tls_cert!r} with {access.tls_key!r}: {exc}"
            ) from None
        return context

    def _principal(
        self, connection: ServerConnection, request: Request, url: Any, subprotocols: list[str]
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
            if url.path == "/ws":
                return None, f"{NO_TOKEN}, or the subprotocol '{a.TOKEN_SUBPROTOCOL}TOKEN'"
            return None, NO_TOKEN
        principal = self.authenticator.authenticate(token)
        if principal is None:
            return None, "the token is not valid"
        return principal, ""

    def _refuse(
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
            p.show(path),
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

    def _origin_refused(
        self, kind: str, connection: ServerConnection, request: Request
    ) -> Response | None:
        origins = request.headers.get_all("Origin")
        hosts = request.headers.get_all("Host")
        origin = None if not origins else origins[0] if len(origins) == 1 else ""
        if self.origin_policy.allows(origin, hosts[0] if len(hosts) == 1 else None):
            return None
        return self._refuse(
            kind,
            "origin",
            connection,
            request,
            403,
            f"the origin {p.show(origin)} may not use this gateway; the gateway's own host "
            "and [gateway] origins may",
        )

    def _check_handshake(
        self, connection: ServerConnection, request: Request, url: Any
    ) -> Response | None:
        """None when the websocket handshake may go on (its principal kept on the
        connection); else 403 (``Origin``) or 401 (token)."""
        refused = self._origin_refused("websocket", connection, request)
        if refused is not None:
            return refused
        offered = a.offered_subprotocols(request.headers.get_all("Sec-WebSocket-Protocol"))
        principal, problem = self._principal(connection, request, url, offered)
        if principal is None:
            return self._refuse("websocket", "unauthorized", connection, request, 401, problem)
        if isinstance(connection, _Connection):
            connection.principal = principal
        return None

    def _authorize(
        self, connection: ServerConnection, request: Request, url: Any, path: str
    ) -> tuple[a.Principal | None, Response | None]:
        """(who, None) when the HTTP request may be served, else (who, a 401 or 403)."""
        if request.method == "POST":
            refused = self._origin_refused("http", connection, request)
            if refused is not None:
                return None, refused
        needed = PERMISSION_OF_ROUTE.get((request.method, path))
        if needed is None and path != "/api/whoami":
            return None, None  # a page, a static file, /healthz, or a 404
        principal, problem = self._principal(connection, request, url, [])
        if principal is None:
            return None, self._refuse("http", "unauthorized", connection, request, 401, problem)
        if needed is not None and not principal.can(needed):
            return principal, self._refuse(
                "http",
                "forbidden",
                connection,
                request,
                403,
                f"the role {p.show(principal.role)} may not use {request.method} {path}",
            )
        return principal, None

    def _whoami(self, principal: a.Principal, query: dict[str, list[str]]) -> Response:
        if query:
            name = sorted(query)[0]
            return error_response(400, "unknown_parameter", f"no parameter {p.show(name)}")
        return json_response(200, principal.describe())

    def _admit(self, connection: ServerConnection) -> Response | None:
        """None: the websocket handshake goes on; else 503 (``max_connections``)."""
        limit = self.limits.max_connections
        if self.websockets_admitted >= limit:
            self.metrics.refused["too_many_connections"] += 1
            return error_response(
                503,
                "too_many_connections",
                f"the gateway serves at most {limit} websocket connections; try again later",
                Retry_After="5",
            )
        if isinstance(connection, _Connection) and not connection.admitted:
            connection.admitted = True  # counted off when it closes
            self.websockets_admitted += 1
        return None

    async def _post(self, route: str, path: str, body: bytes) -> Response:
        """``POST /api/alerts/ack`` and ``POST /api/snoozes``: a control write."""
        try:
            try:
                request = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise p.RequestError("invalid_json", f"the body is not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise p.RequestError(
                    "not_an_object", f"the body must be a JSON object, got {p.show(request)}"
                )
            ops = ("ack",) if path == "/api/alerts/ack" else ("snooze", "unsnooze")
            op = request.get("op", ops[0])
            if op not in ops:
                raise p.RequestError(
                    "invalid_value", f"'op' must be {' or '.join(ops)} here, got {p.show(op)}"
                )
            pending = p.control_request(op, request, self.alerts, self.clock())
        except p.RequestError as exc:
            resp = error_response(STATUS_OF_ERROR.get(exc.code, 400), exc.code, exc.message)
        else:
            try:
                record = await self.write_control(pending.record)
            except Exception as exc:
                log.warning(
                    "cannot write %s to %s: %r", pending.record.key, self.control_topic, exc
                )
                resp = error_response(
                    503, "unavailable", f"cannot write to {self.control_topic}: {exc}"
                )
            else:
                resp = json_response(200, {pending.kind: record})
        self.metrics.http[(route, resp.status_code)] += 1
        return resp

    def _route(self, path: str, query: dict[str, list[str]]) -> Response:
        if path == "/api/figures":
            centre, scope, window = p.figures_query(query)
            return json_response(200, {"figures": self.figures.query(centre, scope, window)})
        if path == "/api/alerts":
            centre, state, since, until = p.alerts_query(query)
            alerts = self.alerts.query(centre, state, since=since, until=until)
            if state == "firing":
                now = self.clock()
                out = [self.control.with_ack_and_snooze(a, now) for a in alerts]
            else:
                out = [self.control.with_ack(a) for a in alerts]
            return json_response(200, {"alerts": out})
        if path == "/api/centres":
            if query:
                name = sorted(query)[0]
                return error_response(400, "unknown_parameter", f"no parameter {p.show(name)}")
            return json_response(200, {"centres": self.centres()})
        if path == "/api/snoozes":
            centre = p.snoozes_query(query)
            return json_response(200, {"snoozes": self.control.snoozes(self.clock(), centre)})
        if path == "/healthz":
            return self._health()
        if path == "/metrics":
            return response(200, render_metrics(self).encode(), PROMETHEUS)
        if path in PAGES:
            return static_file(self.static_dir, PAGES[path])
        if path.startswith("/static/"):
            return static_file(self.static_dir, path[len("/static/") :])
        return error_response(404, "not_found", f"no such path {p.show(path)}")

    def centres(self) -> list[dict[str, Any]]:
        """Every centre with figures or in the configuration: its zone, currency, band."""
        names = sorted(set(self.figures.centres()) | set(self.settings.centres))
        out = []
        for cid in names:
            rates = self.settings.rates_for(cid)
            out.append({"centre": cid, "timezone": rates.timezone, "currency": rates.currency,
                        "band": list(rates.band)})  # fmt: skip
        return out

    def _health(self) -> Response:
        caught_up = self.caught_up
        body = {
            "status": "ok" if caught_up else "starting",
            "caught_up": caught_up,
            "readers": {topic: r.status() for topic, r in self.readers.items()},
            "centres": len(self.figures.centres()),
            "figures": len(self.figures),
            "alerts": len(self.alerts),
            "firing": self.alerts.firing_count,
            "sinks": {
                sink_id: {
                    "ready": self.dispatcher.ready,
                    "queued": w.queued,
                    "delivered": w.delivered,
                    "last_error": w.last_error,
                }
                for sink_id, w in self.sink_workers.items()
            },
            "connections": len(self.clients),
            "uptime_s": round(time.monotonic() - self._started, 3),
        }
        return json_response(200 if caught_up else 503, body)


# --------------------------------------------------------------------------- entry points


async def serve_gateway(
    bootstrap: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    topics: tuple[str, ...] = (FIGURES, ALERTS, CONTROL),
    ready: asyncio.Event | None = None,
    settings: Settings | None = None,
) -> None:
    """Run a gateway until cancelled; ``ready`` is set once it listens.

    ``topics`` is (figures topic, alerts topic[, control topic]). Use :class:`Gateway`
    directly to learn the port chosen for ``port=0``.
    """
    gateway = Gateway(
        bootstrap,
        host,
        port,
        figures_topic=topics[0],
        alerts_topic=topics[1],
        control_topic=topics[2] if len(topics) > 2 else CONTROL,
        settings=settings,
    )
    await gateway.start()
    try:
        if ready is not None:
            ready.set()
        await asyncio.Future()
    finally:
        await gateway.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CALLCOST_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (default: $CALLCOST_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (%(default)s)")
    parser.add_argument("--figures-topic", default=FIGURES, help="figures topic (%(default)s)")
    parser.add_argument("--alerts-topic", default=ALERTS, help="alerts topic (%(default)s)")
    parser.add_argument(
        "--control-topic",
        default=CONTROL,
        help="acks, snoozes and webhook deliveries (compacted; %(default)s)",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("CALLCOST_CONFIG") or None,
        help="TOML settings: [[sinks]], centres' currency and time zone "
        "(default: $CALLCOST_CONFIG, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning"),
        help="debug also shows websockets' own log, every request and header (tokens "
        "redacted); %(default)s",
    )


class RedactTokens(logging.Filter):
    """Scrubs credentials (:func:`callcost.web.access.redact`) from a log record's
    message and traceback: websockets' debug log prints every request line and header,
    and an exception's text may quote a header."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        clean = a.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            clean = a.redact(text)
            if clean != text:
                record.exc_info, record.exc_text = None, clean
        elif record.exc_text:
            record.exc_text = a.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = a.redact(record.stack_info)
        return True


def install_redaction(target: logging.Logger | logging.Handler) -> None:
    """Add a :class:`RedactTokens` to a logger (its own records) or a handler (every
    record it writes), once."""
    if not any(isinstance(f, RedactTokens) for f in target.filters):
        target.addFilter(RedactTokens())


def run(args: argparse.Namespace) -> int:
    level = getattr(logging, str(getattr(args, "log_level", "info")).upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        install_redaction(handler)  # whatever logger a record comes from
    logging.getLogger("aiokafka").setLevel(max(level, logging.WARNING))
    if level > logging.DEBUG:
        # websockets logs every HTTP response and connection at INFO: too chatty for
        # /metrics scrapes and health checks
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = load_settings(args.config)  # a bad configuration stops start-up
    # credentials the broker refuses stop start-up too (no broker yet: the readers wait)
    await kafka_check(args.bootstrap, settings)
    gateway = Gateway(
        args.bootstrap,
        args.host,
        args.port,
        figures_topic=args.figures_topic,
        alerts_topic=args.alerts_topic,
        control_topic=args.control_topic,
        settings=settings,
    )
    await gateway.start()
    print(
        f"callcost gateway: {'https' if gateway.tls else 'http'}://{args.host}:{gateway.port}/ "
        f"(websocket /ws{', tokens required' if not gateway.authenticator.open else ''}), "
        f"reading {args.figures_topic}, {args.alerts_topic} and {args.control_topic} from "
        f"{args.bootstrap}; {len(settings.sinks)} webhook sink(s)",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await gateway.stop()
    return 0
