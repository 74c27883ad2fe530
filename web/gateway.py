"""The gateway's composition root: :class:`Gateway` wires stores, Kafka readers, control
writer, webhook workers, the websocket service and the HTTP side, and starts and stops
them.

The state lives in pure modules: a :class:`~callcost.web.stores.FigureStore`, an
:class:`~callcost.web.stores.AlertStore` and a :class:`~callcost.web.control.ControlStore`,
fed by one Kafka reader per topic (``cost-figures``, ``cost-alerts``,
``callcost-control``; :mod:`callcost.web.readers`), so that a gateway started at any time
rebuilds everything and holds nothing a restart can lose. A message a reader cannot
decode is counted (``/metrics``), logged and skipped. Acks and snoozes (websocket ops or
REST) are written to ``callcost-control`` before they are answered, applied at once and
sent to the alerts subscribers; the gateway's clock (``clock``) is the only time they
use. The webhook sinks (:mod:`callcost.web.webhooks`) decide nothing before the control
topic has been read. ``docs/PROTOCOL.md`` is what clients see; ``callcost gateway`` is
:mod:`callcost.web.gateway_cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Response

from callcost.errors import CallcostError
from callcost.kafka_client import aiokafka_kwargs
from callcost.streams.config import GatewaySettings, Settings
from callcost.streams.topics import ALERTS, CONTROL, FIGURES
from callcost.web import access as a
from callcost.web import sinks as sk
from callcost.web.clients import Client, FanOut, WebsocketService
from callcost.web.connection import GatewayConnection, admit
from callcost.web.control import ControlStore, Position, Record
from callcost.web.control_writer import ControlWriter, KafkaControlWriter, LocalControlWriter
from callcost.web.guard import Guard, ssl_context
from callcost.web.http_api import HttpApi
from callcost.web.messages import FiguresMessage, parse_alert, parse_figures
from callcost.web.metrics import Metrics, registry, render
from callcost.web.readers import TopicReader
from callcost.web.redaction import install_redaction
from callcost.web.responses import STATIC_DIR
from callcost.web.stores import AlertStore, FigureStore
from callcost.web.subscriptions import FiguresUpdate
from callcost.web.webhooks import SinkWorker, Webhooks
from callcost.web.wire import BadMessage

log = logging.getLogger("callcost.gateway")

#: a control record as a reader gives it: (key, value, (partition, offset))
ControlRecord = tuple[str | bytes | None, bytes | str | None, Position | None]


def wall_ms() -> int:
    """The gateway's clock: ms since the epoch."""
    return int(time.time() * 1000)


class Gateway:
    """The gateway: ``await start()``, then ``.port``; ``await stop()``.

    With ``bootstrap=None`` no Kafka reader runs and the stores are fed only through
    :meth:`ingest_figures` / :meth:`ingest_alerts` / :meth:`ingest_control` (the readers'
    own entry points), for embedding and tests of the websocket and HTTP layers; control
    writes then go to memory (:class:`LocalControlWriter`).

    ``settings`` gives the webhook sinks (``[[sinks]]``), for their text each centre's
    currency and time zone, the access control and the limits (``[gateway]``); ``limits``
    replaces those limits, and ``max_subscriptions``, ``soft_limit`` and ``hard_limit``,
    when given, replace theirs. ``clock`` (ms since the epoch) is the only source of time
    for acks, snoozes and the sinks' replay horizon.
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
        self.figures = FigureStore()
        self.alerts = AlertStore()
        self.control = ControlStore()
        self.metrics = Metrics()
        self.fanout = FanOut()
        self.clients: set[Client] = self.fanout.clients
        self.readers: dict[str, TopicReader] = {}
        #: every Kafka client's security, from [kafka] and CALLCOST_KAFKA_* (settings)
        self.kafka_kwargs: dict[str, Any] = aiokafka_kwargs(self.settings) if bootstrap else {}
        self.writer: ControlWriter = (
            KafkaControlWriter(bootstrap, control_topic, self.kafka_kwargs)
            if bootstrap
            else LocalControlWriter()
        )
        self.webhooks = Webhooks(
            self.settings, self.control, clock, self.write_control, ready=not bootstrap
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._started = time.monotonic()
        self._bad_logged: Counter[str] = Counter()
        # access: from the settings' [gateway] (never from ``limits``, so that a test or
        # an embedder that replaces the limits cannot drop the tokens by mistake)
        self.guard = Guard(self.settings, self.metrics)
        self.tls = self.guard.tls
        self.http_api = HttpApi(self)
        self.websockets = WebsocketService(
            figures=self.figures,
            alerts=self.alerts,
            control=self.control,
            fanout=self.fanout,
            metrics=self.metrics,
            limits=self.limits,
            session_limits=self.session_limits,
            clock=self.clock,
            write_control=self.write_control,
            control_topic=self.control_topic,
            open_access=self.guard.open,
        )
        self._registry = registry(self)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        limits = self.limits
        connection_class = type("_GatewayConnection", (GatewayConnection,), {"gateway": self})
        context = ssl_context(self.settings)
        for name in ("websockets.server", "callcost.gateway"):
            install_redaction(logging.getLogger(name))
        try:
            self._server = await serve(
                self.websockets.handle,
                self.host,
                self.port,
                process_request=self.http_api.process_request,
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
                ssl=context,
                # callcost.v1 when offered, never a token's subprotocol, and no error when
                # none is offered (websockets' own negotiation refuses that)
                select_subprotocol=lambda _conn, offered: a.select_subprotocol(offered),
            )
        except OSError as exc:
            raise CallcostError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
        self.guard.announce(self.host, self.port)
        self.webhooks.restart()
        if self.bootstrap:
            self._start_readers(self.bootstrap)
        self._tasks.extend(self.webhooks.tasks(self.sink_tick_s))

    def _start_readers(self, bootstrap: str) -> None:
        self.readers[self.control_topic] = TopicReader(
            bootstrap,
            self.control_topic,
            self._ingest_control_records,
            raw=True,
            on_caught_up=self.webhooks.release,
            client_kwargs=self.kafka_kwargs,
        )
        self.readers[self.figures_topic] = TopicReader(
            bootstrap, self.figures_topic, self.ingest_figures, client_kwargs=self.kafka_kwargs
        )
        self.readers[self.alerts_topic] = TopicReader(
            bootstrap, self.alerts_topic, self.ingest_alerts, client_kwargs=self.kafka_kwargs
        )
        for topic, reader in self.readers.items():
            self._tasks.append(asyncio.create_task(reader.run(), name=f"reader {topic}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.webhooks.close()
        await self.writer.stop()
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
        reason = exc.reason if isinstance(exc, BadMessage) else "error"
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
        newest: dict[str, FiguresMessage] = {}
        for value in values:
            try:
                if value is None:
                    raise BadMessage("no_value", "a message without a value (tombstone)")
                message = parse_figures(value)
                self.metrics.consumed[self.figures_topic] += 1
                if self.figures.apply(message):
                    newest[message.centre] = message
            except Exception as exc:
                self._bad(self.figures_topic, exc)
        for message in newest.values():
            self.fanout.figures(FiguresUpdate(message))

    def ingest_alerts(self, values: Iterable[bytes | str | None]) -> None:
        """Apply ``cost-alerts`` message values, sending each new one to the clients."""
        for value in values:
            try:
                if value is None:
                    raise BadMessage("no_value", "a message without a value (tombstone)")
                alert = parse_alert(value)
                self.metrics.consumed[self.alerts_topic] += 1
                if not self.alerts.apply(alert):
                    continue
            except Exception as exc:
                self._bad(self.alerts_topic, exc)
                continue
            self.fanout.alert(alert)
            self.webhooks.offer(alert)

    def ingest_control(self, records: Iterable[ControlRecord]) -> None:
        """Apply ``callcost-control`` records (key, value, (partition, offset)), sending
        the acks and snoozes they change to the clients."""
        self._apply_control(records, read=True)

    def _apply_control(self, records: Iterable[ControlRecord], *, read: bool) -> None:
        """``read``: records read from the topic (counted), else this gateway's writes."""
        snoozed = False
        for key, value, position in records:
            try:
                if key is None:
                    raise BadMessage("no_key", "a control record without a key")
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
            self.fanout.control(record)
        if snoozed:
            self.webhooks.snoozes_changed()

    def _ingest_control_records(self, records: list[Any]) -> None:
        self.ingest_control((r.key, r.value, (r.partition, r.offset)) for r in records)

    async def write_control(self, record: Record) -> dict[str, Any]:
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

    @property
    def dispatcher(self) -> sk.Dispatcher:
        return self.webhooks.dispatcher

    @property
    def sink_workers(self) -> dict[str, SinkWorker]:
        return self.webhooks.workers

    # ----------------------------------------------------------------- HTTP side

    def admit(self, connection: ServerConnection) -> Response | None:
        """None: the websocket handshake goes on; else 503 (``max_connections``)."""
        return admit(self, connection)

    def render_metrics(self) -> bytes:
        """``/metrics``: the Prometheus text of this gateway's own registry."""
        return render(self._registry)

    def status(self) -> dict[str, Any]:
        """``/healthz``'s body (200 when ``caught_up``, else 503)."""
        caught_up = self.caught_up
        return {
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
