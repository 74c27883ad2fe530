"""The call join state (SPEC section 1), kept compact: one row of integers per call.

Per call and event type only the event with the smallest ``(ts, id)`` counts. For
``call.answered``, ``call.ended`` and ``call.wrapped`` two events with the same ``ts``
give the same bookings, so only the ``ts`` is kept; for ``call.offered`` (queue, channel,
direction) and ``call.outcome`` (the outcome) the id breaks ties, so it is kept too.

Rows live in ``array.array`` columns (8 bytes a value, Python ints on access), slots of
forgotten calls are reused. :meth:`CallTable.bookings` derives a call's bookings from its
row alone, so :meth:`CallTable.apply` books the difference of before and after each event.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from callcost.streams.events import ANSWERED, ENDED, OFFERED, OUTCOME, Event
from callcost.streams.vocabulary import CONVERTING

NONE = 0  # no event of that type (every valid ts is > 0)
# off_flags bits
VOICE, OUTBOUND = 1, 2

Booking = tuple[int, int, int, int, int, int, int, int, int]


class CallTable:
    __slots__ = (
        "ans_ts",
        "end_ts",
        "free",
        "index",
        "last_ts",
        "off_cb",
        "off_flags",
        "off_id",
        "off_ts",
        "out_conv",
        "out_id",
        "out_ts",
        "wrap_ts",
    )

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.free: list[int] = []
        self.off_ts = array("q")
        self.off_cb = array("q")
        self.off_flags = array("q")
        self.ans_ts = array("q")
        self.end_ts = array("q")
        self.wrap_ts = array("q")
        self.out_ts = array("q")
        self.out_conv = array("q")
        self.last_ts = array("q")
        self.off_id: list[str | None] = []
        self.out_id: list[str | None] = []

    def __len__(self) -> int:
        return len(self.index)

    def slot(self, call: str) -> int:
        i = self.index.get(call)
        if i is not None:
            return i
        if self.free:
            i = self.free.pop()
            for col in self._columns():
                col[i] = 0
            self.off_id[i] = None
            self.out_id[i] = None
        else:
            i = len(self.off_ts)
            for col in self._columns():
                col.append(0)
            self.off_id.append(None)
            self.out_id.append(None)
        self.index[call] = i
        return i

    def _columns(self) -> tuple[array, ...]:
        return (
            self.off_ts,
            self.off_cb,
            self.off_flags,
            self.ans_ts,
            self.end_ts,
            self.wrap_ts,
            self.out_ts,
            self.out_conv,
            self.last_ts,
        )

    def apply(
        self,
        ev: Event,
        inc_s: int,
        combo: Callable[[str, str, str], int],
        pend: list[tuple[int, ...]],
    ) -> None:
        """Fold one call event in; append the bookings it adds (and, negated, those it
        removes) to ``pend``. ``combo`` numbers a (queue, channel, direction)."""
        calls = self
        i = calls.slot(ev.call)
        ts = ev.ts
        if ts > calls.last_ts[i]:
            calls.last_ts[i] = ts
        t = ev.type
        if t == OFFERED:
            cur = calls.off_ts[i]
            if cur != 0 and (cur < ts or (cur == ts and calls.off_id[i] <= ev.id)):
                return
            old = calls.bookings(i, inc_s)
            calls.off_ts[i] = ts
            calls.off_id[i] = ev.id
            calls.off_cb[i] = combo(ev.queue, ev.channel, ev.direction)
            calls.off_flags[i] = (VOICE if ev.channel == "voice" else 0) | (
                OUTBOUND if ev.direction == "outbound" else 0
            )
        elif t == OUTCOME:
            cur = calls.out_ts[i]
            if cur != 0 and (cur < ts or (cur == ts and calls.out_id[i] <= ev.id)):
                return
            old = calls.bookings(i, inc_s)
            calls.out_ts[i] = ts
            calls.out_id[i] = ev.id
            calls.out_conv[i] = ev.outcome in CONVERTING
        else:
            col = calls.ans_ts if t == ANSWERED else calls.end_ts if t == ENDED else calls.wrap_ts
            cur = col[i]
            if cur != 0 and cur <= ts:  # equal ts: the same bookings, whatever the id
                return
            if t != ENDED and calls.end_ts[i] == NONE:
                # answered and wrapped book nothing until the call has ended (see
                # CallTable.bookings): the usual order costs no booking here
                col[i] = ts
                return
            old = calls.bookings(i, inc_s)
            col[i] = ts
        new = calls.bookings(i, inc_s)
        if new == old:
            return
        for b in old:
            if b not in new:
                pend.append((b[0], b[1], -b[2], -b[3], -b[4], -b[5], -b[6], -b[7], -b[8]))
        for b in new:
            if b not in old:
                pend.append(b)

    def forget_before(self, cut: int) -> int:
        """Forget calls whose last event is older than ``cut``; returns how many."""
        last = self.last_ts
        dead = [c for c, i in self.index.items() if last[i] < cut]
        for c in dead:
            i = self.index.pop(c)
            self.free.append(i)
            self.off_id[i] = None
            self.out_id[i] = None
        return len(dead)

    def nbytes(self) -> int:
        """Approximate memory of the table, for the benchmarks."""
        import sys

        n = sum(c.buffer_info()[1] * c.itemsize for c in self._columns())
        n += sys.getsizeof(self.index) + sum(sys.getsizeof(k) for k in self.index)
        n += sys.getsizeof(self.off_id) + sys.getsizeof(self.out_id)
        n += sum(sys.getsizeof(s) for s in self.off_id if s is not None)
        n += sum(sys.getsizeof(s) for s in self.out_id if s is not None)
        return n

    def bookings(self, i: int, inc_s: int) -> list[Booking]:
        """SPEC section 1: what call ``i`` books, from its row alone.

        A booking is ``(ts, combo, offered, handled, abandoned, conversions, handle ms,
        billed inbound s, billed outbound s)``; the combo stands for the call's queue,
        channel and direction.
        """
        ots = self.off_ts[i]
        if ots == NONE:
            return []
        cb = self.off_cb[i]
        out: list[Booking] = [(ots, cb, 1, 0, 0, 0, 0, 0, 0)]
        ets = self.end_ts[i]
        if ets < ots:  # none, or before the offer: the call has no ended event
            ets = NONE
        ats = self.ans_ts[i]
        if ats < ots or (ets != NONE and ats > ets):
            ats = NONE
        if ets != NONE:
            bill_in = bill_out = 0
            flags = self.off_flags[i]
            if flags & VOICE:
                step = 1000 * inc_s
                billed = -(-(ets - ots) // step) * inc_s
                if flags & OUTBOUND:
                    bill_out = billed
                else:
                    bill_in = billed
            if ats != NONE:
                out.append((ets, cb, 0, 1, 0, 0, ets - ats, bill_in, bill_out))
                wts = self.wrap_ts[i]
                if wts >= ets:
                    out.append((wts, cb, 0, 0, 0, 0, wts - ets, 0, 0))
            else:
                out.append((ets, cb, 0, 0, 1, 0, 0, bill_in, bill_out))
        ots2 = self.out_ts[i]
        if ots2 != NONE and self.out_conv[i] and ots2 >= ots:
            out.append((ots2, cb, 0, 0, 0, 1, 0, 0, 0))
        return out
