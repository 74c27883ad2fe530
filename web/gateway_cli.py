"""``callcost gateway``: its command-line flags, logging, and running one gateway until
SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from callcost.kafka_client import acheck as kafka_check
from callcost.streams.config import load_settings
from callcost.streams.topics import ALERTS, CONTROL, FIGURES
from callcost.web.gateway import Gateway
from callcost.web.redaction import install_redaction

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


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
        f"(websocket /ws{', tokens required' if not gateway.guard.open else ''}), "
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
