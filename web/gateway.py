"""``callcost gateway``: the websocket/HTTP gateway, a thin asyncio shell.

One ``websockets`` server serves both the websocket protocol at ``/ws`` and, through
``process_request``, plain HTTP::

    GET /ws                                websocket (protocol: callcost.web.protocol)
    GET /api/figures?centre=&scope=&window=   {"figures": [...]}
    GET /api/alerts?centre=&state=firing|all  {"alerts": [...]}
    GET /healthz                           200 when the Kafka readers caught up, else 503
    GET /metrics                           Prometheus text
    GET /, /static/NAME                    the pages, from web/static/

``/healthz`` answers ``{"status": "ok"|"starting", "caught_up": bool, "readers": {TOPIC:
{"caught_up", "partitions", "to_catch_up", "error"}}, "centres", "figures", "alerts",
"firing", "connections", "uptime_s"}``; ``to_catch_up`` counts the messages still to read
up to the end offsets seen at start, ``error`` is the reader's last problem (no broker,
no topic yet) or null. Run without Kafka (``bootstrap=None``) it has no readers and is
always 200.

Every other path answers 404, every other method 405, a bad parameter 400, each with a
JSON body ``{"error": CODE, "message": TEXT}``. Each HTTP response closes its connection
(websockets serves one request per connection outside the websocket handshake).

The state lives in :mod:`callcost.web.protocol` (pure): a :class:`FigureStore` and an
:class:`AlertStore` fed by one Kafka reader task per topic. A reader takes no consumer
group: it assigns every partition of its topic, seeks to the beginning and reads to the
end, so a gateway started or restarted at any time rebuilds the latest figures and the
whole alert history from the topics; it holds nothing that a restart can lose.
``/healthz`` answers 503 until every reader has reached the end offsets it saw when it
started. A message a reader cannot decode is counted (``/metrics``), logged and skipped.

Each websocket client has a :class:`Session` whose outbox is drained by a sender task
of its own, so a slow client never holds up the readers nor the other clients: the
readers only append to outboxes. The outbox conflates figures updates when it fills
and the connection is closed with 1013 when it overflows (see the protocol module).
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
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from callcost.errors import CallcostError
from callcost.streams.topics import ALERTS, FIGURES
from callcost.web import protocol as p

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
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Kafka


class TopicReader:
    """Reads every partition of one topic from the beginning, then follows it.

    ``handle(values)`` receives the values of each batch of records, in offset order per
    partition. Connection failures are retried with backoff, resuming at the next offset
    of each partition; nothing here stops the gateway.
    """

    def __init__(
        self, bootstrap: str, topic: str, handle: Callable[[list[bytes | None]], None]
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.handle = handle
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
                            self.handle([r.value for r in records])
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
    :meth:`ingest_figures` / :meth:`ingest_alerts` (the readers' own entry points), for
    embedding and tests of the websocket and HTTP layers.
    """

    def __init__(
        self,
        bootstrap: str | None,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        figures_topic: str = FIGURES,
        alerts_topic: str = ALERTS,
        static_dir: Path = STATIC_DIR,
        max_subscriptions: int = p.MAX_SUBSCRIPTIONS,
        soft_limit: int = p.SOFT_LIMIT,
        hard_limit: int = p.HARD_LIMIT,
    ) -> None:
        self.bootstrap = bootstrap
        self.host = host
        self.port = port
        self.figures_topic = figures_topic
        self.alerts_topic = alerts_topic
        self.static_dir = static_dir.resolve()
        self.session_limits = {
            "max_subscriptions": max_subscriptions,
            "soft_limit": soft_limit,
            "hard_limit": hard_limit,
        }
        self.figures = p.FigureStore()
        self.alerts = p.AlertStore()
        self.metrics = Metrics()
        self.clients: set[_Client] = set()
        self.readers: dict[str, TopicReader] = {}
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
            )
        except OSError as exc:
            raise CallcostError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
        if self.bootstrap:
            for topic, handle in (
                (self.figures_topic, self.ingest_figures),
                (self.alerts_topic, self.ingest_alerts),
            ):
                reader = TopicReader(self.bootstrap, topic, handle)
                self.readers[topic] = reader
                self._tasks.append(asyncio.create_task(reader.run(), name=f"reader {topic}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

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

    # ----------------------------------------------------------------- websocket

    async def _handler(self, ws: ServerConnection) -> None:
        session = p.Session(self.figures, self.alerts, **self.session_limits)
        client = _Client(self, ws, session)
        self.clients.add(client)
        self.metrics.connections_total += 1
        sender = asyncio.create_task(self._sender(client))
        try:
            async for frame in ws:
                reply = session.receive(frame)
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

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path
        if path == "/ws":
            return None  # the websocket handshake goes on
        route = (
            path
            if path in ("/", "/api/figures", "/api/alerts", "/healthz", "/metrics")
            else ("/static" if path.startswith("/static/") else "other")
        )
        if request.method != "GET":
            resp = error_response(
                405,
                "method_not_allowed",
                f"{p.show(request.method)} is not allowed; use GET",
                Allow="GET",
            )
        else:
            try:
                resp = self._route(path, parse_qs(url.query, keep_blank_values=True))
            except p.RequestError as exc:
                resp = error_response(400, exc.code, exc.message)
        self.metrics.http[(route, resp.status_code)] += 1
        return resp

    def _route(self, path: str, query: dict[str, list[str]]) -> Response:
        if path == "/api/figures":
            centre, scope, window = p.figures_query(query)
            return json_response(200, {"figures": self.figures.query(centre, scope, window)})
        if path == "/api/alerts":
            centre, state = p.alerts_query(query)
            return json_response(200, {"alerts": self.alerts.query(centre, state)})
        if path == "/healthz":
            return self._health()
        if path == "/metrics":
            return response(200, render_metrics(self).encode(), PROMETHEUS)
        if path == "/":
            return static_file(self.static_dir, "index.html")
        if path.startswith("/static/"):
            return static_file(self.static_dir, path[len("/static/") :])
        return error_response(404, "not_found", f"no such path {p.show(path)}")

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
            "connections": len(self.clients),
            "uptime_s": round(time.monotonic() - self._started, 3),
        }
        return json_response(200 if caught_up else 503, body)


# --------------------------------------------------------------------------- entry points


async def serve_gateway(
    bootstrap: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    topics: tuple[str, str] = (FIGURES, ALERTS),
    ready: asyncio.Event | None = None,
) -> None:
    """Run a gateway until cancelled; ``ready`` is set once it listens.

    ``topics`` is (figures topic, alerts topic). Use :class:`Gateway` directly to learn
    the port chosen for ``port=0``.
    """
    gateway = Gateway(bootstrap, host, port, figures_topic=topics[0], alerts_topic=topics[1])
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
    gateway = Gateway(
        args.bootstrap,
        args.host,
        args.port,
        figures_topic=args.figures_topic,
        alerts_topic=args.alerts_topic,
    )
    await gateway.start()
    print(
        f"callcost gateway: http://{args.host}:{gateway.port}/ (websocket /ws), "
        f"reading {args.figures_topic} and {args.alerts_topic} from {args.bootstrap}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await gateway.stop()
    return 0
