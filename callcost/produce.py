"""``callcost produce FILE.jsonl``: send a file of events to Kafka, one line per message.

Each line goes out as the message value exactly as it is in the file (without its line
ending), valid JSON or not: the worker, not this tool, decides what is an event. The
key is the line's ``centre`` when the line is a JSON object with a string ``centre``,
otherwise the message has no key. Empty lines are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from callcost.errors import CallcostError

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


def send(bootstrap: str, topic: str, stream: BinaryIO) -> int:
    """Send every line of ``stream``; wait until all are acknowledged; return the count."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    except KafkaError as exc:
        raise CallcostError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    count = 0
    try:
        futures = []
        for key, value in messages(stream):
            futures.append(producer.send(topic, value=value, key=key))
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
    if args.file == "-":
        count = send(args.bootstrap, args.topic, sys.stdin.buffer)
    else:
        try:
            f = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CallcostError(f"cannot read {args.file}: {exc.strerror}") from exc
        with f:
            count = send(args.bootstrap, args.topic, f)
    print(f"sent {count} messages to {args.topic}", file=sys.stderr)
    return 0
