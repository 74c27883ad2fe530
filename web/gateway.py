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
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from callcost.errors import CallcostError
from callcost.streams.config import Settings, Sink, load_settings
from callcost.streams.topics import ALERTS, CONTROL, FIGURES
from callcost.web import control as c
from callcost.web import protocol as p
from callcost.web import sinks as sk

log = logging.getLogger("callcost.gateway")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
#: requests are small JSON objects; anything bigger is closed with 1009 by websockets
MAX_FRAME = 64 * 1024

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
#: the largest HTTP request body (POST /api/alerts/ack, /api/snoozes)
MAX_BODY = 64 * 1024
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
)


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
    ) -> None:
        self.bootstrap = bootstrap
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

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
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
    """A websockets connection that also takes HTTP request bodies.

    ``websockets`` serves plain HTTP through ``process_request`` but refuses a request
    with a body. This reads a request's head and, when it announces one, its body
    (``Content-Length``, at most :data:`MAX_BODY`), keeps the body in :attr:`body`, and
    hands websockets the head without it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body: bytes | None = None
        self._head: bytearray | None = bytearray()
        self._continued = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head is None:
            super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 2 * MAX_BODY:
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
        elif length > MAX_BODY:
            self._refuse(413, "too_large", f"a request body is at most {MAX_BODY} bytes")
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
                self.closing = asyncio.create_task(
                    self.ws.close(CloseCode.TRY_AGAIN_LATER, "client too slow")
                )
        else:
            self.wakeup.set()


class Gateway:
    """The gateway: ``await start()``, then ``.port``; ``await stop()``.

    With ``bootstrap=None`` no Kafka reader runs and the stores are fed only through
    :meth:`ingest_figures` / :meth:`ingest_alerts` / :meth:`ingest_control` (the readers'
    own entry points), for embedding and tests of the websocket and HTTP layers; control
    writes then go to memory (:class:`LocalControlWriter`).

    ``settings`` gives the webhook sinks (``[[sinks]]``) and, for their text, each
    centre's currency and time zone. ``clock`` (ms since the epoch) is the only source
    of time for acks, snoozes and the sinks' replay horizon.
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
        max_subscriptions: int = p.MAX_SUBSCRIPTIONS,
        soft_limit: int = p.SOFT_LIMIT,
        hard_limit: int = p.HARD_LIMIT,
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
        self.session_limits = {
            "max_subscriptions": max_subscriptions,
            "soft_limit": soft_limit,
            "hard_limit": hard_limit,
        }
        self.figures = p.FigureStore()
        self.alerts = p.AlertStore()
        self.control = c.ControlStore()
        self.metrics = Metrics()
        self.clients: set[_Client] = set()
        self.readers: dict[str, TopicReader] = {}
        self.writer: KafkaControlWriter | LocalControlWriter = (
            KafkaControlWriter(bootstrap, control_topic) if bootstrap else LocalControlWriter()
        )
        sinks = self.settings.sinks
        self.dispatcher = sk.Dispatcher(sinks, self.control, clock(), ready=not bootstrap)
        self.sink_workers: dict[str, SinkWorker] = {s.id: SinkWorker(self, s) for s in sinks}
        self._http: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._started = time.monotonic()
        self._bad_logged: Counter[str] = Counter()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
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
                max_size=MAX_FRAME,
                create_connection=_Connection,
            )
        except OSError as exc:
            raise CallcostError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
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
            )
            self.readers[self.figures_topic] = TopicReader(
                self.bootstrap, self.figures_topic, self.ingest_figures
            )
            self.readers[self.alerts_topic] = TopicReader(
                self.bootstrap, self.alerts_topic, self.ingest_alerts
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
            for client in list(self.clients):
                if client.session.on_figures(update):
                    client.poke()

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
        session = p.Session(self.figures, self.alerts, self.control, **self.session_limits)
        client = _Client(self, ws, session)
        self.clients.add(client)
        self.metrics.connections_total += 1
        sender = asyncio.create_task(self._sender(client))
        try:
            async for frame in ws:
                reply = session.receive(frame, self.clock())
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
                    await ws.send(p.encode(message), text=True)
                    sent[message["type"]] += 1
        except ConnectionClosed:
            pass

    # ----------------------------------------------------------------- HTTP

    def _process_request(self, connection: ServerConnection, request: Request) -> Any:
        """A Response, or None for the websocket handshake, or a coroutine (a write)."""
        url = urlsplit(request.path)
        path = url.path
        if path == "/ws":
            return None  # the websocket handshake goes on
        route = path if path in ROUTES else ("/static" if path.startswith("/static/") else "other")
        methods = METHODS.get(path, ("GET",))
        if request.method not in methods:
            resp = error_response(
                405,
                "method_not_allowed",
                f"{p.show(request.method)} is not allowed; use {' or '.join(methods)}",
                Allow=", ".join(methods),
            )
        elif request.method == "POST":
            body = getattr(connection, "body", None)
            return self._post(route, path, body or b"")
        else:
            try:
                resp = self._route(path, parse_qs(url.query, keep_blank_values=True))
            except p.RequestError as exc:
                resp = error_response(400, exc.code, exc.message)
        self.metrics.http[(route, resp.status_code)] += 1
        return resp

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


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # websockets logs every HTTP response and connection at INFO: too chatty for /metrics
    # scrapes and health checks
    logging.getLogger("websockets.server").setLevel(logging.WARNING)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = load_settings(args.config)  # a bad configuration stops start-up
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
        f"callcost gateway: http://{args.host}:{gateway.port}/ (websocket /ws), "
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
