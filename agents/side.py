"""The worker's side reads: everything it reads from Kafka besides its events stream.

The checkpoints topic, the tails of the output topics, a partition's events for a
replay, partition bounds and end offsets: one plain aiokafka consumer (no group, nothing
committed) on the worker's event loop, the same client family as the intake and Faust.
Every wait is bounded (:data:`SIDE_TIMEOUT_S` without progress raises
:class:`~callcost.errors.BrokerError`), and after a broker restart the consumer
reconnects within :data:`SIDE_RECONNECT_MAX_MS` (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from callcost.errors import BrokerError
from callcost.streams import recovery, topics

log = logging.getLogger("callcost.worker")

SIDE_TIMEOUT_S = 60.0  # longest wait for the broker in a side read without progress
SIDE_RECONNECT_MAX_MS = 1000  # longest pause between reconnections of a side read
POLL_MS = 200  # one fetch's longest wait


class Side:
    """The side reads of one worker (see the module doc)."""

    def __init__(self, bootstrap: str, client_kwargs: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        #: the connection's security (callcost.kafka_client.aiokafka_kwargs)
        self.client_kwargs = dict(client_kwargs or {})
        self._consumer: Any = None
        self._left: dict[Any, int] = {}
        self._starting = asyncio.Lock()

    async def _c(self) -> Any:
        if self._consumer is not None:
            return self._consumer
        async with self._starting:
            return await self._start()

    async def _start(self) -> Any:
        deadline = time.monotonic() + SIDE_TIMEOUT_S
        while self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="callcost-worker-side",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=topics.CHECKPOINT_MAX_BYTES + 1024 * 1024,
                fetch_max_bytes=4 * topics.CHECKPOINT_MAX_BYTES,
                request_timeout_ms=30_000,
                # a replay holds the engine lock: after a broker restart it must not
                # wait long for a broker already back. aiokafka connects again on the
                # next request, retried every retry_backoff_ms (no growing backoff).
                retry_backoff_ms=min(100, SIDE_RECONNECT_MAX_MS),
                **self.client_kwargs,
            )
            try:
                await consumer.start()
            except asyncio.CancelledError:
                await consumer.stop()
                raise
            except Exception as exc:
                await consumer.stop()
                if time.monotonic() > deadline:
                    raise BrokerError(f"no broker at {self.bootstrap} answered in "
                                      f"{SIDE_TIMEOUT_S:.0f} s ({exc!r})") from None
                await asyncio.sleep(SIDE_RECONNECT_MAX_MS / 1000)
                continue
            self._consumer = consumer
        return self._consumer

    async def aclose(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    async def _bounded(self, fn: Any, what: str, *args: Any) -> Any:
        """``await fn(*args)``, again and again while the broker does not answer, for at
        most :data:`SIDE_TIMEOUT_S`."""
        deadline = time.monotonic() + SIDE_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            try:
                return await asyncio.wait_for(fn(*args), timeout=max(0.1, left))
            except (asyncio.CancelledError, BrokerError):
                raise
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise BrokerError(f"{what} on {self.bootstrap}: no answer in "
                                      f"{SIDE_TIMEOUT_S:.0f} s ({exc!r})") from None
                await asyncio.sleep(0.1)

    async def partitions(self, topic: str) -> list[Any]:
        c = await self._c()
        deadline = time.monotonic() + SIDE_TIMEOUT_S
        while True:
            parts = c.partitions_for_topic(topic)  # the metadata the consumer holds
            if not parts:
                # a topic created since: fresh metadata (aiokafka has no public call
                # that returns it with the partitions)
                cluster = await self._bounded(c._client.fetch_all_metadata,
                                              f"reading the metadata of {topic}")
                parts = cluster.partitions_for_topic(topic)
            if parts:
                return [TopicPartition(topic, p) for p in sorted(parts)]
            if time.monotonic() > deadline:
                raise BrokerError(f"topic {topic} has no partitions on {self.bootstrap}")
            await asyncio.sleep(0.2)

    async def bounds(self, tps: list[Any]) -> dict[Any, tuple[int, int]]:
        """(first, end) offset of each partition."""
        c = await self._c()
        begin = await self._bounded(c.beginning_offsets, "reading first offsets", tps)
        end = await self._bounded(c.end_offsets, "reading end offsets", tps)
        return {tp: (begin[tp], end[tp]) for tp in tps}

    async def end_offsets(self, topic_names: Iterable[str]) -> recovery.Ends:
        """``{topic: {partition as str: end offset}}``: JSON-ready."""
        tps = [tp for t in topic_names for tp in await self.partitions(t)]
        c = await self._c()
        ends = await self._bounded(c.end_offsets, "reading end offsets", tps)
        out: recovery.Ends = {}
        for tp, off in ends.items():
            out.setdefault(tp.topic, {})[str(tp.partition)] = off
        return out

    async def open(self, ranges: dict[Any, tuple[int, int]]) -> None:
        """Start reading ``[start, end)`` of each partition."""
        c = await self._c()
        wanted = {tp: r for tp, r in ranges.items() if r[0] < r[1]}
        c.assign(list(wanted))
        for tp, (start, _end) in wanted.items():
            c.seek(tp, start)
        self._left = {tp: end for tp, (_start, end) in wanted.items()}

    async def next(self, max_records: int) -> list[Any]:
        """The next records of the open ranges, in offset order per partition; [] when
        every range is read."""
        c = await self._c()
        got: list[Any] = []
        deadline = time.monotonic() + SIDE_TIMEOUT_S
        while self._left and not got:
            try:
                polled = await c.getmany(*self._left, timeout_ms=POLL_MS,
                                         max_records=max_records)
                for tp, records in polled.items():
                    end = self._left.get(tp)
                    if end is not None:
                        got.extend(r for r in records if r.offset < end)
                for tp, end in list(self._left.items()):
                    if await c.position(tp) >= end:
                        del self._left[tp]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # aiokafka reconnects by itself: try again
                log.info("side read of %s: %r; again", sorted(map(str, self._left)), exc)
                await asyncio.sleep(0.1)
            if got:
                break
            if time.monotonic() > deadline:
                raise BrokerError(f"reading {sorted(map(str, self._left))} from "
                                  f"{self.bootstrap}: no progress in {SIDE_TIMEOUT_S:.0f} s")
        if not self._left:
            c.assign([])
        return got

    async def read_checkpoints(
        self, topic: str, events_topic: str, partitions: set[int]
    ) -> tuple[dict[str, tuple[bytes, dict[str, Any]]], dict[int, dict[str, Any]], int]:
        """The latest checkpoint of each centre of ``partitions`` and the latest marker
        of each partition, from the whole (compacted) checkpoints topic; and how many
        messages were read."""
        tps = await self.partitions(topic)
        await self.open(await self.bounds(tps))
        latest: dict[bytes, tuple[bytes | None, int, int]] = {}
        n = 0
        while chunk := await self.next(500):
            for r in chunk:
                n += 1
                if r.key is not None:
                    latest[r.key] = (r.value, r.partition, r.offset)
        blobs, markers, warnings = recovery.pick_checkpoints(latest, topic, events_topic,
                                                             partitions)
        for text in warnings:
            log.warning("%s", text)
        return blobs, markers, n

    async def read_tails(self, alerts: str, figures: str, dlq: str, events: str,
                         starts: recovery.Ends) -> recovery.Tails:
        """What the output topics already hold from ``starts`` (``{topic: {partition:
        offset}}``; a partition not given: from its beginning) to their ends (see
        :func:`callcost.streams.recovery.scan_tails`)."""
        ranges = {}
        for topic, by_part in starts.items():
            tps = await self.partitions(topic)
            for tp, (begin, end) in (await self.bounds(tps)).items():
                start = by_part.get(str(tp.partition))
                ranges[tp] = (begin if start is None else max(begin, start), end)
        tails = recovery.Tails()
        await self.open(ranges)
        while chunk := await self.next(5000):
            recovery.scan_tails(chunk, tails, alerts=alerts, figures=figures, dlq=dlq,
                                events=events)
        return tails


async def wait_for_topics(bootstrap: str, wanted: list[str], timeout_s: float,
                          kafka: Any = None) -> None:
    """Return when the broker answers and every topic of ``wanted`` exists, so a worker
    started before its broker (as the demo does, to warm up meanwhile) waits instead
    of failing. ``kafka``: the connection's settings; a broker that refuses them stops
    the wait at once (BrokerError naming the user and address)."""
    from callcost.kafka_client import acheck, aiokafka_kwargs

    security = aiokafka_kwargs(kafka)
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # no trace per refused connection
    t0 = time.monotonic()
    next_note = 0.0
    try:
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap,
                                        client_id="callcost-worker", request_timeout_ms=3000,
                                        retry_backoff_ms=250, **security)
            try:
                await consumer.start()
                have = await consumer.topics()
                missing = [t for t in wanted if t not in have]
                if not missing:
                    return
                what = f"topic {', '.join(missing)} on {bootstrap}"
            except Exception:
                what = f"a broker at {bootstrap}"
                await acheck(bootstrap, kafka)  # raises when the broker refuses them
            finally:
                await consumer.stop()
            waited = time.monotonic() - t0
            if waited > timeout_s:
                raise BrokerError(f"no {what} after {timeout_s:.0f} s (`callcost topics` "
                                  "creates the topics)")
            if waited >= next_note:
                log.info("waiting for %s...", what)
                next_note = waited + 10
            await asyncio.sleep(0.25)
    finally:
        quiet.setLevel(level)
