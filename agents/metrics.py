"""The worker's Prometheus metrics (``callcost_worker_*``) and their HTTP endpoint.

prometheus_client with the worker's own :class:`CollectorRegistry` (never the global
one). The per-batch path observes latencies and dead letters as they happen; what the
engine and the recovery state already count (events by outcome, centres, lag,
checkpoints) is read when Prometheus scrapes, on the worker's event loop, so a scrape
always sees one consistent moment. ``--metrics-port`` serves ``/metrics`` (aiohttp, on
the same loop); the bound address is logged as ``worker metrics at http://H:P/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("callcost.worker")

METRICS_HOST = "127.0.0.1"
LAG_TIMEOUT_S = 2.0  # longest a scrape waits for the events topic's end offsets
#: seconds: a batch takes from a few ms to a few s (a replay chunk, a checkpoint wait)
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    """The instruments of one worker and the registry that holds them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.batch_seconds = Histogram(
            "callcost_worker_batch_duration_seconds",
            "Time from a batch's arrival to its outputs handed to the producer (the "
            "engine lock's wait included).", registry=r, buckets=BUCKETS_S)
        self.publish_seconds = Histogram(
            "callcost_worker_publish_duration_seconds",
            "Time from handing an output message to the producer to the broker's ack.",
            registry=r, buckets=BUCKETS_S)
        self.dlq_total = Counter(
            "callcost_worker_dlq_messages", "Messages sent to the dead-letter topic, by "
            "reason.", ["reason"], registry=r)
        self.checkpoint_at: dict[int, float] = {}  # partition -> wall clock of its marker
        self.checkpoint_bytes: dict[int, int] = {}  # partition -> its centres' bytes

    def publish_started(self, fut: Any, t0: float) -> None:
        """Observe the ack of one sent message (``fut``: what ``send`` returned)."""
        add = getattr(fut, "add_done_callback", None)
        if add is not None:
            add(lambda _f: self.publish_seconds.observe(time.perf_counter() - t0))

    def checkpoint_written(self, partition: int, size_bytes: int) -> None:
        self.checkpoint_at[partition] = time.time()
        self.checkpoint_bytes[partition] = size_bytes

    def forget_partitions(self, owned: set[int]) -> None:
        for d in (self.checkpoint_at, self.checkpoint_bytes):
            for p in [p for p in d if p not in owned]:
                del d[p]


class _PipelineCollector(Collector):
    """What the engine and the pipeline count, read at each scrape."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.ends: dict[int, int] = {}  # events partition -> end offset (last read)

    def collect(self) -> Iterator[Any]:
        pipe = self.pipeline
        s = pipe.engine.stats()
        events = CounterMetricFamily("callcost_worker_events", "Events read from the "
                                     "events topic, by outcome.", labels=["outcome"])
        events.add_metric(["accepted"], s.get("accepted", 0))
        events.add_metric(["duplicate"], s.get("duplicates", 0))
        events.add_metric(["rejected"], s.get("rejected", 0))
        yield events
        yield CounterMetricFamily("callcost_worker_late_events", "Accepted events that "
                                  "arrived after their window's figures were published.",
                                  value=s.get("late_events", 0))
        sent = CounterMetricFamily("callcost_worker_messages_sent", "Output messages "
                                   "handed to the producer, by topic kind.", labels=["kind"])
        for kind in ("figures", "alerts", "dlq"):
            sent.add_metric([kind], pipe.sent.get(kind, 0))
        yield sent
        yield CounterMetricFamily("callcost_worker_send_errors", "Output messages the "
                                  "producer refused (lost).",
                                  value=pipe.sent.get("send_errors", 0))
        yield GaugeMetricFamily("callcost_worker_centres", "Centres the engine holds.",
                                value=s.get("centres", 0))
        state = pipe.state
        positions = state.positions()
        yield GaugeMetricFamily("callcost_worker_partitions", "Events partitions owned.",
                                value=len(state.parts))
        yield GaugeMetricFamily("callcost_worker_replaying_partitions", "Owned partitions "
                                "still replaying after their restore.",
                                value=len(state.catching_up()))
        lag = GaugeMetricFamily("callcost_worker_consumer_lag_messages", "Events of each "
                                "owned partition not in the engine yet (end offset - "
                                "position).", labels=["partition"])
        for p, pos in sorted(positions.items()):
            if p in self.ends:
                lag.add_metric([str(p)], max(0, self.ends[p] - pos))
        yield lag
        m = pipe.metrics
        now = time.time()
        age = GaugeMetricFamily("callcost_worker_checkpoint_age_seconds", "Seconds since "
                                "each partition's last checkpoint marker.",
                                labels=["partition"])
        size = GaugeMetricFamily("callcost_worker_checkpoint_size_bytes", "Bytes of the "
                                 "latest checkpoints of each partition's centres.",
                                 labels=["partition"])
        for p in sorted(m.checkpoint_at):
            if p in state.parts:
                age.add_metric([str(p)], now - m.checkpoint_at[p])
                size.add_metric([str(p)], m.checkpoint_bytes[p])
        yield age
        yield size


class MetricsServer:
    """``/metrics`` of one worker, on its event loop."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.collector = _PipelineCollector(pipeline)
        pipeline.metrics.registry.register(self.collector)
        self._runner: Any = None

    async def _refresh_ends(self) -> None:
        events = self.pipeline.names.events
        try:
            ends = await asyncio.wait_for(self.pipeline.side.end_offsets([events]),
                                          LAG_TIMEOUT_S)
        except Exception as exc:  # the broker is away: the last ends known
            log.debug("metrics: end offsets of %s: %r", events, exc)
            return
        self.collector.ends = {int(p): off for p, off in ends.get(events, {}).items()}

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        await self._refresh_ends()
        self.pipeline.metrics.forget_partitions(self.pipeline.state.owned)
        body = generate_latest(self.pipeline.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, port: int, host: str = METRICS_HOST) -> tuple[str, int]:
        """Serve on ``host:port`` (0: any free port); returns the address bound."""
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        log.info("worker metrics at http://%s:%d/metrics", bound_host, bound_port)
        return bound_host, bound_port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
