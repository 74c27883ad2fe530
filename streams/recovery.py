"""The worker's recovery plan, pure: what each events partition and each centre must
remember so that a restarted worker resumes from its checkpoints and sends nothing twice.

No I/O and no clock: the worker (``callcost.agents``) reads Kafka and the time and hands
the facts in. The state is small objects, one per owned partition
(:class:`PartitionState`) and one per centre (:class:`CentreMarks`), held by one
:class:`Recovery`; the functions below turn what was read back from Kafka (the
checkpoints topic, the tails of the output topics) into the plan of a restore.
docs/reliability.md and the docstring of ``callcost.agents.checkpoints`` tell the
whole protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from callcost.streams.checkpoint import CheckpointError, read_header

MARKER_PREFIX = "@offsets/"  # '@' and '/' are never in a centre id
Ends = dict[str, dict[str, int]]  # {topic: {partition as str: offset}}


def marker_key(events_topic: str, partition: int) -> str:
    return f"{MARKER_PREFIX}{events_topic}/{partition}"


@dataclass(slots=True)
class CatchUp:
    """A restored partition's replay: from ``start`` (where the state was restored) to
    ``end`` (the partition's end at the restore); ``rebuild`` says why it starts from
    the beginning, if it does; ``since`` is the caller's clock at the restore."""

    start: int
    end: int
    rebuild: str | None
    since: float


@dataclass(slots=True)
class PartitionState:
    """One owned partition of the events topic."""

    #: every event below it is in the engine; None until the partition is restored
    next_offset: int | None = None
    marked: int | None = None  # offset of its last checkpoint marker
    gap_check: bool = True  # its next stream event is the first since the assignment
    dlq_sent: set[int] = field(default_factory=set)  # source offsets already dead-lettered
    catch_up: CatchUp | None = None  # the replay still to do after the restore
    #: where its restore began reading the outputs (see :meth:`Recovery.held_ends`)
    tail_hold: Ends | None = None


@dataclass(slots=True)
class CentreMarks:
    """What the recovery remembers of one centre."""

    partition: int | None = None  # the events partition its checkpoints follow
    skip_below: int | None = None  # a restored centre: its checkpoint's offset
    ckpt_offset: int | None = None  # offset of its last checkpoint
    published_as_of: int | None = None  # the last figures ``as_of`` published
    figures_floor: int | None = None  # do not publish an older ``as_of``
    ckpt_bytes: int = 0  # size of its last checkpoint


class Recovery:
    """The recovery state of one worker: its partitions, its centres, and the alerts an
    earlier run already sent (``(id, state) -> (centre, at)``)."""

    def __init__(self) -> None:
        self.parts: dict[int, PartitionState] = {}
        self.centres: dict[str, CentreMarks] = {}
        self.dirty: set[str] = set()  # centres changed since their last checkpoint
        self.already_sent: dict[tuple[str, str], tuple[str, int]] = {}

    # ------------------------------------------------------------------ partitions

    @property
    def owned(self) -> set[int]:
        return set(self.parts)

    def position(self, p: int) -> int:
        s = self.parts.get(p)
        return 0 if s is None or s.next_offset is None else s.next_offset

    def positions(self) -> dict[int, int]:
        """The restored partitions and the offset each continues from."""
        return {p: s.next_offset for p, s in self.parts.items() if s.next_offset is not None}

    def catching_up(self) -> dict[int, CatchUp]:
        return {p: s.catch_up for p, s in self.parts.items() if s.catch_up is not None}

    def assign(self, partitions: set[int]) -> tuple[list[str], set[int], set[int]]:
        """The partitions owned now; returns the centres dropped with the partitions
        gone, those partitions, and the new ones. Every owned partition checks its next
        stream event for a gap."""
        gone = set(self.parts) - partitions
        new = partitions - set(self.parts)
        dropped = [c for p in sorted(gone) for c in self.drop(p)]
        for p in partitions:
            self.parts.setdefault(p, PartitionState()).gap_check = True
        return dropped, gone, new

    def drop(self, p: int) -> list[str]:
        """Forget partition ``p`` and its centres; returns those centres."""
        mine = [c for c, m in self.centres.items() if m.partition == p]
        for c in mine:
            del self.centres[c]
            self.dirty.discard(c)
        self.parts.pop(p, None)
        return mine

    def marks(self, centre: str) -> CentreMarks:
        m = self.centres.get(centre)
        if m is None:
            m = self.centres[centre] = CentreMarks()
        return m

    def partition_of(self, centre: str) -> int | None:
        m = self.centres.get(centre)
        return None if m is None else m.partition

    def centres_of(self, p: int) -> list[str]:
        return [c for c, m in self.centres.items() if m.partition == p]

    # ------------------------------------------------------------------ the stream

    def before_checkpoint(self, key: bytes | None, offset: int) -> bool:
        """An event a restored centre's checkpoint already holds."""
        if key is None:
            return False
        m = self.centres.get(key.decode("utf-8", "replace"))
        return m is not None and m.skip_below is not None and offset < m.skip_below

    def figures_floor_passes(self, centre: str, as_of: int | None) -> bool:
        """Whether figures at ``as_of`` may be published; the floor goes once passed."""
        m = self.centres.get(centre)
        if m is None or m.figures_floor is None:
            return True
        if as_of is None or as_of < m.figures_floor:
            return False
        m.figures_floor = None
        return True

    def dead_lettered(self, p: int, offset: int) -> bool:
        s = self.parts.get(p)
        return s is not None and offset in s.dlq_sent

    def skips_done(self) -> None:
        """After the replays: a centre's checkpoint offset no longer filters events once
        its partition's state is past it."""
        for m in self.centres.values():
            if m.skip_below is not None and (
                    m.partition is None or m.skip_below <= self.position(m.partition)):
                m.skip_below = None

    # ------------------------------------------------------------------ checkpoints

    def held_ends(self, p: int, ends: Ends, names: Iterable[str]) -> Ends:
        """The output end offsets a checkpoint of partition ``p`` records: the current
        ends, or, while ``p`` still has outputs of an earlier run ahead of its state, the
        start of the tail read at its restore (a partition not given: 0)."""
        s = self.parts.get(p)
        hold = None if s is None else s.tail_hold
        out = {}
        for topic in names:
            now = ends.get(topic, {})
            if hold is None:
                out[topic] = dict(now)
            else:
                start = hold.get(topic, {})
                out[topic] = {part: min(off, start.get(part, 0)) for part, off in now.items()}
        return out

    def release_tail_holds(self) -> None:
        """A partition's hold ends when its replay is done and nothing of an earlier run
        is ahead of its state: no alert to skip, no figures floor, no dead letter."""
        for p, s in self.parts.items():
            if s.tail_hold is None or s.catch_up is not None:
                continue
            nxt = self.position(p)
            if any(self.partition_of(c) == p for c, _ in self.already_sent.values()):
                continue
            if any(m.partition == p and m.figures_floor is not None
                   for m in self.centres.values()):
                continue
            if any(o >= nxt for o in s.dlq_sent):
                continue
            s.tail_hold = None

    def forget_sent_alerts(self, last_instant: Mapping[str, int | None]) -> None:
        """An alert is made at an instant the engine evaluates once: when the centre's
        last instant (``last_instant``: the engine's centres) has passed it, the engine
        cannot make it again."""
        catching_up = any(s.catch_up is not None for s in self.parts.values())
        keep = {}
        for mark, (c, at) in self.already_sent.items():
            if c not in last_instant:
                # not (yet) a centre of this worker: one being rebuilt appears when the
                # replay reaches its first event; after the replay, it is another's
                if catching_up:
                    keep[mark] = (c, at)
                continue
            m_last = last_instant[c]
            if m_last is None or at > m_last:
                keep[mark] = (c, at)
        self.already_sent = keep
        if not catching_up:  # the tails also held other workers' centres
            for c, m in self.centres.items():
                if c not in last_instant:
                    m.figures_floor = m.published_as_of = None

    def checkpointed(self, p: int) -> None:
        """Partition ``p``'s marker is written: its dead letters below its state cannot
        recur."""
        s = self.parts[p]
        nxt = self.position(p)
        s.dlq_sent = {o for o in s.dlq_sent if o >= nxt}


# ---------------------------------------------------------------------- restore plan


def pick_checkpoints(
    latest: Mapping[bytes, tuple[bytes | None, int, int]], topic: str, events_topic: str,
    partitions: set[int],
) -> tuple[dict[str, tuple[bytes, dict[str, Any]]], dict[int, dict[str, Any]], list[str]]:
    """From the latest message of each key of the checkpoints topic (``key -> (value,
    partition, offset)``), the checkpoint of each centre of ``partitions`` (``centre ->
    (blob, extra)``) and the marker of each partition; and warnings for what was
    ignored."""
    blobs: dict[str, tuple[bytes, dict[str, Any]]] = {}
    markers: dict[int, dict[str, Any]] = {}
    warnings: list[str] = []
    prefix = f"{MARKER_PREFIX}{events_topic}/"
    for key_b, (value, part, off) in latest.items():
        if value is None:
            continue  # a tombstone
        key = key_b.decode("utf-8", "replace")
        where = f"({topic}[{part}]@{off})"
        if key.startswith(MARKER_PREFIX):
            if not key.startswith(prefix):
                continue
            try:
                marker = orjson.loads(value)
                p = int(marker["partition"])
                int(marker["offset"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                warnings.append(f"checkpoint marker {key} {where} is unreadable: ignored")
                continue
            if p in partitions and key == prefix + str(p):
                markers[p] = marker
            continue
        try:
            extra = read_header(value)["extra"]
        except CheckpointError as exc:
            warnings.append(f"checkpoint of centre {key} {where}: {exc}: ignored")
            continue
        if extra.get("topic") != events_topic or extra.get("partition") not in partitions:
            continue
        if not isinstance(extra.get("offset"), int):
            warnings.append(f"checkpoint of centre {key} {where} has no offset: ignored")
            continue
        blobs[key] = (value, extra)
    return blobs, markers, warnings


@dataclass(slots=True)
class Tails:
    """What the output topics already hold after the checkpoints' ends."""

    alerts: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    figures: dict[str, int] = field(default_factory=dict)  # centre -> newest as_of
    dlq: dict[int, set[int]] = field(default_factory=dict)  # partition -> source offsets


def scan_tails(records: Iterable[Any], tails: Tails, *, alerts: str, figures: str,
               dlq: str, events: str) -> None:
    """Add what ``records`` (of the alerts, figures and dead-letter topics) say to
    ``tails``: the (id, state) of every alert, the newest figures ``as_of`` of every
    centre, and the source offsets of every dead letter of the ``events`` topic."""
    for r in records:
        try:
            if r.topic == dlq:
                h = {k: v for k, v in (r.headers or [])}
                if h.get("callcost-source-topic", b"").decode() == events:
                    p = int(h["callcost-source-partition"])
                    tails.dlq.setdefault(p, set()).add(int(h["callcost-source-offset"]))
            elif r.value is None:
                continue
            elif r.topic == alerts:
                a = orjson.loads(r.value)
                tails.alerts[(a["id"], a["state"])] = (a["centre"], int(a["at"]))
            elif r.topic == figures:
                f = orjson.loads(r.value)
                c, as_of = f["centre"], f["as_of"]
                if as_of is not None and as_of > tails.figures.get(c, -1):
                    tails.figures[c] = int(as_of)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not ours: nothing to compare with


def replay_start(marker: dict[str, Any] | None, restored: Mapping[str, int],
                 refused: str | None, bounds: tuple[int, int]
                 ) -> tuple[int, str | None, list[tuple[str, str]]]:
    """Where a restored partition's replay starts: its marker's offset, or earlier when a
    centre's checkpoint is older than the marker records, or the partition's first
    offset when it is rebuilt (no marker, a checkpoint refused or missing).
    ``restored``: centre -> offset of the checkpoint restored. Returns the start, why
    it is rebuilt (or None) and notes for the log: ``(level, text)``."""
    if refused is not None:
        rebuild: str | None = refused
    else:
        rebuild = None if marker is not None else "no checkpoint marker"
    recorded = (marker or {}).get("centres") or {}
    start = marker["offset"] if marker is not None else 0
    notes: list[tuple[str, str]] = []
    for c, off in sorted(restored.items()):
        want = recorded.get(c)
        if want is not None and off < want:
            # overwritten by an older writer (another group on the same topics?)
            notes.append(("warning", f"centre {c}: checkpoint at offset {off}, older than "
                          f"the {want} its marker records: replaying from there"))
            start = min(start, off)
    missing = sorted(set(recorded) - set(restored))
    if missing and rebuild is None:
        rebuild = f"no usable checkpoint for centres {missing}"
    begin, _end = bounds
    if rebuild is not None:
        start = begin
    elif start < begin:
        notes.append(("error", f"events {start} to {begin} are gone (retention) but the "
                      "checkpoint needs them: figures of its centres miss them"))
        start = begin
    return start, rebuild, notes


def tail_starts(tail_from: list[dict[str, Any] | None],
                fields: Mapping[str, str]) -> Ends:
    """Where to read each output topic (``fields``: topic -> the field of a checkpoint's
    extra or marker holding its ends) so as to see everything sent after what the
    restored checkpoints hold: the smallest end each partition has among ``tail_from``;
    ``None`` among them, or one without the field: from the beginning (``{}``)."""
    starts: Ends = {}
    for name, fld in fields.items():
        by_part: dict[str, int] = {}
        for extra in tail_from:
            if extra is None or not isinstance(extra.get(fld), dict):
                by_part = {}  # missing partitions read from the beginning
                break
            for part, off in extra[fld].items():
                old = by_part.get(part)
                by_part[part] = off if old is None else min(old, off)
        starts[name] = by_part
    return starts
