"""``callcost topics``: create the callcost topics on a broker (idempotent).

The names and their configs live in :mod:`callcost.streams.topics`.
"""

from __future__ import annotations

import argparse
import os

from callcost.errors import BrokerError
from callcost.streams.config import KafkaSettings, Settings
from callcost.streams.topics import TOPIC_CONFIGS

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PARTITIONS = 4


def default_bootstrap() -> str:
    return os.environ.get("CALLCOST_BOOTSTRAP", "").strip() or DEFAULT_BOOTSTRAP


def create_topics(
    bootstrap: str,
    partitions: int = DEFAULT_PARTITIONS,
    *,
    prefix: str = "",
    timeout_s: float = 30.0,
    kafka: Settings | KafkaSettings | None = None,
) -> dict[str, str]:
    """Create every callcost topic that does not exist yet, with its configs, and wait
    until each has a leader. Topics that exist already are left as they are.

    ``prefix`` is put before every name (tests use it for private copies). Returns
    ``{name: actual name}`` for every topic, e.g. ``{"call-events": "t1-call-events"}``.
    ``kafka``: how to connect (``[kafka]``; default PLAINTEXT).
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from callcost.kafka_client import check, kafka_python_kwargs

    if partitions < 1:
        raise BrokerError(f"partitions must be at least 1, not {partitions}")
    actual = {name: f"{prefix}{name}" for name in TOPIC_CONFIGS}
    ms = int(timeout_s * 1000)
    security = kafka_python_kwargs(kafka)
    check(bootstrap, kafka)  # refused credentials: say so now, not after the time-out
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="callcost-topics",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=min(ms, 15000),
            **security,
        )
    except KafkaError as exc:
        raise BrokerError(
            f"no Kafka broker answers at {bootstrap} ({exc}); start one with "
            "`callcost broker start` or give --bootstrap"
        ) from exc
    try:
        wanted = {
            actual[name]: {
                "num_partitions": partitions,
                "replication_factor": 1,
                "configs": dict(configs),
            }
            for name, configs in TOPIC_CONFIGS.items()
        }
        result = admin.create_topics(wanted, timeout_ms=ms, raise_errors=False)
        for topic in result["topics"]:
            code = topic.get("error_code", 0)
            if code not in (0, TopicAlreadyExistsError.errno):
                message = topic.get("error_message") or f"error code {code}"
                raise BrokerError(f"creating topic {topic['name']} on {bootstrap}: {message}")
        admin.wait_for_topics(list(actual.values()), timeout_ms=ms)
    except KafkaError as exc:
        raise BrokerError(f"creating the callcost topics on {bootstrap}: {exc}") from exc
    finally:
        admin.close()
    return actual


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help=f"broker to use (default: CALLCOST_BOOTSTRAP or {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        metavar="N",
        help=f"partitions of each new topic (default {DEFAULT_PARTITIONS})",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("CALLCOST_CONFIG") or None,
        help="TOML settings; only [kafka] (the connection) is used here "
        "(default: $CALLCOST_CONFIG; CALLCOST_KAFKA_* override it)",
    )


def run(args: argparse.Namespace) -> int:
    from callcost.streams.config import load_settings

    bootstrap = args.bootstrap or default_bootstrap()
    settings = load_settings(args.config)
    names = create_topics(bootstrap, args.partitions, kafka=settings)
    for name in names.values():
        policy = TOPIC_CONFIGS[name]["cleanup.policy"]
        print(f"{name}: ready ({policy}) on {bootstrap}")
    return 0
