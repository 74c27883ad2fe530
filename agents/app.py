"""``callcost worker``'s Faust app: the consumer group, its agent, the timers and the
rebalance hooks, wired to the pipeline.

Faust keeps the consumer group; the batch intake (:mod:`callcost.agents.intake`) reads
the partitions Faust assigned and hands each batch of raw ``(key, value)`` messages to
the pipeline (:mod:`callcost.agents.pipeline`), which calls the pure engine
(:class:`callcost.streams.engine.Engine`) and produces, in order: every rejected
message, unchanged, to the dead-letter topic with headers saying why and where it came
from; every figures message to the figures topic and every alert to the alerts topic,
keyed by centre, as JSON. Checkpoints and restores: :mod:`callcost.agents.checkpoints`;
the state they keep: :mod:`callcost.streams.recovery`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import faust

from callcost.agents.intake import Intake
from callcost.agents.metrics import MetricsServer, WorkerMetrics
from callcost.agents.pipeline import Pipeline, Topics
from callcost.agents.side import Side
from callcost.kafka_client import aiokafka_kwargs, faust_broker_url, faust_kwargs
from callcost.streams import topics
from callcost.streams.engine import Engine

log = logging.getLogger("callcost.worker")

SUMMARY_S = 10.0
TICK_S = 1.0


def build_app(
    *,
    bootstrap: str,
    group: str,
    settings: Any,
    names: Topics,
    batch_size: int,
    batch_ms: float,
    web_port: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    checkpoint_s: float,
    session_timeout_s: float,
    intake: str = "batch",
    metrics_port: int | None = None,
) -> tuple[Any, Pipeline]:
    """The Faust app with its agent and timers, and the pipeline it feeds;
    ``metrics_port``: serve the worker's metrics there (0: any free port; None: off)."""
    data = Path(data_dir if data_dir is not None else f"var/worker-{group}")
    data.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        group,
        broker=faust_broker_url(bootstrap),
        **faust_kwargs(settings),  # broker_credentials: [kafka] of the settings
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
        producer_max_request_size=topics.CHECKPOINT_MAX_BYTES,
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=min(3.0, session_timeout_s / 3),
    )
    side = Side(bootstrap, aiokafka_kwargs(settings))
    pipeline = Pipeline(app, Engine(settings), names, side, group, WorkerMetrics())
    server = MetricsServer(pipeline) if metrics_port is not None else None
    batch_s = batch_ms / 1000.0

    # The agent subscribes the group to the events topic: Faust assigns its partitions.
    # With the batch intake (the default) the events come from the Intake, and this
    # stream carries only what Faust fetched before the intake paused it.
    @app.agent(app.topic(names.events), name=f"{group}.ingest")
    async def ingest(stream: Any) -> None:
        async for batch in stream.take_events(min(batch_size, 1000), within=batch_s):
            await pipeline.consume(batch)

    if intake == "batch":
        reader = Intake(app, pipeline, bootstrap, names, batch_size=batch_size,
                        batch_ms=batch_ms, client_id=f"{group}-intake",
                        client_kwargs=aiokafka_kwargs(settings))
        pipeline.intake = reader

        @app.task
        async def read_events() -> None:
            await reader.run()
    elif intake != "faust":
        raise ValueError(f"intake must be 'batch' or 'faust', not {intake!r}")

    if server is not None:

        @app.task
        async def serve_metrics() -> None:
            assert server is not None and metrics_port is not None
            await server.start(metrics_port)

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

    # recovery (see the module doc)
    if checkpoint_s > 0:

        @app.timer(checkpoint_s)
        async def checkpoint() -> None:
            try:
                await pipeline.checkpoint(why="timer")
            except Exception:
                log.exception("checkpoint failed")

    def ours(tps: Iterable[Any]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == names.events}

    # Faust sends on_partitions_revoked before a rebalance (with every partition
    # this worker had) and on_partitions_assigned after it (with every partition it
    # has now); https://faust-streaming.github.io/faust/userguide/application.html
    # (mode types a handler as taking *args; these take what Faust sends)
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set, **kwargs: Any) -> None:
        try:
            await pipeline.checkpoint(ours(revoked), why="rebalance")
        except Exception:
            log.exception("checkpoint before the rebalance failed")

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set, **kwargs: Any) -> None:
        await pipeline.assign(ours(assigned))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        try:
            await pipeline.checkpoint(why="shutdown")
        except Exception:
            log.exception("checkpoint at shutdown failed")
        pipeline.cancel_tasks()  # the checkpoint above holds what they did
        await side.aclose()
        if server is not None:
            await server.stop()

    return app, pipeline
