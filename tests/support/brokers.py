"""The test broker's topics (see ``conftest.kafka_bootstrap``): the session broker's
config, private copies of the callcost topics, producing to them, and reading a topic to
its end offsets.

``fresh_topics`` gives one test its own copies of the callcost topics, so that tests do
not see each other's messages. Their names start with ``TMP_PREFIX``; the session
fixture deletes such leftovers, and ``delete_topics`` removes them after a test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from callcost import broker_config
from callcost.topics_cmd import create_topics

#: Every private test topic starts with this.
TMP_PREFIX = "tmp-"

DEFAULT_TEST_PORT = 29092  # below Linux's ephemeral ports (32768-60999): no client can hold it


def session_broker_config() -> broker_config.BrokerConfig:
    """The session test broker: port ``CALLCOST_TEST_BROKER_PORT`` (default 29092),
    controller on the next port, home ``var/test-broker`` (``var/test-broker-PORT`` for
    another port, so that two runs on two ports do not share a home)."""
    port = int(os.environ.get("CALLCOST_TEST_BROKER_PORT", str(DEFAULT_TEST_PORT)))
    name = "test-broker" if port == DEFAULT_TEST_PORT else f"test-broker-{port}"
    home = broker_config.repo_root() / "var" / name
    return broker_config.BrokerConfig(home=home, port=port, controller_port=port + 1)


def unique_prefix(label: str = "") -> str:
    """A prefix no other test uses, e.g. ``tmp-mytest-1a2b3c4d-``."""
    slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")[:40]
    middle = f"{slug}-" if slug else ""
    return f"{TMP_PREFIX}{middle}{uuid.uuid4().hex[:8]}-"


def fresh_topics(
    bootstrap: str, partitions: int = 4, *, prefix: str | None = None
) -> dict[str, str]:
    """Create private copies of every callcost topic (same configs) and return
    ``{canonical name: actual name}``, e.g. ``{"call-events": "tmp-1a2b3c4d-call-events"}``."""
    return create_topics(bootstrap, partitions, prefix=prefix or unique_prefix())


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics, ignoring those already gone."""
    from kafka import KafkaAdminClient

    names = list(names)
    if not names:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callcost-tests")
    try:
        admin.delete_topics(names, timeout_ms=15000, raise_errors=False)
    finally:
        admin.close()


def delete_tmp_topics(bootstrap: str) -> None:
    """Delete every private test topic left over from an earlier run."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callcost-tests")
    try:
        names = [t for t in admin.list_topics() if t.startswith(TMP_PREFIX)]
        if names:
            admin.delete_topics(names, timeout_ms=15000, raise_errors=False)
    finally:
        admin.close()


def produce(bootstrap: str, topic: str,
            items: Iterable[tuple[str | bytes | None, bytes | None]]) -> None:
    """Send ``(key, value)`` pairs in order (acks=all, one request in flight) and wait
    until the broker has them all; a ``str`` key is sent UTF-8."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                             max_in_flight_requests_per_connection=1)
    try:
        futures = [
            producer.send(topic, key=key.encode() if isinstance(key, str) else key, value=value)
            for key, value in items
        ]
        producer.flush(120)
        for f in futures:
            f.get(0)  # raises if one was not delivered
    finally:
        producer.close(10)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic`` now: ``{partition: offset}``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=10_000)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def message_count(bootstrap: str, topic: str) -> int:
    """How many messages ``topic`` holds now (all partitions; the topics are never
    compacted nor trimmed in the tests)."""
    return sum(end_offsets(bootstrap, topic).values())


def read_to_end(bootstrap: str, topic: str, *, timeout_s: float = 60.0,
                **consumer_options: Any) -> list[Any]:
    """Every message of ``topic`` from the start up to the end offsets taken first, each
    partition in order (partition after partition is not interleaved by time). Once the
    producers of the topic have stopped, that is everything the topic will ever hold:
    no waiting for "anything more" to come."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             **consumer_options)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                        or ())]
        assert tps, f"{topic}: no such topic"
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        got: dict[int, list[Any]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: could not read to its end offsets"
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                got[tp.partition].extend(m for m in msgs if m.offset < ends[tp])
        return [m for tp in tps for m in got[tp.partition]]
    finally:
        consumer.close()


class TopicReader:
    """Everything on one topic so far, read incrementally while producers run
    (:meth:`poll`); :meth:`read_to_end` replaces that with the whole topic up to its end
    offsets, once they have stopped."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, consumer_timeout_ms=300,
        )  # fmt: skip
        self.messages: list[Any] = []
        self.at_end = False

    def poll(self) -> list[Any]:
        """What has come since the last call, added to :attr:`messages`."""
        assert not self.at_end, f"{self.topic}: already read to its end"
        self.messages.extend(self.consumer)
        return self.messages

    def read_to_end(self) -> list[Any]:
        """Every message of the topic up to its end offsets now (see :func:`read_to_end`)."""
        self.consumer.close()
        self.messages = read_to_end(self.bootstrap, self.topic)
        self.at_end = True
        return self.messages

    def close(self) -> None:
        self.consumer.close()
