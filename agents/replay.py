"""Replays of the worker: folding a restored partition in from its checkpoint to the
end it had at the restore (or a gap the stream skipped), through the pipeline's engine
path, one chunk at a time under the engine lock (see :mod:`callcost.agents.checkpoints`
for the whole recovery)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

log = logging.getLogger("callcost.worker")

REPLAY_CHUNK = 2000  # events per engine batch while replaying a partition
RETRY_S = 5.0  # pause before a failed replay is tried again


@dataclass(slots=True)
class Record:
    """One input message read back while replaying."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def catch_up(pipe: Any) -> None:
    """Replay each restored partition to the end it had when restored, one chunk at a
    time under the lock: a checkpoint or a rebalance may come in between, and finds the
    state and its offsets consistent. With the batch intake, the intake reads the
    partition (it reads from ``next_offset`` whatever the reason): this only waits for
    it to reach the end. The stream's events meanwhile wait for the lock; those the
    replay covers are then skipped by offset."""
    state, events = pipe.state, pipe.names.events
    while True:
        async with pipe.lock:
            todo = state.catching_up()
            if not todo:
                state.skips_done()  # the replay went past them
                return
            reading = [p for p, cu in todo.items()
                       if pipe.intake is not None and state.position(p) < cu.end]
            done = [p for p in todo if p not in reading]
            if done:
                p = min(done)
                cu = todo[p]
                if pipe.intake is None and await replay_chunk(pipe, p, cu.end):
                    continue
                state.parts[p].catch_up = None
                n = state.position(p) - cu.start
                if cu.rebuild is not None and n:
                    log.warning("%s[%d]: %s: rebuilt from its start (offsets %d to %d)",
                                events, p, cu.rebuild, cu.start, cu.end)
                log.info("%s[%d]: replayed offsets %d to %d in %.2f s", events, p,
                         cu.start, state.position(p), time.monotonic() - cu.since)
                continue
        await asyncio.sleep(0.05)


async def replay(pipe: Any, p: int, end: int) -> int:
    """Fold events partition ``p`` in from where the state is to ``end``, read from
    Kafka directly; the lock held."""
    n = 0
    while k := await replay_chunk(pipe, p, end):
        n += k
    return n


async def replay_chunk(pipe: Any, p: int, end: int) -> int:
    """Fold the next events of partition ``p`` before ``end`` in (the lock held); how
    many were read, 0 once the state is at ``end``."""
    state = pipe.state
    part = state.parts[p]
    start = state.position(p)
    if start >= end:
        return 0
    events = pipe.names.events
    await pipe.side.open({TopicPartition(events, p): (start, end)})
    chunk = await pipe.side.next(REPLAY_CHUNK)
    if not chunk:  # nothing but gaps (deleted or control records) up to the end
        part.next_offset = end
        return 0
    records = []
    for r in chunk:
        if r.offset < state.position(p):
            continue
        part.next_offset = r.offset + 1
        if state.before_checkpoint(r.key, r.offset):
            pipe.recovery["skipped"] += 1
            continue
        records.append(Record(events, p, r.offset, r.key, r.value))
    if records:
        await pipe._fold(records)
    pipe.recovery["replayed"] += len(chunk)
    return len(chunk)
