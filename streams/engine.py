"""The cost engine (SPEC sections 1, 3, 4 and 5): events in, figures and alerts out.

:class:`Engine` holds every centre (:class:`~callcost.streams.centre.CentreState`, where
the join, the windows and the alert machines are): it parses and validates each batch of
raw messages, routes the events to their centres and advances them, and in live mode
moves idle centres' watermarks with :meth:`Engine.tick`. Checkpoints of a centre are
:mod:`callcost.streams.checkpoint`'s.

Pure: no Kafka, no Faust, no websockets, no clock. Time comes in as event timestamps and,
in live mode, as the ``now_ms`` argument of :meth:`Engine.tick`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from callcost.errors import EventError
from callcost.streams import kernels as K
from callcost.streams.centre import CentreState
from callcost.streams.config import Settings
from callcost.streams.events import Event, parse
from callcost.streams.output import Output, Reject


class Engine:
    """All centres. Feed it batches of raw messages with :meth:`ingest`."""

    def __init__(
        self,
        settings: Settings,
        *,
        check_key: bool = True,
        snapshot_at: Iterable[int] = (),
    ) -> None:
        self.settings = settings
        self.check_key = check_key
        self.windows = settings.all_windows
        self.published = settings.published_windows
        self.snapshot_at = sorted(set(snapshot_at))
        self.centres: dict[str, CentreState] = {}
        self.counts: dict[str, int] = {"events": 0, "accepted": 0, "duplicates": 0, "rejected": 0}
        self.reject_reasons: dict[str, int] = {}

    @staticmethod
    def warm_up() -> None:
        K.warm_up()

    def centre(self, cid: str) -> CentreState:
        st = self.centres.get(cid)
        if st is None:
            st = self.centres[cid] = CentreState(self, cid)
        return st

    def ingest(
        self,
        records: Sequence[tuple[bytes | None, bytes]],
        now_ms: int | None = None,
        *,
        publish: bool = True,
    ) -> Output:
        """Validate and fold in a batch of raw (key, value) messages, then advance.

        ``now_ms`` is the live worker's wall clock: an event further ahead of it than
        ``stream.max_future_ms`` is rejected (``future_ts``). Replay passes none.
        """
        out = Output()
        events: list[Event] = []
        horizon = None if now_ms is None else now_ms + self.settings.stream.max_future_ms
        for i, (key, value) in enumerate(records):
            try:
                ev = parse(key, value, check_key=self.check_key)
                if horizon is not None and ev.ts > horizon:
                    raise EventError(
                        "future_ts",
                        f"ts {ev.ts} is {(ev.ts - now_ms) / 1000:.0f} s ahead of the clock"
                        f" (stream.max_future_ms = {self.settings.stream.max_future_ms})",
                    )
                events.append(ev)
            except EventError as exc:
                out.rejects.append(Reject(i, exc.reason, exc.detail))
                self.reject_reasons[exc.reason] = self.reject_reasons.get(exc.reason, 0) + 1
        self.counts["events"] += len(records)
        self.counts["rejected"] += len(out.rejects)
        self._fold(events, out, publish)
        return out

    def _fold(self, events: list[Event], out: Output, publish: bool) -> None:
        touched: dict[str, CentreState] = {}
        for ev in events:
            st = touched.get(ev.centre)
            if st is None:
                st = touched[ev.centre] = self.centre(ev.centre)
            if st.apply(ev):
                self.counts["accepted"] += 1
            else:
                self.counts["duplicates"] += 1
        for st in touched.values():
            st.advance(out, publish)

    def tick(self, now_ms: int, *, publish: bool = True) -> Output:
        """Live mode: move idle centres' watermarks with the wall clock."""
        out = Output()
        if not self.settings.stream.idle_advance:
            return out
        wall = now_ms - self.settings.stream.lateness_ms
        for st in self.centres.values():
            if st.max_ts is not None and wall > st.max_ts - st.lateness_ms:
                st.advance(out, publish, watermark=wall)
        return out

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "rejected_by_reason": dict(self.reject_reasons),
            "late_events": sum(st.late_events for st in self.centres.values()),
            "centres": len(self.centres),
        }
