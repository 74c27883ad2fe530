"""``callcost produce FILE.jsonl``: send a file of events to Kafka, one line per message.

Each line goes out as the message value exactly as it is in the file (without its line
ending), valid JSON or not: the worker, not this tool, decides what is an event. The
key is the line's ``centre`` when the line is a JSON object with a string ``centre``,
otherwise the message has no key. Empty lines are skipped. A line larger than
``call-events`` takes (:data:`~callcost.streams.topics.EVENT_MAX_BYTES`) stops the
command with an error naming it; the lines before it are sent.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from callcost.errors import CallcostError
from callcost.streams.config import KafkaSettings, Settings
from callcost.streams.topics import EVENT_MAX_BYTES

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TOPIC = "call-events"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl", help="events, one per line ('-': stdin)")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CALLCOST_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers (env CALLCOST_BOOTSTRAP; default %(default)s)",
    )
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help="topic (default %(default)s)")
    add_config_argument(parser)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config`` of the commands that only need the connection (``[kafka]``)."""
    parser.add_argument(
        "--config",
        default=os.environ.get("CALLCOST_CONFIG") or None,
        help="TOML settings; only [kafka] (the connection) is used here "
        "(default: $CALLCOST_CONFIG; CALLCOST_KAFKA_* override it)",
    )


def key_of(line: bytes) -> bytes | None:
    """The message key for a line: its centre when it has one, else None."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        centre = obj.get("centre")
        if isinstance(centre, str):
            return centre.encode()
    return None


def messages(lines: Iterable[bytes]) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) for every non-empty line, the value unchanged but for its line end."""
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:
            yield key_of(line), line


def send(
    bootstrap: str,
    topic: str,
    stream: BinaryIO,
    kafka: Settings | KafkaSettings | None = None,
) -> int:
    """Send every line of ``stream``; wait until all are acknowledged; return the count.
    ``kafka``: how to connect (``[kafka]``; default PLAINTEXT)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, MessageSizeTooLargeError

    from callcost.kafka_client import check, kafka_python_kwargs

    security = kafka_python_kwargs(kafka)
    check(bootstrap, kafka)  # refused credentials: say so now, not after the time-out
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5,
            max_request_size=EVENT_MAX_BYTES, **security
        )
    except KafkaError as exc:
        raise CallcostError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    count = 0
    try:
        futures = []
        for key, value in messages(stream):
            try:
                futures.append(producer.send(topic, value=value, key=key))
            except MessageSizeTooLargeError:
                raise CallcostError(
                    f"message {count + 1} is {len(value)} bytes: more than {topic} takes"
                    f" ({EVENT_MAX_BYTES} bytes with its key); the {count} before it are sent"
                ) from None
            count += 1
        producer.flush()
        for fut in futures:  # raise on the first message that was not acknowledged
            fut.get(timeout=30)
    except KafkaError as exc:
        raise CallcostError(f"sending to {topic} at {bootstrap} failed: {exc}") from exc
    finally:
        producer.close()
    return count


def run(args: argparse.Namespace) -> int:
    from callcost.streams.config import load_settings

    settings = load_settings(args.config)
    if args.file == "-":
        count = send(args.bootstrap, args.topic, sys.stdin.buffer, settings)
    else:
        try:
            f = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CallcostError(f"cannot read {args.file}: {exc.strerror}") from exc
        with f:
            count = send(args.bootstrap, args.topic, f, settings)
    print(f"sent {count} messages to {args.topic}", file=sys.stderr)
    return 0
