"""``callcost simulate``: send simulated live contact-centre traffic to Kafka.

A thin shell around the pure :class:`callcost.streams.simulation.Simulator`: it moves
simulated time ``--speed`` times faster than the wall clock, from ``--start-ms`` (default:
now), and sends each event as it becomes due, keyed by its centre. On Ctrl-C or SIGTERM
it logs every simulated agent out, so the wallboard keeps no staff of a finished run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time

import orjson

from callcost.errors import CallcostError
from callcost.produce import DEFAULT_BOOTSTRAP, DEFAULT_TOPIC, add_config_argument

log = logging.getLogger("callcost.simulate")

TICK_S = 0.05  # wall-clock pacing step
REPORT_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CALLCOST_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (env CALLCOST_BOOTSTRAP; default %(default)s)",
    )
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help="topic (default %(default)s)")
    parser.add_argument("--centres", type=int, default=2, metavar="N",
                        help="number of centres: prg, nyc, lon, sgp, mex, syd, c7... "
                             "(default %(default)s)")
    parser.add_argument("--rate", type=float, default=6.0, metavar="CALLS_PER_MINUTE",
                        help="contacts a minute per centre, averaged over the day's curve "
                             "(default %(default)s)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="simulated time runs X times faster than the wall clock "
                             "(default %(default)s: live)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: from the start time)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S",
                        help="stop after S wall-clock seconds (default 0: run until stopped)")
    parser.add_argument("--start-ms", type=int, default=None,
                        help="simulated start time, ms since the epoch (default: now)")
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from callcost.kafka_client import check, describe, kafka_python_kwargs
    from callcost.streams.config import load_settings
    from callcost.streams.simulation import Simulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.speed <= 0:
        raise CallcostError(f"--speed must be > 0, got {args.speed}")
    start_ms = args.start_ms if args.start_ms is not None else int(time.time() * 1000)
    seed = args.seed if args.seed is not None else start_ms % 1_000_003
    try:
        sim = Simulator(seed, args.centres, args.rate, start_ms)
    except ValueError as exc:
        raise CallcostError(str(exc)) from exc
    settings = load_settings(args.config)
    security = kafka_python_kwargs(settings)
    check(args.bootstrap, settings)  # refused credentials: say so now
    try:
        producer = KafkaProducer(
            bootstrap_servers=args.bootstrap, acks=1, linger_ms=10, **security
        )
    except KafkaError as exc:
        raise CallcostError(f"cannot reach Kafka at {args.bootstrap}: {exc}") from exc

    centres = ", ".join(c.name for c in sim.centres)
    log.info("simulating %s at %.3g contacts/min each, speed x%g, seed %d, to %s (%s)",
             centres, args.rate, args.speed, seed, args.topic, describe(settings))
    topic, dumps, send = args.topic, orjson.dumps, producer.send

    def publish(events: list[dict]) -> None:
        for ev in events:
            send(topic, value=dumps(ev), key=ev["centre"].encode())

    stopping: list[int] = []  # set by SIGINT/SIGTERM; checked between steps
    handlers = {
        sig: signal.signal(sig, lambda signum, frame: stopping.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    wall0 = time.monotonic()
    sent = 0
    next_report = wall0 + REPORT_S
    sim_ms = start_ms
    try:
        while not stopping:
            now = time.monotonic()
            if args.duration and now - wall0 >= args.duration:
                break
            sim_ms = start_ms + int((now - wall0) * 1000 * args.speed)
            events = sim.events_until(sim_ms + 1)
            publish(events)
            sent += len(events)
            if now >= next_report:
                log.info("sent %d events; simulated time %s", sent, _iso(sim_ms))
                next_report += REPORT_S
            time.sleep(max(0.0, TICK_S - (time.monotonic() - now)))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        try:
            last = sim.close(sim_ms + 1)
            publish(last)
            sent += len(last)
            producer.flush(timeout=10)
        except KafkaError as exc:
            log.error("final flush failed: %s", exc)
        producer.close(timeout=10)
    log.info("stopped: sent %d events up to simulated time %s", sent, _iso(sim_ms))
    return 0


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

