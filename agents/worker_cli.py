"""``callcost worker``: its command-line flags and the run of one worker process.

The worker itself is the Faust app of :mod:`callcost.agents.app`; this module checks
the flags, loads the configuration, warms the engine up, waits for the broker and the
topics, and runs Faust's worker until it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time

from callcost.streams import topics

log = logging.getLogger("callcost.worker")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
WAIT_S = 180.0  # for the broker and the input topic at start-up
CHECKPOINT_S = 5.0
BATCH_SIZE = 10_000  # most events per engine call: bigger batches, fewer sweeps
SESSION_TIMEOUT_S = 60.0  # Faust's default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--bootstrap", default=env("CALLCOST_BOOTSTRAP", DEFAULT_BOOTSTRAP),
                        help="Kafka bootstrap servers, host:port[,host:port] "
                             "(env CALLCOST_BOOTSTRAP; default %(default)s)")
    parser.add_argument("--config", default=env("CALLCOST_CONFIG"),
                        help="configuration TOML (env CALLCOST_CONFIG; default: SPEC defaults)")
    parser.add_argument("--group", default="callcost-worker",
                        help="consumer group, also the Faust app id (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="most events per engine batch (default %(default)s)")
    parser.add_argument("--intake", choices=("batch", "faust"), default="batch",
                        help="how events reach the engine: 'batch', read in batches from "
                             "the partitions Faust assigned (fast); 'faust', through "
                             "Faust's stream, one event at a time (default %(default)s)")
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
    parser.add_argument("--checkpoints-topic", default=topics.CHECKPOINTS,
                        help="compacted topic of the engine's checkpoints (default %(default)s)")
    parser.add_argument("--checkpoint-s", type=float, default=CHECKPOINT_S,
                        help="seconds between checkpoints of the centres that changed; 0: "
                             "only at rebalances and at a clean stop (default %(default)s)")
    parser.add_argument("--session-timeout-s", type=float, default=SESSION_TIMEOUT_S,
                        help="how long the consumer group waits for a worker that stopped "
                             "answering (killed, frozen) before giving its partitions to "
                             "another, or to itself restarted; the broker allows 6 to 1800 "
                             "(default %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve the worker's Prometheus metrics on 127.0.0.1:PORT/metrics "
                             "(0: any free port, logged; default: off)")


def run(args: argparse.Namespace) -> int:
    from callcost.agents.app import build_app
    from callcost.agents.pipeline import Topics
    from callcost.agents.side import wait_for_topics
    from callcost.errors import CallcostError
    from callcost.kafka_client import describe
    from callcost.streams.config import load_settings
    from callcost.streams.engine import Engine

    if args.batch_size < 1 or args.batch_ms <= 0:
        raise CallcostError("--batch-size must be >= 1 and --batch-ms > 0")
    if args.checkpoint_s < 0:
        raise CallcostError("--checkpoint-s must be >= 0")
    if args.session_timeout_s < 1:
        raise CallcostError("--session-timeout-s must be >= 1")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise CallcostError("--metrics-port must be 0 to 65535")
    settings = load_settings(args.config)
    names = Topics(args.events_topic, args.figures_topic, args.alerts_topic, args.dlq_topic,
                   args.checkpoints_topic)
    app, pipeline = build_app(
        bootstrap=args.bootstrap,
        group=args.group,
        settings=settings,
        names=names,
        batch_size=args.batch_size,
        batch_ms=args.batch_ms,
        web_port=args.web_port,
        data_dir=args.data_dir,
        checkpoint_s=args.checkpoint_s,
        session_timeout_s=args.session_timeout_s,
        intake=args.intake,
        metrics_port=args.metrics_port,
    )
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(levelname)s] %(message)s")
    warm_up = getattr(Engine, "warm_up", None)
    if warm_up is not None:  # compile the kernels before joining the group
        t0 = time.perf_counter()
        warm_up()
        log.info("engine warmed up in %.2f s", time.perf_counter() - t0)
    log.info("worker %s: %s -> %s, %s, %s; checkpoints %s every %g s (config %s)",
             args.group, names.events, names.figures, names.alerts, names.dlq,
             names.checkpoints, args.checkpoint_s, settings.source)
    log.info("Kafka at %s: %s", args.bootstrap, describe(settings))
    asyncio.run(wait_for_topics(args.bootstrap, [names.events, names.checkpoints], WAIT_S,
                                settings))

    from faust import Worker

    worker = Worker(app, loglevel="INFO")
    code = 0
    # CALLCOST_PROFILE=FILE: cProfile the whole run into FILE (the benchmarks' notes)
    profile_to = os.environ.get("CALLCOST_PROFILE")
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)
    log.info("stopped: %s", pipeline.summary())
    return code
