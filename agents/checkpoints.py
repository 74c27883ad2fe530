"""Checkpoints and restores of the worker: writing the engine's state to Kafka, and
reading it back (with what the outputs already hold) when partitions are assigned.

The state is what :class:`callcost.streams.recovery.Recovery` holds (pure); this module
is its I/O, called by :class:`callcost.agents.pipeline.Pipeline` with the engine lock
held. docs/reliability.md tells the faults it covers.

The engine's state is checkpointed into the compacted ``callcost-checkpoints`` topic,
with the offsets it reflects: the worker owns its resume point, not Faust's committed
offsets. Invariant, at every moment the engine lock is free: for each restored
partition P, ``next_offset`` of P is the first offset of P the engine does not hold yet.

* **Checkpoint round** (every ``--checkpoint-s``, before every rebalance, at a clean
  stop), under the engine lock: flush the producer (so every output of what the state
  holds is in Kafka), note the end offsets of the alerts, figures and dead-letter
  topics, write one message per centre that changed since its last checkpoint (key: the
  centre; ``extra``: events topic, partition, ``next_offset`` of that partition, those
  end offsets, the last ``as_of`` published), wait for them, and only then one *marker*
  per partition (key ``@offsets/TOPIC/P``): "every centre of P is checkpointed at or
  after offset O", with the offset of each centre's checkpoint.
* **Assignment** (``app.on_partitions_assigned``): the callback takes the lock, drops
  the centres of partitions gone to another worker and returns; a task then takes the
  lock, reads the checkpoints topic, restores the centres of each new partition and
  sets ``next_offset`` to its marker's offset (to its first offset when there is no
  marker or a checkpoint is refused), and releases it; no event of the partition
  reaches the engine before (``Pipeline.restored``). It also reads the tails of the
  output topics after the checkpoints' end offsets: an alert whose ``(id, state)`` is
  already there is not sent again, figures older than the newest already published are
  not sent, and a dead letter already there for the same source offset is not sent
  again. Until the state has caught up with that tail, the partition's checkpoints keep
  recording the tail's start instead of the current ends (``tail_hold``): a crash in
  the middle of a replay must not make the next run forget what an earlier run sent.
* **Replay**: then the partition itself is read from ``next_offset`` to the end it had
  at the restore, through the same engine path: by the intake (the default), or with
  ``--intake faust`` one chunk at a time under the lock by the side reads. Faust's
  stream resumes at the group's committed offset: its events below ``next_offset`` are
  skipped; if its first event is beyond ``next_offset``, the gap is replayed first.
  Events of a centre below its own checkpoint's offset are skipped (a round cut short
  by a crash).
* **Revocation**: checkpoint; the next assignment drops the centres of the partitions
  that went to another worker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiokafka import TopicPartition

from callcost.streams import checkpoint, recovery, topics
from callcost.streams.checkpoint import CheckpointError
from callcost.streams.recovery import CatchUp

log = logging.getLogger("callcost.worker")

#: Largest checkpoint value sent; the rest of the topic's max.message.bytes is headroom.
CHECKPOINT_LIMIT = topics.CHECKPOINT_MAX_BYTES - 64 * 1024


def _outputs(pipe: Any) -> tuple[str, str, str]:
    return pipe.names.alerts, pipe.names.figures, pipe.names.dlq


# ---------------------------------------------------------------------- checkpoints


async def write_round(pipe: Any, partitions: set[int], why: str) -> None:
    """A checkpoint round (see the module doc) of ``partitions``; the lock held."""
    state, names = pipe.state, pipe.names
    positions = state.positions()
    parts = sorted(p for p in partitions & state.owned if p in positions)
    centres = pipe.engine.centres
    by_part: dict[int, list[str]] = {p: [] for p in parts}
    for c, m in state.centres.items():
        if m.partition in by_part and c in centres:
            by_part[m.partition].append(c)
    todo = [p for p in parts
            if state.parts[p].marked != positions[p]
            or any(c in state.dirty for c in by_part[p])]
    if not todo:
        if why != "timer" and parts:
            log.info("checkpoint (%s): partitions %s unchanged since their last one",
                     why, parts)
        return
    t0 = time.perf_counter()
    _forget_sent_alerts(pipe)
    producer = pipe.app.producer
    await producer.flush()  # every output of the state below is in Kafka
    ends = await pipe.side.end_offsets(_outputs(pipe))
    now = int(time.time() * 1000)
    pending: dict[int, list[tuple[str, int, int, Any]]] = {}
    failed: set[int] = set()
    state.release_tail_holds()
    marks: dict[int, dict[str, Any]] = {}
    for p in todo:
        held = state.held_ends(p, ends, _outputs(pipe))
        marks[p] = {
            "alerts_end": held[names.alerts],
            "figures_end": held[names.figures],
            "dlq_end": held[names.dlq],
        }
        base = {
            "topic": names.events,
            "partition": p,
            "offset": positions[p],
            **marks[p],
            "group": pipe.group,
            "written_ms": now,
        }
        pending[p] = []
        for c in sorted(by_part[p]):
            if c not in state.dirty:
                continue
            extra = {**base, "figures_published_as_of": state.marks(c).published_as_of}
            try:
                blob = checkpoint.dump(centres[c], extra)
                if len(blob) > CHECKPOINT_LIMIT:
                    raise ValueError(f"{len(blob)} bytes, more than {CHECKPOINT_LIMIT}")
                fut = await pipe.checkpoints.send(key=c.encode(), value=blob)
            except Exception as exc:
                log.error("checkpoint of centre %s failed: %r; partition %d keeps its "
                          "previous checkpoint", c, exc, p)
                failed.add(p)
                break
            pending[p].append((c, positions[p], len(blob), fut))
    await producer.flush()
    for p, items in pending.items():
        for c, off, size, fut in items:
            try:
                await fut
            except Exception as exc:
                log.error("checkpoint of centre %s was not written: %r", c, exc)
                failed.add(p)
                continue
            m = state.marks(c)
            m.ckpt_offset, m.ckpt_bytes = off, size
            pipe.recovery["checkpoints"] += 1
    markers = []
    for p in todo:
        if p in failed:
            pipe.recovery["checkpoint_errors"] += 1
            continue
        marker = {
            "topic": names.events,
            "partition": p,
            "offset": positions[p],
            "centres": {c: state.marks(c).ckpt_offset for c in sorted(by_part[p])},
            **marks[p],
            "group": pipe.group,
            "written_ms": now,
        }
        try:
            fut = await pipe.checkpoints.send(
                key=recovery.marker_key(names.events, p).encode(), value=orjson.dumps(marker))
        except Exception as exc:
            log.error("checkpoint marker of partition %d failed: %r", p, exc)
            pipe.recovery["checkpoint_errors"] += 1
            continue
        markers.append((p, marker, fut))
    await producer.flush()
    for p, marker, fut in markers:
        try:
            await fut
        except Exception as exc:
            log.error("checkpoint marker of partition %d was not written: %r", p, exc)
            pipe.recovery["checkpoint_errors"] += 1
            continue
        state.parts[p].marked = marker["offset"]
        state.dirty.difference_update(by_part[p])
        pipe.recovery["markers"] += 1
        pipe.metrics.checkpoint_written(
            p, sum(state.marks(c).ckpt_bytes for c in by_part[p]))
    _forget_sent_alerts(pipe)
    for p in state.parts:
        state.checkpointed(p)
    log.debug("checkpoint (%s) of partitions %s in %.3f s", why, todo,
              time.perf_counter() - t0)
    if why != "timer":
        log.info("checkpoint (%s): partitions %s at offsets %s", why,
                 [p for p, *_ in markers], [m["offset"] for _, m, _ in markers])


def _forget_sent_alerts(pipe: Any) -> None:
    pipe.state.forget_sent_alerts({c: st.M for c, st in pipe.engine.centres.items()})


# ---------------------------------------------------------------------- restore


async def restore(pipe: Any) -> None:
    """Restore every owned partition not restored yet (see the module doc); the lock
    held."""
    state, names, side, engine = pipe.state, pipe.names, pipe.side, pipe.engine
    new = {p for p, s in state.parts.items() if s.next_offset is None}
    if not new:
        return
    t0 = time.perf_counter()
    events = names.events
    blobs, markers, n_read = await side.read_checkpoints(names.checkpoints, events, new)
    bounds = await side.bounds([TopicPartition(events, p) for p in sorted(new)])
    bounds = {tp.partition: b for tp, b in bounds.items()}
    plan: dict[int, tuple[int, int, str | None]] = {}
    tail_from: list[dict[str, Any] | None] = []  # extras of what was restored
    for p in sorted(new):
        marker = markers.get(p)
        refused = None
        restored: dict[str, int] = {}
        for c, (blob, extra) in sorted(blobs.items()):
            if extra.get("partition") != p:
                continue
            try:
                if checkpoint.load(engine, blob).centre != c:
                    raise CheckpointError(f"the checkpoint under key {c!r} is of "
                                          "another centre")
            except CheckpointError as exc:
                engine.centres.pop(c, None)
                log.warning("centre %s: checkpoint ignored: %s; it is rebuilt from the "
                            "start of %s[%d]", c, exc, events, p)
                refused = f"the checkpoint of centre {c} was refused"
                continue
            off = extra["offset"]
            restored[c] = off
            pipe.recovery["restored"] += 1
            m = state.marks(c)
            m.partition, m.skip_below, m.ckpt_offset, m.ckpt_bytes = p, off, off, len(blob)
            was = extra.get("figures_published_as_of")
            if was is not None:
                m.published_as_of = m.figures_floor = was
            tail_from.append(extra)
        start, rebuild, notes = recovery.replay_start(marker, restored, refused, bounds[p])
        for level, text in notes:
            getattr(log, level)("%s[%d]: %s", events, p, text)
        plan[p] = (start, bounds[p][1], rebuild)
        if marker is not None:
            tail_from.append(marker)
        if rebuild is not None:
            tail_from.append(None)  # the whole of every output topic
    # What the outputs already hold, after what the checkpoints hold.
    starts = recovery.tail_starts(tail_from, {names.alerts: "alerts_end",
                                              names.figures: "figures_end",
                                              names.dlq: "dlq_end"})
    tails = await side.read_tails(names.alerts, names.figures, names.dlq, events, starts)
    state.already_sent.update(tails.alerts)
    for c, as_of in tails.figures.items():
        # harmless for a centre this worker already publishes: its next as_of is
        # at least the last it sent
        m = state.marks(c)
        m.figures_floor = max(as_of, as_of if m.figures_floor is None else m.figures_floor)
        m.published_as_of = max(as_of, as_of if m.published_as_of is None
                                else m.published_as_of)
    for p in sorted(new):
        s = state.parts[p]
        s.dlq_sent = tails.dlq.get(p, set())
        # Until the state has passed what this tail holds, the checkpoints of p point
        # back at the same start: a restore from them must read it again.
        s.tail_hold = starts
        start, end, rebuild = plan[p]
        s.next_offset = start  # what the state holds: the invariant
        if markers.get(p) is not None and rebuild is None:
            s.marked = start
        s.catch_up = CatchUp(start, end, rebuild, time.monotonic())
        restored_here = sorted(c for c, m in state.centres.items()
                               if m.partition == p and m.skip_below is not None)
        log.info("%s[%d]: restored %s from checkpoints at offset %d; %d events to "
                 "replay", events, p, restored_here or "no centre", start, end - start)
    log.info("recovery of partitions %s: %d checkpoint messages read, %d alerts and %d "
             "dead letters already sent, in %.2f s", sorted(new), n_read, len(tails.alerts),
             sum(len(v) for v in tails.dlq.values()), time.perf_counter() - t0)
