"""The batch intake: the events partitions Faust assigned, read in batches by a plain
aiokafka consumer and handed to the pipeline (see :class:`Intake`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from callcost.agents.pipeline import Pipeline, Topics

log = logging.getLogger("callcost.worker")


class Intake:
    """The batch path: reads the events partitions Faust gave this worker, in batches of
    up to ``batch_size`` records, and hands them to :meth:`Pipeline.consume_records`.

    Faust keeps the consumer group: it joins, receives the assignment, runs the
    rebalance callbacks (checkpoint, restore) and the timers. What it does not do is
    deliver the events one by one through its stream (about 30 us an event, a ceiling
    of some 30,000 events/s for the worker): the intake reads the same partitions with
    a plain aiokafka consumer (no group, nothing committed), a few thousand records a
    call, from the positions the pipeline holds (``next_offset``, restored from the
    checkpoints), and pauses them in Faust's consumer (``Consumer.pause_partitions``).
    Faust resumes its partitions at the end of every rebalance, so the pause is
    renewed on every round; whatever Faust's stream delivers meanwhile still goes
    through the same :meth:`Pipeline.consume_records`, whose offset check keeps every
    event exactly once whichever path brought it.

    A partition is read from here once its restore is done: the replay from its
    checkpoint to the end it had (the recovery state's ``catch_up``) is read here too.
    """

    def __init__(self, app: Any, pipeline: Pipeline, bootstrap: str, names: Topics, *,
                 batch_size: int, batch_ms: float, pause_faust: bool = True,
                 client_id: str = "callcost-intake",
                 client_kwargs: dict[str, Any] | None = None) -> None:
        self.app = app
        self.pipeline = pipeline
        self.bootstrap = bootstrap
        self.names = names
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.pause_faust = pause_faust
        self.client_id = client_id
        #: the connection's security (callcost.kafka_client.aiokafka_kwargs)
        self.client_kwargs = dict(client_kwargs or {})
        self.reading: dict[int, int] = {}  # partition -> offset the consumer reads next
        self.records = 0
        self.fetches = 0

    def wanted(self) -> dict[int, int]:
        """Partitions to read now, with the offset each must continue from: every owned
        partition whose restore is done (its replay included: the intake does it)."""
        return self.pipeline.state.positions()

    def _pause_faust(self) -> None:
        consumer = self.app.consumer
        tps = {tp for tp in consumer.assignment() if tp.topic == self.names.events}
        if tps:
            consumer.pause_partitions(tps)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # one fetch brings up to fetch_max_bytes; a partition's share of it is at
            # least one whole record batch, however big
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=max(1, min(500, int(self.batch_ms))),
            **self.client_kwargs,
        )
        await consumer.start()
        topic = self.names.events
        timeout_ms = max(1, int(self.batch_ms))
        try:
            while True:
                if self.pause_faust:
                    self._pause_faust()
                want = self.wanted()
                if set(want) != set(self.reading):
                    consumer.assign([TopicPartition(topic, p) for p in sorted(want)])
                    self.reading = {}
                for p, offset in want.items():
                    if self.reading.get(p) != offset:
                        consumer.seek(TopicPartition(topic, p), offset)
                        self.reading[p] = offset
                if not want:
                    await asyncio.sleep(self.batch_ms / 1000.0)
                    continue
                try:
                    data = await consumer.getmany(timeout_ms=timeout_ms,
                                                  max_records=self.batch_size)
                except Exception:
                    # aiokafka reconnects by itself; start again from the pipeline's
                    # positions, whatever the consumer's are now
                    log.exception("intake: reading %s failed; again in 1 s", topic)
                    self.reading = {p: -1 for p in self.reading}
                    await asyncio.sleep(1.0)
                    continue
                if not data:
                    continue
                batch: list[Any] = []
                for tp, recs in data.items():
                    if recs:
                        batch.extend(recs)
                        self.reading[tp.partition] = recs[-1].offset + 1
                if not batch:
                    continue
                self.fetches += 1
                self.records += len(batch)
                await self.pipeline.consume_records(batch)
        finally:
            await consumer.stop()
