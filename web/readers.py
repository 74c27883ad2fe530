"""Kafka topic readers of the gateway: every partition from the beginning, then follow.

A reader takes no consumer group: it assigns every partition of its topic, seeks to the
beginning and reads to the end, so a gateway started or restarted at any time rebuilds
what its stores hold; it is *caught up* once it reached the end offsets it saw at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger("callcost.gateway")


class TopicReader:
    """Reads every partition of one topic from the beginning, then follows it.

    ``handle(values)`` receives the values of each batch of records, in offset order per
    partition (``raw``: the records). ``on_caught_up()`` is called once, when the reader
    first reaches the end offsets it saw at start. Connection failures are retried with
    backoff, resuming at the next offset of each partition; nothing here stops the
    gateway.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        handle: Callable[[list[Any]], None],
        *,
        raw: bool = False,
        on_caught_up: Callable[[], None] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        #: the connection's security (callcost.kafka_client.aiokafka_kwargs)
        self.client_kwargs = dict(client_kwargs or {})
        self.topic = topic
        #: with ``raw`` it receives the records themselves (key, value, partition, offset)
        self.handle = handle
        self.raw = raw
        self.on_caught_up = on_caught_up
        self.caught_up = False
        self.partitions = 0
        self.error: str | None = None
        #: end offsets seen at start, by partition: caught up once all are reached
        self.target: dict[int, int] | None = None
        #: the next offset to read, by partition
        self.offsets: dict[int, int] = {}

    def status(self) -> dict[str, Any]:
        lag = None
        if self.target is not None:
            lag = sum(max(0, end - self.offsets.get(n, 0)) for n, end in self.target.items())
        return {
            "caught_up": self.caught_up,
            "partitions": self.partitions,
            "to_catch_up": lag,
            "error": self.error,
        }

    async def run(self) -> None:
        backoff = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="callcost-gateway",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # the worker may publish in transactions: never show aborted figures
                isolation_level="read_committed",
                **self.client_kwargs,
            )
            try:
                await consumer.start()
                parts = await self._wait_for_topic(consumer)
                tps = [TopicPartition(self.topic, part) for part in parts]
                consumer.assign(tps)
                for tp in tps:
                    if tp.partition in self.offsets:
                        consumer.seek(tp, self.offsets[tp.partition])
                    else:
                        await consumer.seek_to_beginning(tp)
                if self.target is None:
                    ends = await consumer.end_offsets(tps)
                    self.target = {tp.partition: end for tp, end in ends.items()}
                self.partitions = len(tps)
                self.error = None
                backoff = 0.5
                await self._check_caught_up(consumer, tps)
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for tp, records in batches.items():
                        if records:
                            self.offsets[tp.partition] = records[-1].offset + 1
                            self.handle(records if self.raw else [r.value for r in records])
                    await self._check_caught_up(consumer, tps)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("reader %s: %s; retrying in %.1fs", self.topic, self.error, backoff)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _wait_for_topic(self, consumer: Any) -> list[int]:
        while True:
            # consumer.topics() fetches this same metadata but returns only the names,
            # and partitions_for_topic() knows only topics already tracked: ask the
            # client for the cluster's metadata directly.
            cluster = await consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(self.topic)
            if parts:
                return sorted(parts)
            self.error = f"topic {self.topic!r} does not exist (yet)"
            await asyncio.sleep(1.0)

    async def _check_caught_up(self, consumer: Any, tps: list[Any]) -> None:
        if self.caught_up or self.target is None:
            return
        for tp in tps:
            position = await consumer.position(tp)
            self.offsets[tp.partition] = position
            if position < self.target.get(tp.partition, 0):
                return
        self.caught_up = True
        log.info("reader %s: caught up (%d partitions)", self.topic, len(tps))
        if self.on_caught_up is not None:
            self.on_caught_up()
