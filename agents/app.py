"""``callcost worker``: the Faust app. call-events in; figures, alerts and rejects out.

One agent consumes the events topic in batches (``stream.take_events``) and hands each
batch of raw ``(key, value)`` messages to the pure engine
(:class:`callcost.streams.engine.Engine`). What the engine returns is produced, in
order: every rejected message, unchanged, to the dead-letter topic with headers saying
why and where it came from; every figures message to the figures topic and every alert
to the alerts topic, keyed by centre, as JSON.

Everything per batch happens in :meth:`Pipeline.consume`, the one place a faster batch
path has to change. The engine is called only while holding one lock, together with the
sends of its output, so the live-mode timer (``engine.tick``) and the agent never
interleave their messages: a centre's ``as_of`` never goes backwards on the topic.

Delivery: Faust acks a batch after ``consume`` returns and flushes the producer before
it commits offsets, so the output of a batch is in Kafka before its offsets are (at
least once). The engine's state lives in memory: a restarted worker resumes from the
committed offsets with an empty engine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from callcost.streams import topics

log = logging.getLogger("callcost.worker")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
SUMMARY_S = 10.0
TICK_S = 1.0
WAIT_S = 180.0  # for the broker and the input topic at start-up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--bootstrap", default=env("CALLCOST_BOOTSTRAP", DEFAULT_BOOTSTRAP),
                        help="Kafka bootstrap servers, host:port[,host:port] "
                             "(env CALLCOST_BOOTSTRAP; default %(default)s)")
    parser.add_argument("--config", default=env("CALLCOST_CONFIG"),
                        help="configuration TOML (env CALLCOST_CONFIG; default: SPEC defaults)")
    parser.add_argument("--group", default="callcost-worker",
                        help="consumer group, also the Faust app id (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="most events per engine batch (default %(default)s)")
    parser.add_argument("--batch-ms", type=float, default=100.0,
                        help="longest wait to fill a batch, ms (default %(default)s)")
    parser.add_argument("--web-port", type=int, default=0,
                        help="port of Faust's own web server on 127.0.0.1 (default 0: off)")
    parser.add_argument("--data-dir", default=None,
                        help="Faust's data directory (default var/worker-GROUP)")
    parser.add_argument("--events-topic", default=topics.CALL_EVENTS,
                        help="input topic (default %(default)s)")
    parser.add_argument("--figures-topic", default=topics.FIGURES,
                        help="figures output topic (default %(default)s)")
    parser.add_argument("--alerts-topic", default=topics.ALERTS,
                        help="alerts output topic (default %(default)s)")
    parser.add_argument("--dlq-topic", default=topics.DLQ,
                        help="dead-letter topic for rejected events (default %(default)s)")


@dataclass(frozen=True)
class Topics:
    events: str = topics.CALL_EVENTS
    figures: str = topics.FIGURES
    alerts: str = topics.ALERTS
    dlq: str = topics.DLQ


class Pipeline:
    """The engine and the publishing of its output; one per worker process."""

    def __init__(self, app: Any, engine: Any, names: Topics) -> None:
        self.engine = engine
        self.figures = app.topic(names.figures)
        self.alerts = app.topic(names.alerts)
        self.dlq = app.topic(names.dlq)
        self.lock = asyncio.Lock()
        self.sent = {"figures": 0, "alerts": 0, "dlq": 0, "send_errors": 0, "engine_errors": 0}
        self._last: tuple[float, int] = (time.monotonic(), 0)
        self.batches = 0
        self.engine_s = 0.0  # time spent in the engine, to tell it from Faust's own

    async def consume(self, batch: Sequence[Any]) -> None:
        """One batch of Faust events: engine, then dead letters, figures and alerts."""
        messages = [e.message for e in batch]
        records = [(m.key, m.value if m.value is not None else b"") for m in messages]
        async with self.lock:
            self.batches += 1
            t0 = time.perf_counter()
            try:
                out = self.engine.ingest(records, now_ms=int(time.time() * 1000))
                self.engine_s += time.perf_counter() - t0
            except Exception:
                log.exception("engine failed on a batch of %d; retrying one by one", len(records))
                await self._one_by_one(records, messages)
                return
            for r in out.rejects:
                await self._dead_letter(messages[r.index], r.reason, r.detail)
            await self._publish(out)

    async def tick(self) -> None:
        """Live mode: idle centres' watermarks follow the wall clock."""
        async with self.lock:
            await self._publish(self.engine.tick(int(time.time() * 1000)))

    async def _one_by_one(self, records: list, messages: list) -> None:
        # The engine drops an event id it has already seen, so what the failed batch
        # folded in before it raised is not counted twice here.
        failed = 0
        for record, message in zip(records, messages, strict=True):
            try:
                out = self.engine.ingest([record], now_ms=int(time.time() * 1000))
            except Exception as exc:
                if not failed:  # one traceback a batch is enough to find the bug
                    log.exception("engine failed on %s", _where(message))
                failed += 1
                self.sent["engine_errors"] += 1
                await self._dead_letter(message, "internal_error", f"engine error: {exc!r}")
                continue
            for r in out.rejects:
                await self._dead_letter(message, r.reason, r.detail)
            await self._publish(out)
        if failed:
            log.error("engine failed on %d of %d events: sent to %s as internal_error",
                      failed, len(records), self.dlq.get_topic_name())

    async def _publish(self, out: Any) -> None:
        for msg in out.figures:
            await self._send(self.figures, msg["centre"], orjson.dumps(msg), "figures")
        for alert in out.alerts:
            await self._send(self.alerts, alert["centre"], orjson.dumps(alert), "alerts")

    async def _dead_letter(self, message: Any, reason: str, detail: str) -> None:
        headers = [
            ("callcost-reason", reason.encode()),
            ("callcost-detail", detail.encode("utf-8", "replace")),
            ("callcost-source-topic", message.topic.encode()),
            ("callcost-source-partition", str(message.partition).encode()),
            ("callcost-source-offset", str(message.offset).encode()),
        ]
        await self._send(self.dlq, message.key, message.value, "dlq", headers)

    async def _send(self, topic: Any, key: Any, value: bytes | None, kind: str,
                    headers: list | None = None) -> None:
        if isinstance(key, str):
            key = key.encode()
        try:
            await topic.send(key=key, value=value, headers=headers)
            self.sent[kind] += 1
        except Exception:
            # The worker goes on: a lost output message is logged, never fatal.
            self.sent["send_errors"] += 1
            log.exception("could not send a %s message to %s", kind, topic.get_topic_name())

    def summary(self) -> str:
        s = self.engine.stats()
        now, events = time.monotonic(), int(s.get("events", 0))
        rate = (events - self._last[1]) / max(1e-9, now - self._last[0])
        self._last = (now, events)
        reasons = s.get("rejected_by_reason") or {}
        by_reason = ",".join(f"{k}={v}" for k, v in sorted(reasons.items())) or "-"
        return (
            f"events={events} ({rate:.0f}/s) accepted={s.get('accepted', 0)} "
            f"duplicates={s.get('duplicates', 0)} late={s.get('late_events', 0)} "
            f"rejected={s.get('rejected', 0)} [{by_reason}] centres={s.get('centres', 0)} "
            f"batches={self.batches} engine_s={self.engine_s:.1f} "
            + " ".join(f"{k}={v}" for k, v in self.sent.items())
        )


def wait_for_topic(bootstrap: str, topic: str, timeout_s: float) -> None:
    """Return when the broker answers and ``topic`` exists, so a worker started before
    its broker (as the demo does, to warm up meanwhile) waits instead of failing."""
    from kafka import KafkaAdminClient

    from callcost.errors import BrokerError

    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # no trace per refused connection
    t0 = time.monotonic()
    next_note = 0.0
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callcost-worker",
                                     request_timeout_ms=3000, bootstrap_timeout_ms=2000,
                                     reconnect_backoff_max_ms=500)
            try:
                if topic in admin.list_topics():
                    return
            finally:
                admin.close()
            what = f"topic {topic} on {bootstrap}"
        except Exception:
            what = f"a broker at {bootstrap}"
        waited = time.monotonic() - t0
        if waited > timeout_s:
            raise BrokerError(f"no {what} after {timeout_s:.0f} s")
        if waited >= next_note:
            log.info("waiting for %s...", what)
            next_note = waited + 10
        time.sleep(0.25)


def _where(message: Any) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"


def build_app(
    *,
    bootstrap: str,
    group: str,
    settings: Any,
    names: Topics = Topics(),
    batch_size: int = 1000,
    batch_ms: float = 100.0,
    web_port: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, Pipeline]:
    """The Faust app with its agent and timers, and the pipeline it feeds."""
    import faust

    from callcost.streams.engine import Engine

    data = Path(data_dir if data_dir is not None else f"var/worker-{group}")
    data.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        group,
        broker=";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()),
        key_serializer="raw",
        value_serializer="raw",
        datadir=str(data),
        autodiscover=False,
        topic_disable_leader=True,  # no on_leader timers: no leader topic to create
        web_enabled=web_port > 0,
        web_port=web_port or None,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        consumer_auto_offset_reset="earliest",
    )
    pipeline = Pipeline(app, Engine(settings), names)
    batch_s = batch_ms / 1000.0

    @app.agent(app.topic(names.events), name=f"{group}.ingest")
    async def ingest(stream: Any) -> None:
        async for batch in stream.take_events(batch_size, within=batch_s):
            await pipeline.consume(batch)

    if settings.stream.idle_advance:

        @app.timer(TICK_S)
        async def tick() -> None:
            try:
                await pipeline.tick()
            except Exception:
                log.exception("engine tick failed")

    @app.timer(SUMMARY_S)
    async def summary() -> None:
        try:
            log.info("%s", pipeline.summary())
        except Exception:
            log.exception("summary failed")

    return app, pipeline


def run(args: argparse.Namespace) -> int:
    from callcost.errors import CallcostError
    from callcost.streams.config import load_settings
    from callcost.streams.engine import Engine

    if args.batch_size < 1 or args.batch_ms <= 0:
        raise CallcostError("--batch-size must be >= 1 and --batch-ms > 0")
    settings = load_settings(args.config)
    names = Topics(args.events_topic, args.figures_topic, args.alerts_topic, args.dlq_topic)
    app, pipeline = build_app(
        bootstrap=args.bootstrap,
        group=args.group,
        settings=settings,
        names=names,
        batch_size=args.batch_size,
        batch_ms=args.batch_ms,
        web_port=args.web_port,
        data_dir=args.data_dir,
    )
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(levelname)s] %(message)s")
    warm_up = getattr(Engine, "warm_up", None)
    if warm_up is not None:  # compile the kernels before joining the group
        t0 = time.perf_counter()
        warm_up()
        log.info("engine warmed up in %.2f s", time.perf_counter() - t0)
    log.info("worker %s: %s -> %s, %s, %s (config %s)", args.group, names.events,
             names.figures, names.alerts, names.dlq, settings.source)
    wait_for_topic(args.bootstrap, names.events, WAIT_S)

    from faust import Worker

    worker = Worker(app, loglevel="INFO")
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    log.info("stopped: %s", pipeline.summary())
    return code
