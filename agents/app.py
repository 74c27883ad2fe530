"""``callcost worker``: the Faust app. call-events in; figures, alerts and rejects out.

Faust keeps the consumer group; the :class:`Intake` reads the partitions Faust assigned
in batches (a plain aiokafka consumer; Faust's own fetch of them is paused, see its doc)
and hands each batch of raw ``(key, value)`` messages to the pure engine
(:class:`callcost.streams.engine.Engine`). What the engine returns is produced, in
order: every rejected message, unchanged, to the dead-letter topic with headers saying
why and where it came from; every figures message to the figures topic and every alert
to the alerts topic, keyed by centre, as JSON.

Everything per batch happens in :meth:`Pipeline.consume`, the one place a faster batch
path has to change. The engine is called only while holding one lock, together with the
sends of its output, so the live-mode timer (``engine.tick``) and the agent never
interleave their messages: a centre's ``as_of`` never goes backwards on the topic.

Recovery (docs/reliability.md)
------------------------------
The engine's state is checkpointed into the compacted ``callcost-checkpoints`` topic,
with the offsets it reflects: the worker owns its resume point, not Faust's committed
offsets. Invariant, at every moment the engine lock is free: for each owned partition
P, ``next_offset[P]`` is the first offset of P the engine does not hold yet.

* **Checkpoint round** (every ``--checkpoint-s``, before every rebalance, at a clean
  stop), under the engine lock: flush the producer (so every output of what the state
  holds is in Kafka), note the end offsets of the alerts, figures and dead-letter
  topics, write one message per centre that changed since its last checkpoint (key: the
  centre; ``extra``: events topic, partition, ``next_offset`` of that partition, those
  end offsets, the last ``as_of`` published), wait for them, and only then one *marker*
  per partition (key ``@offsets/TOPIC/P``): "every centre of P is checkpointed at or
  after offset O", with the offset of each centre's checkpoint.
* **Assignment** (``app.on_partitions_assigned``): the callback takes the lock, drops
  the centres of partitions gone to another worker and returns; a task, still holding
  the lock, reads the checkpoints topic, restores the centres of each new partition and
  sets ``next_offset`` to its marker's offset (to its first offset when there is no
  marker or a checkpoint is refused). It also reads the tails of the output topics
  after the checkpoints' end offsets: an alert whose ``(id, state)`` is already there
  is not sent again, figures older than the newest already published are not sent, and
  a dead letter already there for the same source offset is not sent again. Until the
  state has caught up with that tail, the partition's checkpoints keep recording the
  tail's start instead of the current ends (``_held_ends``): a crash in the middle of a
  replay must not make the next run forget what an earlier run already sent.
* **Replay**: then the partition itself is read from ``next_offset`` to the end it had
  at the restore, through the same engine path: by the intake (the default), or with
  ``--intake faust`` one chunk at a time under the lock by kafka-python (a plain
  assigned consumer, no group). Faust's stream resumes at the
  group's committed offset: its events below ``next_offset`` are skipped; if its first
  event is beyond ``next_offset``, the gap is replayed first. Events of a centre below
  its own checkpoint's offset are skipped (a round cut short by a crash).
* **Revocation**: checkpoint; the next assignment drops the centres of the partitions
  that went to another worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from callcost.streams import topics
from callcost.streams.events import MAX_DETAIL_CHARS

log = logging.getLogger("callcost.worker")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
SUMMARY_S = 10.0
TICK_S = 1.0
WAIT_S = 180.0  # for the broker and the input topic at start-up
CHECKPOINT_S = 5.0
BATCH_SIZE = 10_000  # most events per engine call: bigger batches, fewer sweeps
SESSION_TIMEOUT_S = 60.0  # Faust's default
REPLAY_CHUNK = 2000  # events per engine batch while replaying a partition
SIDE_TIMEOUT_S = 60.0  # longest wait for the broker in a side read without progress
SIDE_RECONNECT_MAX_MS = 1000  # longest pause between reconnections of a side read
MARKER_PREFIX = "@offsets/"  # '@' and '/' are never in a centre id
#: Largest checkpoint value sent; the rest of the topic's max.message.bytes is headroom.
CHECKPOINT_LIMIT = topics.CHECKPOINT_MAX_BYTES - 64 * 1024


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


@dataclass(frozen=True)
class Topics:
    events: str = topics.CALL_EVENTS
    figures: str = topics.FIGURES
    alerts: str = topics.ALERTS
    dlq: str = topics.DLQ
    checkpoints: str = topics.CHECKPOINTS


@dataclass(slots=True)
class Record:
    """One input message, from Faust's stream or read back while replaying."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def marker_key(events_topic: str, partition: int) -> str:
    return f"{MARKER_PREFIX}{events_topic}/{partition}"


class KafkaSide:
    """Reads the worker needs besides Faust's stream: checkpoints, output tails and a
    partition's events for a replay. kafka-python, one plain consumer (no group, nothing
    committed), used from one thread so that the event loop never blocks."""

    def __init__(self, bootstrap: str, client_kwargs: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        #: the connection's security (callcost.kafka_client.kafka_python_kwargs)
        self.client_kwargs = dict(client_kwargs or {})
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callcost-side")
        self._consumer: Any = None

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def aclose(self) -> None:
        await self.call(self._close)
        self._pool.shutdown(wait=False)

    def _close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close(autocommit=False)
            self._consumer = None

    # ---------------------------------------------------------------- in the thread

    def _c(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="callcost-worker-side",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=topics.CHECKPOINT_MAX_BYTES + 1024 * 1024,
                fetch_max_bytes=4 * topics.CHECKPOINT_MAX_BYTES,
                request_timeout_ms=30_000,
                # kafka-python backs off up to 30 s between reconnections: after a
                # broker restart a replay (which holds the engine lock) would wait that
                # long for a broker already back (docs/reliability.md)
                reconnect_backoff_max_ms=SIDE_RECONNECT_MAX_MS,
                **self.client_kwargs,
            )
        return self._consumer

    def partitions(self, topic: str) -> list[Any]:
        from kafka import TopicPartition

        from callcost.errors import BrokerError

        c = self._c()
        deadline = time.monotonic() + SIDE_TIMEOUT_S
        while True:
            parts = c.partitions_for_topic(topic)
            if parts:
                return [TopicPartition(topic, p) for p in sorted(parts)]
            if time.monotonic() > deadline:
                raise BrokerError(f"topic {topic} has no partitions on {self.bootstrap}")
            time.sleep(0.2)

    def bounds(self, tps: list[Any]) -> dict[Any, tuple[int, int]]:
        """(first, end) offset of each partition."""
        c = self._c()
        begin = c.beginning_offsets(tps)
        end = c.end_offsets(tps)
        return {tp: (begin[tp], end[tp]) for tp in tps}

    def end_offsets(self, topic_names: Iterable[str]) -> dict[str, dict[str, int]]:
        """``{topic: {partition as str: end offset}}``: JSON-ready."""
        tps = [tp for t in topic_names for tp in self.partitions(t)]
        ends = self._c().end_offsets(tps)
        out: dict[str, dict[str, int]] = {}
        for tp, off in ends.items():
            out.setdefault(tp.topic, {})[str(tp.partition)] = off
        return out

    def open(self, ranges: dict[Any, tuple[int, int]]) -> None:
        """Start reading ``[start, end)`` of each partition."""
        c = self._c()
        wanted = {tp: r for tp, r in ranges.items() if r[0] < r[1]}
        c.assign(list(wanted))
        for tp, (start, _end) in wanted.items():
            c.seek(tp, start)
        self._left = {tp: end for tp, (_start, end) in wanted.items()}

    def next(self, max_records: int) -> list[Any]:
        """The next records of the open ranges, in offset order per partition; [] when
        every range is read."""
        from callcost.errors import BrokerError

        c = self._c()
        got: list[Any] = []
        deadline = time.monotonic() + SIDE_TIMEOUT_S
        while self._left and not got:
            polled = c.poll(timeout_ms=200, max_records=max_records)
            for tp, records in polled.items():
                end = self._left.get(tp)
                if end is not None:
                    got.extend(r for r in records if r.offset < end)
            for tp, end in list(self._left.items()):
                if c.position(tp) >= end:
                    del self._left[tp]
            if got:
                break
            if time.monotonic() > deadline:
                raise BrokerError(f"reading {sorted(map(str, self._left))} from "
                                  f"{self.bootstrap}: no progress in {SIDE_TIMEOUT_S:.0f} s")
        if not self._left:
            c.assign([])
        return got

    def read_all(self, ranges: dict[Any, tuple[int, int]]) -> list[Any]:
        self.open(ranges)
        out: list[Any] = []
        while True:
            chunk = self.next(5000)
            if not chunk:
                return out
            out.extend(chunk)

    def read_checkpoints(
        self, topic: str, events_topic: str, partitions: set[int]
    ) -> tuple[dict[str, tuple[bytes, dict[str, Any]]], dict[int, dict[str, Any]], int]:
        """The latest checkpoint of each centre of ``partitions`` and the latest marker
        of each partition, from the whole (compacted) checkpoints topic; and how many
        messages were read."""
        from callcost.streams.checkpoint import CheckpointError, read_header

        tps = self.partitions(topic)
        self.open({tp: b for tp, b in self.bounds(tps).items()})
        latest: dict[bytes, tuple[bytes | None, int, int]] = {}
        n = 0
        while True:
            chunk = self.next(500)
            if not chunk:
                break
            for r in chunk:
                n += 1
                if r.key is not None:
                    latest[r.key] = (r.value, r.partition, r.offset)
        blobs: dict[str, tuple[bytes, dict[str, Any]]] = {}
        markers: dict[int, dict[str, Any]] = {}
        prefix = f"{MARKER_PREFIX}{events_topic}/"
        for key_b, (value, part, off) in latest.items():
            if value is None:
                continue  # a tombstone
            key = key_b.decode("utf-8", "replace")
            if key.startswith(MARKER_PREFIX):
                if not key.startswith(prefix):
                    continue
                try:
                    marker = orjson.loads(value)
                    p = int(marker["partition"])
                    int(marker["offset"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.warning("checkpoint marker %s (%s[%d]@%d) is unreadable: ignored",
                                key, topic, part, off)
                    continue
                if p in partitions and key == prefix + str(p):
                    markers[p] = marker
                continue
            try:
                extra = read_header(value)["extra"]
            except CheckpointError as exc:
                log.warning("checkpoint of centre %s (%s[%d]@%d): %s: ignored",
                            key, topic, part, off, exc)
                continue
            if extra.get("topic") != events_topic or extra.get("partition") not in partitions:
                continue
            if not isinstance(extra.get("offset"), int):
                log.warning("checkpoint of centre %s (%s[%d]@%d) has no offset: ignored",
                            key, topic, part, off)
                continue
            blobs[key] = (value, extra)
        return blobs, markers, n

    def read_tails(
        self, names: Topics, starts: dict[str, dict[str, int]]
    ) -> tuple[dict[tuple[str, str], tuple[str, int]], dict[str, int], dict[int, set[int]]]:
        """What the output topics already hold from ``starts`` (``{topic: {partition:
        offset}}``; a partition not given: from its beginning) to their ends: the
        (id, state) of every alert, the newest figures ``as_of`` of every centre, and the
        source offsets of every dead letter of the events topic, by partition."""
        ranges = {}
        for topic, by_part in starts.items():
            tps = self.partitions(topic)
            for tp, (begin, end) in self.bounds(tps).items():
                start = by_part.get(str(tp.partition))
                ranges[tp] = (begin if start is None else max(begin, start), end)
        alerts: dict[tuple[str, str], tuple[str, int]] = {}
        figures: dict[str, int] = {}
        dlq: dict[int, set[int]] = {}
        alerts_t, figures_t, dlq_t, events_topic = (names.alerts, names.figures, names.dlq,
                                                     names.events)
        self.open(ranges)
        while True:
            chunk = self.next(5000)
            if not chunk:
                break
            for r in chunk:
                try:
                    if r.topic == dlq_t:
                        h = {k: v for k, v in (r.headers or [])}
                        if h.get("callcost-source-topic", b"").decode() == events_topic:
                            p = int(h["callcost-source-partition"])
                            dlq.setdefault(p, set()).add(int(h["callcost-source-offset"]))
                    elif r.value is None:
                        continue
                    elif r.topic == alerts_t:
                        a = orjson.loads(r.value)
                        alerts[(a["id"], a["state"])] = (a["centre"], int(a["at"]))
                    elif r.topic == figures_t:
                        f = orjson.loads(r.value)
                        c, as_of = f["centre"], f["as_of"]
                        if as_of is not None and as_of > figures.get(c, -1):
                            figures[c] = int(as_of)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # not ours: nothing to compare with
        return alerts, figures, dlq


class Pipeline:
    """The engine and the publishing of its output; one per worker process."""

    def __init__(self, app: Any, engine: Any, names: Topics, side: KafkaSide | None = None,
                 group: str = "") -> None:
        self.app = app
        self.engine = engine
        self.names = names
        self.group = group
        self.side = side
        self.figures = app.topic(names.figures)
        self.alerts = app.topic(names.alerts)
        self.dlq = app.topic(names.dlq)
        self.checkpoints = app.topic(names.checkpoints)
        self.lock = asyncio.Lock()
        self.sent = {"figures": 0, "alerts": 0, "dlq": 0, "send_errors": 0, "engine_errors": 0}
        self.recovery = {"checkpoints": 0, "markers": 0, "restored": 0, "replayed": 0,
                         "skipped": 0, "alerts_not_resent": 0, "figures_not_resent": 0,
                         "dlq_not_resent": 0, "checkpoint_errors": 0}
        self._last: tuple[float, int] = (time.monotonic(), 0)
        self.batches = 0
        self.engine_s = 0.0  # time spent in the engine, to tell it from Faust's own
        # --- recovery state (partitions are those of the events topic)
        self.owned: set[int] = set()
        self.next_offset: dict[int, int] = {}  # every event below it is in the engine
        self.centre_part: dict[str, int] = {}
        self.skip_below: dict[str, int] = {}  # restored centre -> its checkpoint's offset
        self.dirty: set[str] = set()  # centres changed since their last checkpoint
        self.ckpt_offset: dict[str, int] = {}  # centre -> offset of its last checkpoint
        self.marked: dict[int, int] = {}  # partition -> offset of its last marker
        self.gap_check: set[int] = set()  # partitions whose next stream event is the first
        self.published_as_of: dict[str, int] = {}
        self.figures_floor: dict[str, int] = {}  # do not publish an older as_of
        self.already_sent: dict[tuple[str, str], tuple[str, int]] = {}  # (id, state)
        self.dlq_sent: dict[int, set[int]] = {}  # partition -> source offsets dead-lettered
        # partition -> (offset restored at, end to replay to, why rebuilt, when)
        self.catch_up_to: dict[int, tuple[int, int, str | None, float]] = {}
        # partition -> where its restore began reading the outputs (see _held_ends)
        self.tail_hold: dict[int, dict[str, dict[str, int]]] = {}
        self._catching_up: asyncio.Future | None = None
        self._restoring: asyncio.Future | None = None
        self.intake: Intake | None = None  # the batch path, when the worker has one
        self.first_at: float | None = None  # wall clock of the first events read

    # ------------------------------------------------------------------ the stream

    async def consume(self, batch: Sequence[Any]) -> None:
        """One batch of Faust events: see :meth:`consume_records`."""
        await self.consume_records([e.message for e in batch])

    async def consume_records(self, batch: Sequence[Any]) -> None:
        """One batch of messages (anything with ``topic``, ``partition``, ``offset``,
        ``key`` and ``value``: the intake's aiokafka records, Faust's messages, the
        replay's): engine, then dead letters, figures and alerts."""
        if self.first_at is None and batch:
            self.first_at = time.time()  # the benchmarks time the worker from here
            log.info("first events at %.3f", self.first_at)
        async with self.lock:
            records: list[Any] = []
            for m in batch:
                p = m.partition
                if self.side is not None:  # recovery on: the worker owns the positions
                    if p not in self.owned:
                        self.recovery["skipped"] += 1  # revoked meanwhile: not ours
                        continue
                    nxt = self.next_offset.get(p, 0)
                    if p in self.gap_check:
                        self.gap_check.discard(p)
                        if m.offset > nxt:
                            log.info("partition %d: the stream resumes at %d, the state "
                                     "is at %d: replaying the gap", p, m.offset, nxt)
                            try:
                                await self._replay(p, nxt, m.offset)
                            except Exception as exc:
                                # never go on with a hole in the state: stop, and let
                                # the restarted worker recover from its checkpoint
                                log.exception("replay of partition %d failed", p)
                                await self.app.crash(exc)
                                return
                            nxt = self.next_offset[p]
                    if m.offset < nxt:
                        self.recovery["skipped"] += 1  # already in the engine
                        continue
                    self.next_offset[p] = m.offset + 1
                    if self._before_checkpoint(m.key, m.offset):
                        continue
                records.append(m)
            if records:
                await self._fold(records)

    async def tick(self) -> None:
        """Live mode: idle centres' watermarks follow the wall clock."""
        async with self.lock:
            if self.catch_up_to:
                return  # the wall clock must not overtake a replay
            out = self.engine.tick(int(time.time() * 1000))
            self.dirty.update(f["centre"] for f in out.figures)
            await self._publish(out)

    def _before_checkpoint(self, key: bytes | None, offset: int) -> bool:
        """An event a restored centre's checkpoint already holds."""
        if not self.skip_below or key is None:
            return False
        limit = self.skip_below.get(key.decode("utf-8", "replace"))
        if limit is not None and offset < limit:
            self.recovery["skipped"] += 1
            return True
        return False

    async def _fold(self, records: list[Any]) -> None:
        raw = [(r.key, r.value if r.value is not None else b"") for r in records]
        self.batches += 1
        t0 = time.perf_counter()
        try:
            out = self.engine.ingest(raw, now_ms=int(time.time() * 1000))
            self.engine_s += time.perf_counter() - t0
        except Exception:
            log.exception("engine failed on a batch of %d; retrying one by one", len(raw))
            await self._one_by_one(raw, records)
        else:
            self._touched(records, out)
            for r in out.rejects:
                await self._dead_letter(records[r.index], r.reason, r.detail)
            await self._publish(out)

    def _touched(self, records: list[Any], out: Any) -> None:
        centres = self.engine.centres
        for key, partition in {(r.key, r.partition) for r in records}:
            if key is not None:
                c = key.decode("utf-8", "replace")
                if c in centres:
                    self.dirty.add(c)
                    if self.centre_part.setdefault(c, partition) != partition:
                        log.warning("centre %s has events on partitions %d and %d: its "
                                    "checkpoints follow %d only", c, self.centre_part[c],
                                    partition, self.centre_part[c])
        self.dirty.update(f["centre"] for f in out.figures)

    async def _one_by_one(self, raw: list, records: list[Any]) -> None:
        # The engine drops an event id it has already seen, so what the failed batch
        # folded in before it raised is not counted twice here.
        failed = 0
        for item, record in zip(raw, records, strict=True):
            try:
                out = self.engine.ingest([item], now_ms=int(time.time() * 1000))
            except Exception as exc:
                if not failed:  # one traceback a batch is enough to find the bug
                    log.exception("engine failed on %s", _where(record))
                failed += 1
                self.sent["engine_errors"] += 1
                await self._dead_letter(record, "internal_error", f"engine error: {exc!r}")
                continue
            self._touched([record], out)
            for r in out.rejects:
                await self._dead_letter(record, r.reason, r.detail)
            await self._publish(out)
        if failed:
            log.error("engine failed on %d of %d events: sent to %s as internal_error",
                      failed, len(records), self.dlq.get_topic_name())

    async def _publish(self, out: Any) -> None:
        for msg in out.figures:
            c = msg["centre"]
            floor = self.figures_floor.get(c)
            if floor is not None:
                if msg["as_of"] is None or msg["as_of"] < floor:
                    self.recovery["figures_not_resent"] += 1
                    continue
                del self.figures_floor[c]
            await self._send(self.figures, c, orjson.dumps(msg), "figures")
            if msg["as_of"] is not None:
                self.published_as_of[c] = msg["as_of"]
        for alert in out.alerts:
            if (alert["id"], alert["state"]) in self.already_sent:
                self.recovery["alerts_not_resent"] += 1
                log.info("alert %s %s: already on %s, not sent again", alert["id"],
                         alert["state"], self.alerts.get_topic_name())
                continue
            await self._send(self.alerts, alert["centre"], orjson.dumps(alert), "alerts")

    async def _dead_letter(self, message: Any, reason: str, detail: str) -> None:
        done = self.dlq_sent.get(message.partition)
        if done and message.offset in done and message.topic == self.names.events:
            self.recovery["dlq_not_resent"] += 1
            return
        headers = [
            ("callcost-reason", reason.encode()),
            # bounded: a detail never echoes a long value into a header
            ("callcost-detail", detail[:MAX_DETAIL_CHARS].encode("utf-8", "replace")),
            ("callcost-source-topic", message.topic.encode()),
            ("callcost-source-partition", str(message.partition).encode()),
            ("callcost-source-offset", str(message.offset).encode()),
        ]
        await self._send(self.dlq, message.key, message.value, "dlq", headers)

    async def _send(self, topic: Any, key: Any, value: bytes | None, kind: str,
                    headers: list | None = None) -> None:
        if isinstance(key, str):
            key = key.encode()
        try:
            await topic.send(key=key, value=value, headers=headers)
            self.sent[kind] += 1
        except Exception:
            # The worker goes on: a lost output message is logged, never fatal.
            self.sent["send_errors"] += 1
            log.exception("could not send a %s message to %s", kind, topic.get_topic_name())

    # ------------------------------------------------------------------ checkpoints

    async def checkpoint(self, partitions: Iterable[int] | None = None,
                         why: str = "timer") -> None:
        """A checkpoint round (see the module doc) for ``partitions`` (default: all owned)."""
        if self.side is None:
            return
        async with self.lock:
            await self._checkpoint(self.owned if partitions is None else set(partitions),
                                   why)

    async def _checkpoint(self, partitions: set[int], why: str) -> None:
        parts = sorted(p for p in partitions & self.owned if p in self.next_offset)
        centres = self.engine.centres
        by_part: dict[int, list[str]] = {p: [] for p in parts}
        for c, p in self.centre_part.items():
            if p in by_part and c in centres:
                by_part[p].append(c)
        todo = [p for p in parts
                if self.marked.get(p) != self.next_offset[p]
                or any(c in self.dirty for c in by_part[p])]
        if not todo:
            if why != "timer" and parts:
                log.info("checkpoint (%s): partitions %s unchanged since their last one",
                         why, parts)
            return
        t0 = time.perf_counter()
        self._forget_sent_alerts()
        producer = self.app.producer
        await producer.flush()  # every output of the state below is in Kafka
        assert self.side is not None
        ends = await self.side.call(self.side.end_offsets,
                                    [self.names.alerts, self.names.figures, self.names.dlq])
        now = int(time.time() * 1000)
        pending: dict[int, list[tuple[str, int, Any]]] = {}
        failed: set[int] = set()
        self._release_tail_holds()
        marks: dict[int, dict[str, Any]] = {}
        for p in todo:
            held = self._held_ends(p, ends)
            marks[p] = {
                "alerts_end": held[self.names.alerts],
                "figures_end": held[self.names.figures],
                "dlq_end": held[self.names.dlq],
            }
            base = {
                "topic": self.names.events,
                "partition": p,
                "offset": self.next_offset[p],
                **marks[p],
                "group": self.group,
                "written_ms": now,
            }
            pending[p] = []
            for c in sorted(by_part[p]):
                if c not in self.dirty:
                    continue
                extra = {**base, "figures_published_as_of": self.published_as_of.get(c)}
                try:
                    blob = self.engine.checkpoint(c, extra)
                    if len(blob) > CHECKPOINT_LIMIT:
                        raise ValueError(f"{len(blob)} bytes, more than {CHECKPOINT_LIMIT}")
                    fut = await self.checkpoints.send(key=c.encode(), value=blob)
                except Exception as exc:
                    log.error("checkpoint of centre %s failed: %r; partition %d keeps its "
                              "previous checkpoint", c, exc, p)
                    failed.add(p)
                    break
                pending[p].append((c, self.next_offset[p], fut))
        await producer.flush()
        for p, items in pending.items():
            for c, off, fut in items:
                try:
                    await fut
                except Exception as exc:
                    log.error("checkpoint of centre %s was not written: %r", c, exc)
                    failed.add(p)
                    continue
                self.ckpt_offset[c] = off
                self.recovery["checkpoints"] += 1
        markers = []
        for p in todo:
            if p in failed:
                self.recovery["checkpoint_errors"] += 1
                continue
            marker = {
                "topic": self.names.events,
                "partition": p,
                "offset": self.next_offset[p],
                "centres": {c: self.ckpt_offset.get(c) for c in sorted(by_part[p])},
                **marks[p],
                "group": self.group,
                "written_ms": now,
            }
            try:
                fut = await self.checkpoints.send(key=marker_key(self.names.events, p).encode(),
                                                  value=orjson.dumps(marker))
            except Exception as exc:
                log.error("checkpoint marker of partition %d failed: %r", p, exc)
                self.recovery["checkpoint_errors"] += 1
                continue
            markers.append((p, marker, fut))
        await producer.flush()
        for p, marker, fut in markers:
            try:
                await fut
            except Exception as exc:
                log.error("checkpoint marker of partition %d was not written: %r", p, exc)
                self.recovery["checkpoint_errors"] += 1
                continue
            self.marked[p] = marker["offset"]
            self.dirty.difference_update(by_part[p])
            self.recovery["markers"] += 1
        self._forget_sent_alerts()
        for p, done in list(self.dlq_sent.items()):
            nxt = self.next_offset.get(p, 0)
            self.dlq_sent[p] = {o for o in done if o >= nxt}  # the others cannot recur
        log.debug("checkpoint (%s) of partitions %s in %.3f s", why, todo,
                  time.perf_counter() - t0)
        if why != "timer":
            log.info("checkpoint (%s): partitions %s at offsets %s", why,
                     [p for p, *_ in markers], [m["offset"] for _, m, _ in markers])

    def _held_ends(self, p: int, ends: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        """The output end offsets a checkpoint of partition ``p`` records: the current
        ends, or, while ``p`` still has outputs of an earlier run ahead of its state, the
        start of the tail read at its restore (a partition not given: 0)."""
        hold = self.tail_hold.get(p)
        out = {}
        for topic in (self.names.alerts, self.names.figures, self.names.dlq):
            now = ends.get(topic, {})
            if hold is None:
                out[topic] = dict(now)
            else:
                start = hold.get(topic, {})
                out[topic] = {part: min(off, start.get(part, 0)) for part, off in now.items()}
        return out

    def _release_tail_holds(self) -> None:
        """A partition's hold ends when its replay is done and nothing of an earlier run
        is ahead of its state: no alert to skip, no figures floor, no dead letter."""
        for p in list(self.tail_hold):
            if p in self.catch_up_to or p not in self.owned:
                continue
            nxt = self.next_offset.get(p, 0)
            if any(self.centre_part.get(c) == p for c, _ in self.already_sent.values()):
                continue
            if any(self.centre_part.get(c) == p for c in self.figures_floor):
                continue
            if any(o >= nxt for o in self.dlq_sent.get(p, ())):
                continue
            del self.tail_hold[p]

    def _forget_sent_alerts(self) -> None:
        """An alert is made at an instant the engine evaluates once: when the centre's
        last instant has passed it, the engine cannot make it again."""
        centres = self.engine.centres
        keep = {}
        for mark, (c, at) in self.already_sent.items():
            st = centres.get(c)
            if st is None:
                # not (yet) a centre of this worker: one being rebuilt appears when the
                # replay reaches its first event; after the replay, it is another's
                if self.catch_up_to:
                    keep[mark] = (c, at)
            elif st.M is None or at > st.M:
                keep[mark] = (c, at)
        self.already_sent = keep
        if not self.catch_up_to:  # the tails also held other workers' centres
            for d in (self.figures_floor, self.published_as_of):
                for c in [c for c in d if c not in centres]:
                    del d[c]

    # ------------------------------------------------------------------ rebalances

    async def assign(self, partitions: set[int]) -> None:
        """The events partitions this worker owns now: drop the centres of those gone,
        restore and replay those new. Faust calls this in every rebalance."""
        if self.side is None:
            return
        await self.lock.acquire()
        try:
            gone = self.owned - partitions
            new = partitions - self.owned
            for p in sorted(gone):
                self._drop(p)
            self.owned = set(partitions)
            self.gap_check |= partitions
            if gone:
                log.info("partitions %s went to another worker: their centres are dropped",
                         sorted(gone))
        except BaseException:
            self.lock.release()
            raise
        if not new:
            self.lock.release()
            return
        # The restore reads Kafka for a second or so: it runs after the rebalance
        # callback returns (the consumer sends no heartbeat during it) and keeps the
        # lock until it is done, so that no event of a new partition reaches the engine
        # before its state.
        self._restoring = asyncio.ensure_future(self._restore_holding_the_lock(new))

    async def _restore_holding_the_lock(self, new: set[int]) -> None:
        try:
            await self._restore(new)
        except Exception as exc:
            log.exception("restoring partitions %s failed", sorted(new))
            self.lock.release()
            await self.app.crash(exc)  # a worker without its state must not go on
            return
        except BaseException:  # cancelled
            self.lock.release()
            raise
        self.lock.release()
        # The replay runs after, one chunk at a time (see _catch_up); one task for all.
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.ensure_future(self.catch_up())

    def _drop(self, p: int) -> None:
        for c in [c for c, q in self.centre_part.items() if q == p]:
            self.engine.centres.pop(c, None)
            for d in (self.centre_part, self.skip_below, self.ckpt_offset,
                      self.published_as_of, self.figures_floor):
                d.pop(c, None)
            self.dirty.discard(c)
        self.next_offset.pop(p, None)
        self.marked.pop(p, None)
        self.dlq_sent.pop(p, None)
        self.catch_up_to.pop(p, None)
        self.tail_hold.pop(p, None)
        self.gap_check.discard(p)

    async def _restore(self, new: set[int]) -> None:
        from kafka import TopicPartition

        from callcost.streams.checkpoint import CheckpointError

        assert self.side is not None
        side = self.side
        t0 = time.perf_counter()
        events = self.names.events
        blobs, markers, n_read = await side.call(
            side.read_checkpoints, self.names.checkpoints, events, new)
        bounds = await side.call(side.bounds, [TopicPartition(events, p) for p in sorted(new)])
        bounds = {tp.partition: b for tp, b in bounds.items()}
        plan: dict[int, tuple[int, int, str | None]] = {}
        tail_from: list[dict[str, Any] | None] = []  # extras of what was restored
        for p in sorted(new):
            marker = markers.get(p)
            rebuild = None if marker is not None else "no checkpoint marker"
            recorded = (marker or {}).get("centres") or {}
            start = marker["offset"] if marker is not None else 0
            restored = []
            for c, (blob, extra) in sorted(blobs.items()):
                if extra.get("partition") != p:
                    continue
                try:
                    if self.engine.restore(blob) != c:
                        raise CheckpointError(f"the checkpoint under key {c!r} is of "
                                              "another centre")
                except CheckpointError as exc:
                    self.engine.centres.pop(c, None)
                    log.warning("centre %s: checkpoint ignored: %s; it is rebuilt from the "
                                "start of %s[%d]", c, exc, events, p)
                    rebuild = f"the checkpoint of centre {c} was refused"
                    continue
                off = extra["offset"]
                restored.append(c)
                self.recovery["restored"] += 1
                self.centre_part[c] = p
                self.skip_below[c] = off
                self.ckpt_offset[c] = off
                was = extra.get("figures_published_as_of")
                if was is not None:
                    self.published_as_of[c] = was
                    self.figures_floor[c] = was
                tail_from.append(extra)
                want = recorded.get(c)
                if want is not None and off < want:
                    # overwritten by an older writer (another group on the same topics?)
                    log.warning("centre %s: checkpoint at offset %d, older than the %d its "
                                "marker records: replaying from there", c, off, want)
                    start = min(start, off)
            missing = sorted(set(recorded) - set(restored))
            if missing and rebuild is None:
                rebuild = f"no usable checkpoint for centres {missing}"
            begin, end = bounds[p]
            if rebuild is not None:
                start = begin
            elif start < begin:
                log.error("%s[%d]: events %d to %d are gone (retention) but the checkpoint "
                          "needs them: figures of its centres miss them", events, p, start,
                          begin)
                start = begin
            plan[p] = (start, end, rebuild)
            if marker is not None:
                tail_from.append(marker)
            if rebuild is not None:
                tail_from.append(None)  # the whole of every output topic
        # What the outputs already hold, after what the checkpoints hold.
        starts: dict[str, dict[str, int]] = {}
        for name, field in ((self.names.alerts, "alerts_end"),
                            (self.names.figures, "figures_end"),
                            (self.names.dlq, "dlq_end")):
            by_part: dict[str, int] = {}
            everything = False
            for extra in tail_from:
                if extra is None or not isinstance(extra.get(field), dict):
                    everything = True
                    break
                for part, off in extra[field].items():
                    old = by_part.get(part)
                    by_part[part] = off if old is None else min(old, off)
            if everything:
                by_part = {}  # missing partitions read from the beginning
            starts[name] = by_part
        sent, newest, dead = await side.call(side.read_tails, self.names, starts)
        self.already_sent.update(sent)
        for c, as_of in newest.items():
            # harmless for a centre this worker already publishes: its next as_of is
            # at least the last it sent
            self.figures_floor[c] = max(as_of, self.figures_floor.get(c, as_of))
            self.published_as_of[c] = max(as_of, self.published_as_of.get(c, as_of))
        for p in new:
            self.dlq_sent[p] = dead.get(p, set())
            # Until the state has passed what this tail holds, the checkpoints of p point
            # back at the same start: a restore from them must read it again.
            self.tail_hold[p] = starts
        for p in sorted(new):
            start, end, rebuild = plan[p]
            self.next_offset[p] = start  # what the state holds: the invariant
            if markers.get(p) is not None and rebuild is None:
                self.marked[p] = start
            self.catch_up_to[p] = (start, end, rebuild, time.monotonic())
            restored = sorted(c for c, q in self.centre_part.items()
                              if q == p and c in self.skip_below)
            log.info("%s[%d]: restored %s from checkpoints at offset %d; %d events to "
                     "replay", events, p, restored or "no centre", start, end - start)
        log.info("recovery of partitions %s: %d checkpoint messages read, %d alerts and %d "
                 "dead letters already sent, in %.2f s", sorted(new), n_read, len(sent),
                 sum(len(v) for v in dead.values()), time.perf_counter() - t0)

    async def catch_up(self) -> None:
        """Replay each restored partition from its checkpoint to the end it had when
        restored. The stream's events of it meanwhile wait for the lock; those the
        replay covers are then skipped by offset."""
        while True:
            try:
                await self._catch_up()
                return
            except Exception:
                log.exception("replay after the restore failed; again in %g s", TICK_S * 5)
                await asyncio.sleep(TICK_S * 5)

    async def _catch_up(self) -> None:
        # one chunk at a time under the lock: a checkpoint or a rebalance may come in
        # between, and finds the state and its offsets consistent. With the batch
        # intake, the intake reads the partition (it reads from ``next_offset`` whatever
        # the reason): this only waits for it to reach the end.
        while True:
            async with self.lock:
                if not self.catch_up_to:
                    for c in list(self.skip_below):
                        q = self.centre_part.get(c)
                        if q is None or self.skip_below[c] <= self.next_offset.get(q, 0):
                            del self.skip_below[c]  # the replay went past it
                    return
                reading = [p for p, (_s, end, _r, _t) in self.catch_up_to.items()
                           if p in self.owned and self.intake is not None
                           and self.next_offset.get(p, 0) < end]
                done = [p for p in self.catch_up_to if p not in reading]
                if done:
                    p = min(done)
                    start, end, rebuild, t0 = self.catch_up_to[p]
                    if p in self.owned and self.intake is None and \
                            await self._replay_chunk(p, end):
                        continue
                    del self.catch_up_to[p]
                    if p not in self.owned:
                        continue
                    n = self.next_offset[p] - start
                    if rebuild is not None and n:
                        log.warning("%s[%d]: %s: rebuilt from its start (offsets %d to %d)",
                                    self.names.events, p, rebuild, start, end)
                    log.info("%s[%d]: replayed offsets %d to %d in %.2f s",
                             self.names.events, p, start, self.next_offset[p],
                             time.monotonic() - t0)
                    continue
            await asyncio.sleep(0.05)

    async def _replay(self, p: int, start: int, end: int) -> int:
        """Fold ``[start, end)`` of events partition ``p`` in, read from Kafka directly.
        Called with the lock held; ``start`` is where the state is."""
        n = 0
        while k := await self._replay_chunk(p, end):
            n += k
        return n

    async def _replay_chunk(self, p: int, end: int) -> int:
        """Fold the next events of partition ``p`` before ``end`` in (the lock held);
        how many were read, 0 once the state is at ``end``."""
        from kafka import TopicPartition

        start = self.next_offset.get(p, 0)
        if start >= end:
            return 0
        assert self.side is not None
        side = self.side
        events = self.names.events
        await side.call(side.open, {TopicPartition(events, p): (start, end)})
        chunk = await side.call(side.next, REPLAY_CHUNK)
        if not chunk:  # nothing but gaps (deleted or control records) up to the end
            self.next_offset[p] = end
            return 0
        records = []
        for r in chunk:
            if r.offset < self.next_offset[p]:
                continue
            self.next_offset[p] = r.offset + 1
            if self._before_checkpoint(r.key, r.offset):
                continue
            records.append(Record(events, p, r.offset, r.key, r.value))
        if records:
            await self._fold(records)
        self.recovery["replayed"] += len(chunk)
        return len(chunk)

    # ------------------------------------------------------------------ summary

    def summary(self) -> str:
        s = self.engine.stats()
        now, events = time.monotonic(), int(s.get("events", 0))
        rate = (events - self._last[1]) / max(1e-9, now - self._last[0])
        self._last = (now, events)
        reasons = s.get("rejected_by_reason") or {}
        by_reason = ",".join(f"{k}={v}" for k, v in sorted(reasons.items())) or "-"
        text = (
            f"events={events} ({rate:.0f}/s) accepted={s.get('accepted', 0)} "
            f"duplicates={s.get('duplicates', 0)} late={s.get('late_events', 0)} "
            f"rejected={s.get('rejected', 0)} [{by_reason}] centres={s.get('centres', 0)} "
            f"batches={self.batches} engine_s={self.engine_s:.1f} "
            + " ".join(f"{k}={v}" for k, v in self.sent.items())
        )
        if self.side is not None:
            text += " " + " ".join(f"{k}={v}" for k, v in self.recovery.items())
        if self.intake is not None:
            text += f" intake_records={self.intake.records} intake_fetches={self.intake.fetches}"
        return text


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
    checkpoint to the end it had (the pipeline's ``catch_up_to``) is read here too.
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
        pipe = self.pipeline
        return {p: pipe.next_offset[p] for p in pipe.owned if p in pipe.next_offset}

    def _pause_faust(self) -> None:
        consumer = self.app.consumer
        tps = {tp for tp in consumer.assignment() if tp.topic == self.names.events}
        if tps:
            consumer.pause_partitions(tps)

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

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


def wait_for_topic(
    bootstrap: str, topic: str | Sequence[str], timeout_s: float, kafka: Any = None
) -> None:
    """Return when the broker answers and ``topic`` (every one of them) exists, so a
    worker started before its broker (as the demo does, to warm up meanwhile) waits
    instead of failing. ``kafka``: the connection's settings; a broker that refuses
    them stops the wait at once (BrokerError naming the user and address)."""
    from kafka import KafkaAdminClient

    from callcost.errors import BrokerError
    from callcost.kafka_client import check, kafka_python_kwargs

    security = kafka_python_kwargs(kafka)

    wanted = [topic] if isinstance(topic, str) else list(topic)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # no trace per refused connection
    t0 = time.monotonic()
    next_note = 0.0
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callcost-worker",
                                     request_timeout_ms=3000, bootstrap_timeout_ms=2000,
                                     reconnect_backoff_max_ms=500, **security)
            try:
                have = set(admin.list_topics())
                missing = [t for t in wanted if t not in have]
                if not missing:
                    return
            finally:
                admin.close()
            what = f"topic {', '.join(missing)} on {bootstrap}"
        except Exception:
            what = f"a broker at {bootstrap}"
            check(bootstrap, kafka)  # raises when the broker refuses the credentials
        waited = time.monotonic() - t0
        if waited > timeout_s:
            raise BrokerError(f"no {what} after {timeout_s:.0f} s (`callcost topics` "
                              "creates the topics)")
        if waited >= next_note:
            log.info("waiting for %s...", what)
            next_note = waited + 10
        time.sleep(0.25)


def _where(message: Any) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"


def build_app(
    *,
    bootstrap: str,
    group: str,
    settings: Any,
    names: Topics = Topics(),
    batch_size: int = BATCH_SIZE,
    batch_ms: float = 100.0,
    web_port: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    checkpoint_s: float = CHECKPOINT_S,
    session_timeout_s: float = SESSION_TIMEOUT_S,
    intake: str = "batch",
) -> tuple[Any, Pipeline]:
    """The Faust app with its agent and timers, and the pipeline it feeds."""
    import faust

    from callcost.kafka_client import (
        aiokafka_kwargs,
        faust_broker_url,
        faust_kwargs,
        kafka_python_kwargs,
    )
    from callcost.streams.engine import Engine

    data = Path(data_dir if data_dir is not None else f"var/worker-{group}")
    data.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        group,
        broker=faust_broker_url(bootstrap),
        **faust_kwargs(settings),  # broker_credentials: [kafka] of the settings
        key_serializer="raw",
        value_serializer="raw",
        datadir=str(data),
        autodiscover=False,
        topic_disable_leader=True,  # no on_leader timers: no leader topic to create
        web_enabled=web_port > 0,
        web_port=web_port or None,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=topics.CHECKPOINT_MAX_BYTES,
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=min(3.0, session_timeout_s / 3),
    )
    side = KafkaSide(bootstrap, kafka_python_kwargs(settings))
    pipeline = Pipeline(app, Engine(settings), names, side, group)
    batch_s = batch_ms / 1000.0

    # The agent subscribes the group to the events topic: Faust assigns its partitions.
    # With the batch intake (the default) the events come from the Intake, and this
    # stream carries only what Faust fetched before the intake paused it.
    @app.agent(app.topic(names.events), name=f"{group}.ingest")
    async def ingest(stream: Any) -> None:
        async for batch in stream.take_events(min(batch_size, 1000), within=batch_s):
            await pipeline.consume(batch)

    if intake == "batch":
        reader = Intake(app, pipeline, bootstrap, names, batch_size=batch_size,
                        batch_ms=batch_ms, client_id=f"{group}-intake",
                        client_kwargs=aiokafka_kwargs(settings))
        pipeline.intake = reader

        @app.task
        async def read_events() -> None:
            await reader.run()
    elif intake != "faust":
        raise ValueError(f"intake must be 'batch' or 'faust', not {intake!r}")

    if settings.stream.idle_advance:

        @app.timer(TICK_S)
        async def tick() -> None:
            try:
                await pipeline.tick()
            except Exception:
                log.exception("engine tick failed")

    @app.timer(SUMMARY_S)
    async def summary() -> None:
        try:
            log.info("%s", pipeline.summary())
        except Exception:
            log.exception("summary failed")

    # recovery (see the module doc)
    if checkpoint_s > 0:

        @app.timer(checkpoint_s)
        async def checkpoint() -> None:
            try:
                await pipeline.checkpoint(why="timer")
            except Exception:
                log.exception("checkpoint failed")

    def ours(tps: Iterable[Any]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == names.events}

    # Faust sends on_partitions_revoked before a rebalance (with every partition
    # this worker had) and on_partitions_assigned after it (with every partition it
    # has now); https://faust-streaming.github.io/faust/userguide/application.html
    # (mode types a handler as taking *args; these take what Faust sends)
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set, **kwargs: Any) -> None:
        try:
            await pipeline.checkpoint(ours(revoked), why="rebalance")
        except Exception:
            log.exception("checkpoint before the rebalance failed")

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set, **kwargs: Any) -> None:
        await pipeline.assign(ours(assigned))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        try:
            await pipeline.checkpoint(why="shutdown")
        except Exception:
            log.exception("checkpoint at shutdown failed")
        for task in (pipeline._restoring, pipeline._catching_up):
            if task is not None and not task.done():
                task.cancel()  # the checkpoint above holds what they did
        await side.aclose()

    return app, pipeline


def run(args: argparse.Namespace) -> int:
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
    wait_for_topic(args.bootstrap, [names.events, names.checkpoints], WAIT_S, settings)

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
