"""The worker's per-batch path: events in, the engine, then dead letters, figures and
alerts out, in order.

Everything per batch happens in :meth:`Pipeline.consume_records`, the one place a faster
batch path has to change. The engine is called only while holding one lock, together
with the sends of its output, so the live-mode timer (``engine.tick``) and the batches
never interleave their messages: a centre's ``as_of`` never goes backwards on the topic.
The worker owns its positions (:class:`callcost.streams.recovery.Recovery`): an event
below a partition's ``next_offset`` is already in the engine and skipped; the first
event after an assignment checks for a gap, replayed first
(:mod:`callcost.agents.replay`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from callcost.agents import checkpoints, replay
from callcost.agents.metrics import WorkerMetrics
from callcost.agents.side import Side
from callcost.streams import topics
from callcost.streams.events import MAX_DETAIL_CHARS
from callcost.streams.recovery import Recovery

log = logging.getLogger("callcost.worker")


@dataclass(frozen=True)
class Topics:
    """The topics one worker reads and writes."""

    events: str = topics.CALL_EVENTS
    figures: str = topics.FIGURES
    alerts: str = topics.ALERTS
    dlq: str = topics.DLQ
    checkpoints: str = topics.CHECKPOINTS


class Pipeline:
    """The engine and the publishing of its output; one per worker process."""

    def __init__(self, app: Any, engine: Any, names: Topics, side: Side,
                 group: str = "", metrics: WorkerMetrics | None = None) -> None:
        self.app = app
        self.engine = engine
        self.names = names
        self.group = group
        self.side = side
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.figures = app.topic(names.figures)
        self.alerts = app.topic(names.alerts)
        self.dlq = app.topic(names.dlq)
        self.checkpoints = app.topic(names.checkpoints)
        self.lock = asyncio.Lock()
        #: set while every owned partition is restored: events wait for it
        self.restored = asyncio.Event()
        self.restored.set()
        self.sent = {"figures": 0, "alerts": 0, "dlq": 0, "send_errors": 0, "engine_errors": 0}
        self.recovery = {"checkpoints": 0, "markers": 0, "restored": 0, "replayed": 0,
                         "skipped": 0, "alerts_not_resent": 0, "figures_not_resent": 0,
                         "dlq_not_resent": 0, "checkpoint_errors": 0}
        self.state = Recovery()  # partitions are those of the events topic
        self._last: tuple[float, int] = (time.monotonic(), 0)
        self.batches = 0
        self.engine_s = 0.0  # time spent in the engine, to tell it from Faust's own
        self._catching_up: asyncio.Future | None = None
        self._restoring: asyncio.Future | None = None
        self.intake: Any = None  # the batch path (agents.intake.Intake), when there is one
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
        t0 = time.perf_counter()
        while True:
            await self.restored.wait()  # no event of a partition before its state
            async with self.lock:
                if not self.restored.is_set():
                    continue  # a restore began meanwhile: wait for it
                records = await self._admit(batch)
                if records is None:
                    return
                if records:
                    await self._fold(records)
                break
        self.metrics.batch_seconds.observe(time.perf_counter() - t0)

    async def _admit(self, batch: Sequence[Any]) -> list[Any] | None:
        """The messages of ``batch`` the engine does not hold yet (the lock held); None
        when a gap could not be replayed (the worker is stopping)."""
        state = self.state
        records: list[Any] = []
        for m in batch:
            p = m.partition
            part = state.parts.get(p)
            if part is None:
                self.recovery["skipped"] += 1  # revoked meanwhile: not ours
                continue
            nxt = part.next_offset or 0
            if part.gap_check:
                part.gap_check = False
                if m.offset > nxt:
                    log.info("partition %d: the stream resumes at %d, the state "
                             "is at %d: replaying the gap", p, m.offset, nxt)
                    try:
                        await replay.replay(self, p, m.offset)
                    except Exception as exc:
                        # never go on with a hole in the state: stop, and let
                        # the restarted worker recover from its checkpoint
                        log.exception("replay of partition %d failed", p)
                        await self.app.crash(exc)
                        return None
                    nxt = part.next_offset or 0
            if m.offset < nxt:
                self.recovery["skipped"] += 1  # already in the engine
                continue
            part.next_offset = m.offset + 1
            if state.before_checkpoint(m.key, m.offset):
                self.recovery["skipped"] += 1
                continue
            records.append(m)
        return records

    async def tick(self) -> None:
        """Live mode: idle centres' watermarks follow the wall clock."""
        async with self.lock:
            if not self.restored.is_set() or self.state.catching_up():
                return  # the wall clock must not overtake a restore or a replay
            out = self.engine.tick(int(time.time() * 1000))
            self.state.dirty.update(f["centre"] for f in out.figures)
            await self._publish(out)

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
        state = self.state
        for key, partition in {(r.key, r.partition) for r in records}:
            if key is not None:
                c = key.decode("utf-8", "replace")
                if c in centres:
                    state.dirty.add(c)
                    marks = state.marks(c)
                    if marks.partition is None:
                        marks.partition = partition
                    elif marks.partition != partition:
                        log.warning("centre %s has events on partitions %d and %d: its "
                                    "checkpoints follow %d only", c, marks.partition,
                                    partition, marks.partition)
        state.dirty.update(f["centre"] for f in out.figures)

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
        state = self.state
        for msg in out.figures:
            c = msg["centre"]
            if not state.figures_floor_passes(c, msg["as_of"]):
                self.recovery["figures_not_resent"] += 1
                continue
            await self._send(self.figures, c, orjson.dumps(msg), "figures")
            if msg["as_of"] is not None:
                state.marks(c).published_as_of = msg["as_of"]
        for alert in out.alerts:
            if (alert["id"], alert["state"]) in state.already_sent:
                self.recovery["alerts_not_resent"] += 1
                log.info("alert %s %s: already on %s, not sent again", alert["id"],
                         alert["state"], self.alerts.get_topic_name())
                continue
            await self._send(self.alerts, alert["centre"], orjson.dumps(alert), "alerts")

    async def _dead_letter(self, message: Any, reason: str, detail: str) -> None:
        if message.topic == self.names.events and \
                self.state.dead_lettered(message.partition, message.offset):
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
        if await self._send(self.dlq, message.key, message.value, "dlq", headers):
            self.metrics.dlq_total.labels(reason).inc()

    async def _send(self, topic: Any, key: Any, value: bytes | None, kind: str,
                    headers: list | None = None) -> bool:
        if isinstance(key, str):
            key = key.encode()
        try:
            t0 = time.perf_counter()
            fut = await topic.send(key=key, value=value, headers=headers)
            self.metrics.publish_started(fut, t0)
            self.sent[kind] += 1
            return True
        except Exception:
            # The worker goes on: a lost output message is logged, never fatal.
            self.sent["send_errors"] += 1
            log.exception("could not send a %s message to %s", kind, topic.get_topic_name())
            return False

    # ------------------------------------------------------------ recovery (the lock)

    async def checkpoint(self, partitions: Iterable[int] | None = None,
                         why: str = "timer") -> None:
        """A checkpoint round (:func:`callcost.agents.checkpoints.write_round`) for
        ``partitions`` (default: all owned)."""
        async with self.lock:
            await checkpoints.write_round(
                self, self.state.owned if partitions is None else set(partitions), why)

    async def assign(self, partitions: set[int]) -> None:
        """The events partitions this worker owns now: drop the centres of those gone,
        restore and replay those new. Faust calls this in every rebalance."""
        async with self.lock:
            dropped, gone, new = self.state.assign(partitions)
            for c in dropped:
                self.engine.centres.pop(c, None)
            if gone:
                log.info("partitions %s went to another worker: their centres are dropped",
                         sorted(gone))
            if not new:
                return
            self.restored.clear()  # no event of a new partition before its state
        # The restore reads Kafka for a second or so: it runs after the rebalance
        # callback returns (the consumer sends no heartbeat during it), in a task that
        # holds the lock from its start to its end.
        self._restoring = asyncio.ensure_future(self._restore())

    async def _restore(self) -> None:
        try:
            async with self.lock:
                await checkpoints.restore(self)
                if all(s.next_offset is not None for s in self.state.parts.values()):
                    self.restored.set()
        except Exception as exc:
            log.exception("restoring partitions %s failed",
                          sorted(p for p, s in self.state.parts.items()
                                 if s.next_offset is None))
            await self.app.crash(exc)  # a worker without its state must not go on
            return
        # The replay runs after, one chunk at a time; one task for all.
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.ensure_future(self.catch_up())

    async def catch_up(self) -> None:
        """Replay each restored partition from its checkpoint to the end it had when
        restored (:func:`callcost.agents.replay.catch_up`), again after a failure."""
        while True:
            try:
                await replay.catch_up(self)
                return
            except Exception:
                log.exception("replay after the restore failed; again in %g s",
                              replay.RETRY_S)
                await asyncio.sleep(replay.RETRY_S)

    def cancel_tasks(self) -> None:
        """Stop the restore and the replay under way (at shutdown)."""
        for task in (self._restoring, self._catching_up):
            if task is not None and not task.done():
                task.cancel()

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
        text += " " + " ".join(f"{k}={v}" for k, v in self.recovery.items())
        if self.intake is not None:
            text += f" intake_records={self.intake.records} intake_fetches={self.intake.fetches}"
        return text


def _where(message: Any) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"
