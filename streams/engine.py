"""The cost engine (SPEC sections 1, 3, 4 and 5): events in, figures and alerts out.

Pure: no Kafka, no Faust, no websockets, no clock. Time comes in as event timestamps and,
in live mode, as the ``now_ms`` argument of :meth:`Engine.tick`.

How it works, per centre
------------------------
* **Join.** A call keeps, per event type, the event with the smallest ``(ts, id)``. From
  that join state a pure function derives the call's *bookings* (SPEC section 1: a
  quantity at the ``ts`` of the event that completes it). When a new event changes the
  join, the engine books the difference (old bookings negated, new ones added), so the
  result is a function of the set of events, whatever their order. Agents work the same
  way: their login/logout events, sorted by ``(ts, id)``, derive session change points.
* **Pending and committed.** Bookings at or after the last evaluated instant ``M`` wait
  in a pending list; when the watermark passes, they are sorted and appended to the
  committed arrays, which the numba sweep (:mod:`callcost.streams.kernels`) reads.
  A late booking (before ``M``) is added straight into every window that holds it.
* **Windows.** Integer running sums per window, key and quantity, advanced one whole
  second at a time: what enters at the head, minus what leaves at the tail. ``today``
  only ever grows, and empties at the centre's local midnight. So the committed arrays
  only need the longest fixed window, whatever the day's length.
* **Instants.** Every instant from the first whole second after the centre's first event
  is evaluated; alert machines see every one of them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from callcost.errors import EventError
from callcost.streams import kernels as K
from callcost.streams.alerts import AlertMachine, Band
from callcost.streams.calls import NONE, OUTBOUND, VOICE, CallTable
from callcost.streams.config import Rule, Settings
from callcost.streams.events import (
    ANSWERED,
    CONVERTING,
    ENDED,
    LOGIN,
    LOGOUT,
    OFFERED,
    OUTCOME,
    Event,
    parse,
)
from callcost.streams.vocabulary import Window

CHUNK = 4096  # instants per kernel call: bounds the transient output arrays
QUIET_JUMP_MS = 6 * 3_600_000  # skip quiet stretches longer than this
# booking tuple: (ts, combo, *NV values)
_BW = 2 + K.NV


@dataclass(slots=True)
class Reject:
    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class Output:
    rejects: list[Reject] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: figures captured at requested instants (replay ``--at``)
    snapshots: list[dict[str, Any]] = field(default_factory=list)


class _Agent:
    __slots__ = ("changes", "events", "open0")

    def __init__(self) -> None:
        # (ts, id, is_login, rate class)
        self.events: list[tuple[int, str, bool, int]] = []
        self.open0: int | None = None  # rate class open at the start of `events`
        self.changes: list[tuple[int, int, int]] = []


# datetime ends with year 9999; SPEC allows ts up to 2^53 ms (year 287396). Beyond it,
# days are UTC days: nobody's wall clock is there, but the engine must not fail on it.
_MAX_DATETIME_MS = 253_402_214_400_000  # 9999-12-31T00:00:00Z
_DAY_MS = 86_400_000


def local_midnight(ms: int, tz: ZoneInfo) -> int:
    """The last local midnight at or before ``ms`` (the first instant of the local day)."""
    if ms >= _MAX_DATETIME_MS:
        return ms - ms % _DAY_MS
    local = datetime.fromtimestamp(ms / 1000, tz)
    start = datetime(local.year, local.month, local.day, tzinfo=tz)
    return int(start.timestamp()) * 1000


def next_midnight(ms: int, tz: ZoneInfo) -> int:
    """The first local midnight strictly after ``ms``."""
    if ms >= _MAX_DATETIME_MS - 2 * _DAY_MS:
        return ms - ms % _DAY_MS + _DAY_MS
    local = datetime.fromtimestamp(ms / 1000, tz)
    day = datetime(local.year, local.month, local.day) + timedelta(days=1)
    return int(day.replace(tzinfo=tz).timestamp()) * 1000


def _atoms(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Booking rows ``(ts, combo, NV values)`` -> one atom per non-zero value."""
    r, v = np.nonzero(rows[:, 2:])
    return rows[r, 0], rows[r, 1], v.astype(np.int64), rows[r, 2 + v]


class CentreState:
    """Everything the engine knows of one centre."""

    def __init__(self, engine: Engine, centre: str) -> None:
        s = engine.settings
        self.engine = engine
        self.centre = centre
        self.rates = s.rates_for(centre)
        self.tz = ZoneInfo(self.rates.timezone)
        self.inc_s = self.rates.billing_increment_s
        self.lateness_ms = s.stream.lateness_ms
        # labour-rate classes: 0 is the default rate, then one per listed team
        teams = sorted(self.rates.labour_per_hour_by_team)
        self.team_class = {t: i + 1 for i, t in enumerate(teams)}
        self.labour_rates = np.array(
            [self.rates.labour_per_hour, *(self.rates.labour_per_hour_by_team[t] for t in teams)]
        )
        r = np.zeros(K.NR)
        r[K.R_SEAT] = self.rates.seat_per_hour
        r[K.R_FIXED] = self.rates.fixed_per_hour
        r[K.R_TEL_IN] = self.rates.telephony_per_minute.get("inbound", 0.0)
        r[K.R_TEL_OUT] = self.rates.telephony_per_minute.get("outbound", 0.0)
        self.rate_vec = r
        nc = len(self.labour_rates)
        self.windows: tuple[Window, ...] = engine.windows
        nw = len(self.windows)
        self.wlen = np.array(
            [-1 if w.length_ms is None else w.length_ms for w in self.windows], np.int64
        )
        self.max_fixed_ms = max((w.length_ms or 0) for w in self.windows)
        # keys: index -> (scope, key); 0 is the centre
        self.keys: list[tuple[str, str]] = [("centre", centre)]
        self.key_index: dict[tuple[str, str], int] = {("centre", centre): 0}
        self.combo_index: dict[tuple[str, str, str], int] = {}
        self.combo_keys = np.zeros((0, 4), np.int64)
        # join state
        self.calls = CallTable()
        self.agents: dict[str, _Agent] = {}
        self.seen: dict[str, int] = {}  # event id -> ts, for duplicate detection
        # time
        self.min_ts: int | None = None
        self.max_ts: int | None = None
        self.M: int | None = None  # last evaluated instant
        self.today_start = 0
        self.next_mid = 0
        self.last_expiry = 0
        # pending bookings and session change points (ts >= M)
        self.pend_b: list[tuple[int, ...]] = []
        self.pend_s: list[tuple[int, int, int]] = []
        # committed (sorted) arrays
        self.ats = np.zeros(0, np.int64)
        self.acb = np.zeros(0, np.int64)
        self.avi = np.zeros(0, np.int64)
        self.aamt = np.zeros(0, np.int64)
        self.sts = np.zeros(0, np.int64)
        self.scls = np.zeros(0, np.int64)
        self.sdel = np.zeros(0, np.int64)
        # running sums
        # cumulative sums at the last instant (C, CS) and at each window's start (Ct, CSt)
        self.C = np.zeros((0, K.NV), np.int64)
        self.Ct = np.zeros((nw, 0, K.NV), np.int64)
        self.CS = np.zeros(nc, np.int64)
        self.CSt = np.zeros((nw, nc), np.int64)
        self.nhead = np.zeros(nc, np.int64)
        self.ntail = np.zeros((nw, nc), np.int64)
        # alerts: per rule, its window index and the machines by key index
        self.rules: list[tuple[Rule, int, float, float, dict[int, AlertMachine]]] = []
        for rule in s.rules:
            wi = next(i for i, w in enumerate(self.windows) if w.name == rule.window)
            low, high = rule.band_for(self.rates)
            self.rules.append((rule, wi, low, high, {}))
        self.outw = np.full(nw, -1, np.int64)
        for j, wi in enumerate(sorted({wi for _, wi, *_ in self.rules})):
            self.outw[wi] = j
        self.n_out = int((self.outw >= 0).sum())
        # figure status per (scope, window index): (min_calls, low, high)
        self.status_rule: dict[tuple[str, int], tuple[int, float, float]] = {}
        for scope in ("centre", "queue", "channel", "direction"):
            for wi, w in enumerate(self.windows):
                rule = s.first_rule(scope, w.name)
                if rule is None:
                    self.status_rule[scope, wi] = (20, *self.rates.band)
                else:
                    self.status_rule[scope, wi] = (rule.min_calls, *rule.band_for(self.rates))
        self.late_events = 0
        self.trimmed_atom_ts = 0  # the latest booking dropped from the arrays
        self.trimmed_point_ts = 0  # the latest session change dropped
        self.quiet_jumps = 0

    # ------------------------------------------------------------------ keys

    def key(self, scope: str, name: str) -> int:
        k = self.key_index.get((scope, name))
        if k is None:
            k = len(self.keys)
            self.keys.append((scope, name))
            self.key_index[scope, name] = k
        return k

    def combo(self, queue: str, channel: str, direction: str) -> int:
        """The combo of a call's (queue, channel, direction): sums are kept by combo."""
        cb = self.combo_index.get((queue, channel, direction))
        if cb is None:
            cb = len(self.combo_index)
            self.combo_index[queue, channel, direction] = cb
            keys = [
                0,
                self.key("queue", queue),
                self.key("channel", channel),
                self.key("direction", direction),
            ]
            self.combo_keys = np.concatenate([self.combo_keys, np.array([keys], np.int64)])
            nw = self.Ct.shape[0]
            self.C = np.concatenate([self.C, np.zeros((1, K.NV), np.int64)])
            self.Ct = np.concatenate([self.Ct, np.zeros((nw, 1, K.NV), np.int64)], axis=1)
        return cb

    # ------------------------------------------------------------------ events

    def apply(self, ev: Event) -> bool:
        """Fold one valid event in. Returns False for a duplicate id."""
        if ev.id in self.seen:
            return False
        self.seen[ev.id] = ev.ts
        ts = ev.ts
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        if self.min_ts is None or ts < self.min_ts:
            self.min_ts = ts
        if self.M is not None and ts < self.M:
            self.late_events += 1
        if ev.type <= LOGOUT:
            self._apply_agent(ev)
        else:
            self._apply_call(ev)
        return True

    def _apply_call(self, ev: Event) -> None:
        calls = self.calls
        i = calls.slot(ev.call)
        ts = ev.ts
        if ts > calls.last_ts[i]:
            calls.last_ts[i] = ts
        t = ev.type
        if t == OFFERED:
            cur = calls.off_ts[i]
            if cur != 0 and (cur < ts or (cur == ts and calls.off_id[i] <= ev.id)):
                return
            old = calls.bookings(i, self.inc_s)
            calls.off_ts[i] = ts
            calls.off_id[i] = ev.id
            calls.off_cb[i] = self.combo(ev.queue, ev.channel, ev.direction)
            calls.off_flags[i] = (VOICE if ev.channel == "voice" else 0) | (
                OUTBOUND if ev.direction == "outbound" else 0
            )
        elif t == OUTCOME:
            cur = calls.out_ts[i]
            if cur != 0 and (cur < ts or (cur == ts and calls.out_id[i] <= ev.id)):
                return
            old = calls.bookings(i, self.inc_s)
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
            old = calls.bookings(i, self.inc_s)
            col[i] = ts
        new = calls.bookings(i, self.inc_s)
        if new == old:
            return
        pend = self.pend_b
        for b in old:
            if b not in new:
                pend.append((b[0], b[1], -b[2], -b[3], -b[4], -b[5], -b[6], -b[7], -b[8]))
        for b in new:
            if b not in old:
                pend.append(b)

    def _apply_agent(self, ev: Event) -> None:
        agent = self.agents.get(ev.agent)
        if agent is None:
            agent = self.agents[ev.agent] = _Agent()
        cls = self.team_class.get(ev.team, 0) if ev.team is not None else 0
        item = (ev.ts, ev.id, ev.type == LOGIN, cls)
        events = agent.events
        i = bisect.bisect_left(events, item)
        if i < len(events) and events[i][:2] == item[:2]:
            return
        events.insert(i, item)
        new = self._agent_changes(agent)
        old = agent.changes
        agent.changes = new
        pend = self.pend_s
        for p in old:
            if p not in new:
                pend.append((p[0], p[1], -p[2]))
        for p in new:
            if p not in old:
                pend.append(p)

    @staticmethod
    def _agent_changes(agent: _Agent) -> list[tuple[int, int, int]]:
        """SPEC section 1, sessions: a login opens one when none is open, a logout closes it."""
        open_cls = agent.open0
        out: list[tuple[int, int, int]] = []
        for ts, _id, login, cls in agent.events:
            if login:
                if open_cls is None:
                    out.append((ts, cls, 1))
                    open_cls = cls
            elif open_cls is not None:
                out.append((ts, open_cls, -1))
                open_cls = None
        return out

    # ------------------------------------------------------------------ time

    def target(self, watermark: int | None = None) -> int | None:
        """The latest instant at or before the watermark."""
        if self.max_ts is None:
            return None
        w = self.max_ts - self.lateness_ms if watermark is None else watermark
        return (w // 1000) * 1000

    def advance(self, out: Output, publish: bool, watermark: int | None = None) -> None:
        target = self.target(watermark)
        if target is None:
            return
        if self.M is None:
            # the first instant is the whole second after the earliest event seen; it is
            # fixed only when the watermark passes it, so an earlier event that arrives
            # later, on time, still moves it
            assert self.min_ts is not None
            first = (self.min_ts // 1000) * 1000
            if target <= first:
                return
            self.M = first
            self.today_start = local_midnight(self.M, self.tz)
            self.next_mid = next_midnight(self.M, self.tz)
        if target <= self.M:
            # the watermark did not move; late bookings still count from now on
            if self._has_late():
                self._commit(self.M)
                if publish:
                    out.figures.append(self.figures_message(all_windows=False))
            return
        self._commit(target)
        snaps = self.engine.snapshot_at
        stops = [t for t in snaps[bisect.bisect_right(snaps, self.M) :] if t < target]
        for stop in [*stops, target]:
            self._sweep(stop, out)
            if stop in snaps:
                out.snapshots.append(self.figures_message(all_windows=False))
        self._trim()
        if publish:
            out.figures.append(self.figures_message(all_windows=False))

    def _has_late(self) -> bool:
        M = self.M
        assert M is not None
        return any(b[0] < M for b in self.pend_b) or any(p[0] < M for p in self.pend_s)

    def _commit(self, target: int) -> None:
        """Move pending bookings before ``target`` into the committed arrays."""
        M = self.M
        assert M is not None
        if self.pend_b:
            arr = np.array(self.pend_b, np.int64).reshape(-1, _BW)
            keep = arr[:, 0] >= target
            self.pend_b = [tuple(row) for row in arr[keep].tolist()] if keep.any() else []
            due = arr[~keep]
            late = due[due[:, 0] < M]
            if len(late):
                self._late_bookings(late)
            due = due[due[:, 0] >= M]
            if len(due):
                ts, cb, vi, amt = _atoms(due)
                n = len(ts)
                merged = (
                    np.empty(n, np.int64),
                    np.empty(n, np.int64),
                    np.empty(n, np.int64),
                    np.empty(n, np.int64),
                )
                m = K.compress(
                    ts,
                    cb,
                    vi,
                    amt,
                    np.int64(M),
                    (target - M) // 1000,
                    len(self.combo_index),
                    *merged,
                )
                self.ats = np.concatenate([self.ats, merged[0][:m]])
                self.acb = np.concatenate([self.acb, merged[1][:m]])
                self.avi = np.concatenate([self.avi, merged[2][:m]])
                self.aamt = np.concatenate([self.aamt, merged[3][:m]])
        if self.pend_s:
            arr = np.array(self.pend_s, np.int64).reshape(-1, 3)
            keep = arr[:, 0] >= target
            self.pend_s = [tuple(row) for row in arr[keep].tolist()] if keep.any() else []
            due = arr[~keep]
            late = due[due[:, 0] < M]
            if len(late):
                self._late_sessions(late)
            due = due[due[:, 0] >= M]
            if len(due):
                due = due[np.argsort(due[:, 0], kind="stable")]
                self.sts = np.concatenate([self.sts, due[:, 0]])
                self.scls = np.concatenate([self.scls, due[:, 1]])
                self.sdel = np.concatenate([self.sdel, due[:, 2]])

    def _window_starts(self) -> list[int]:
        M = self.M
        assert M is not None
        return [self.today_start if w.length_ms is None else M - w.length_ms for w in self.windows]

    def _late_bookings(self, late: np.ndarray) -> None:
        """Bookings before the last evaluated instant: they count from now on.

        ``C`` gains them; a window whose start is already past one must not hold it,
        so that window's ``Ct`` gains it too.
        """
        ts, cb, vi, amt = _atoms(late)
        starts = self._window_starts()
        for t, c, v, a in zip(ts.tolist(), cb.tolist(), vi.tolist(), amt.tolist(), strict=True):
            self.C[c, v] += a
            for w, s in enumerate(starts):
                if t < s:
                    self.Ct[w, c, v] += a
        order = np.argsort(ts, kind="stable")
        pos = np.searchsorted(self.ats, ts[order], side="right")
        self.ats = np.insert(self.ats, pos, ts[order])
        self.acb = np.insert(self.acb, pos, cb[order])
        self.avi = np.insert(self.avi, pos, vi[order])
        self.aamt = np.insert(self.aamt, pos, amt[order])

    def _late_sessions(self, late: np.ndarray) -> None:
        M = self.M
        assert M is not None
        starts = self._window_starts()
        for ts, cls, delta in late.tolist():
            self.nhead[cls] += delta
            self.CS[cls] += delta * (M - ts)
            for w, s in enumerate(starts):
                if ts < s:
                    self.CSt[w, cls] += delta * (s - ts)
                    if self.windows[w].length_ms is not None:
                        self.ntail[w, cls] += delta
        late = late[np.argsort(late[:, 0], kind="stable")]
        pos = np.searchsorted(self.sts, late[:, 0], side="right")
        self.sts = np.insert(self.sts, pos, late[:, 0])
        self.scls = np.insert(self.scls, pos, late[:, 1])
        self.sdel = np.insert(self.sdel, pos, late[:, 2])

    def _sweep(self, target: int, out: Output) -> None:
        """Evaluate every instant in (M, target], feeding the alert machines."""
        M = self.M
        assert M is not None
        nk = len(self.keys)
        while target > M:
            jump = self._quiet_jump(M, target)
            if jump is not None:
                M = self.M = jump
                continue
            n = min(CHUNK, (target - M) // 1000)
            q = self.quiet_after(M)
            if q is not None and M < q < M + n * 1000:
                n = (q - M) // 1000  # stop there: a long quiet stretch may follow
            mids = []
            end = M + n * 1000
            while self.next_mid <= end:
                mids.append(self.next_mid)
                self.next_mid = next_midnight(self.next_mid, self.tz)
            out_h = np.zeros((n, max(self.n_out, 1), nk), np.int64)
            out_c = np.zeros((n, max(self.n_out, 1), nk), np.float64)
            self.today_start = int(
                K.sweep(
                    self.ats,
                    self.acb,
                    self.avi,
                    self.aamt,
                    self.sts,
                    self.scls,
                    self.sdel,
                    np.int64(M),
                    n,
                    self.wlen,
                    np.int64(self.today_start),
                    np.array(mids, np.int64),
                    self.combo_keys,
                    self.C,
                    self.Ct,
                    self.CS,
                    self.CSt,
                    self.nhead,
                    self.ntail,
                    self.labour_rates,
                    self.rate_vec,
                    self.outw,
                    out_h,
                    out_c,
                )
            )
            self._alerts(M + 1000, out_h, out_c, out)
            M = end
            self.M = M

    def _quiet_jump(self, M: int, target: int) -> int | None:
        """Skip a long stretch with nothing booked in any window: return the instant to
        jump to, with the state set as the sweep would have left it, or None.

        From ``quiet_at`` on, every window has no booking left (and no session change),
        so every figure has ``handled = 0``, every cost per call is null, and no alert
        machine can change state: pending ones went inactive at ``quiet_at``, firing ones
        hold. Only time-driven sums move, and they are computed in closed form. Without
        this, one event with a far-future ``ts`` (valid per SPEC) would make the engine
        walk every second up to it.
        """
        q = self.quiet_after(M)
        if q is None or q > M:
            return None
        i = int(np.searchsorted(self.ats, M))
        j = int(np.searchsorted(self.sts, M))
        nxt = min(
            int(self.ats[i]) if i < len(self.ats) else target,
            int(self.sts[j]) if j < len(self.sts) else target,
            target,
        )
        J = (nxt // 1000) * 1000 - 1000  # the instant before the next change
        if J - M < QUIET_JUMP_MS:
            return None
        dt = J - M
        self.CS += self.nhead * dt
        self.today_start = local_midnight(J, self.tz)
        self.next_mid = next_midnight(J, self.tz)
        for w, win in enumerate(self.windows):
            self.Ct[w] = self.C
            length = J - self.today_start if win.length_ms is None else win.length_ms
            self.CSt[w] = self.CS - self.nhead * length
            self.ntail[w] = self.nhead
        self.quiet_jumps += 1
        return J

    def quiet_after(self, M: int) -> int | None:
        """From which instant no window holds what was booked or changed before ``M``."""
        i = int(np.searchsorted(self.ats, M))
        j = int(np.searchsorted(self.sts, M))
        last = max(
            int(self.ats[i - 1]) if i else self.trimmed_atom_ts,
            int(self.sts[j - 1]) if j else self.trimmed_point_ts,
        )
        if last == 0:
            return None
        end = max(last + self.max_fixed_ms, next_midnight(last, self.tz))
        return (end // 1000) * 1000 + 1000

    def machine(self, rule: Rule, low: float, high: float, k: int) -> AlertMachine:
        """A new alert machine for ``rule`` on key ``k``."""
        scope, name = self.keys[k]
        band = Band(rule.name, self.centre, scope, name, rule.window, low, high,
                    rule.min_calls, rule.hysteresis, rule.for_s * 1000)  # fmt: skip
        return AlertMachine(band)

    def _alerts(self, t_first: int, out_h: np.ndarray, out_c: np.ndarray, out: Output) -> None:
        msgs: list[dict[str, Any]] = []
        for rule, wi, low, high, machines in self.rules:
            j = self.outw[wi]
            for k, (scope, _name) in enumerate(self.keys):
                if scope != rule.scope:
                    continue
                m = machines.get(k)
                if m is None:
                    m = machines[k] = self.machine(rule, low, high, k)
                m.run(t_first, out_h[:, j, k], out_c[:, j, k], msgs)
        msgs.sort(key=lambda a: a["at"])
        out.alerts.extend(msgs)

    def _trim(self) -> None:
        """Forget committed bookings older than every fixed window, and stale join state."""
        M = self.M
        assert M is not None
        horizon = M - self.max_fixed_ms - 1000
        i = int(np.searchsorted(self.ats, horizon))
        if i > 4096 or (i and i * 2 > len(self.ats)):
            self.trimmed_atom_ts = max(self.trimmed_atom_ts, int(self.ats[i - 1]))
            self.ats, self.acb = self.ats[i:], self.acb[i:]
            self.avi, self.aamt = self.avi[i:], self.aamt[i:]
        i = int(np.searchsorted(self.sts, horizon))
        if i > 4096 or (i and i * 2 > len(self.sts)):
            self.trimmed_point_ts = max(self.trimmed_point_ts, int(self.sts[i - 1]))
            self.sts, self.scls, self.sdel = self.sts[i:], self.scls[i:], self.sdel[i:]
        if M - self.last_expiry >= 60_000:
            self.last_expiry = M
            self._expire(M)

    def _expire(self, M: int) -> None:
        st = self.engine.settings.stream
        wm = M
        cut = wm - st.dedup_ms
        if self.seen:
            self.seen = {i: t for i, t in self.seen.items() if t >= cut}
        cut = wm - st.call_ttl_ms
        self.calls.forget_before(cut)
        gone: list[str] = []
        for name, agent in self.agents.items():
            ev = agent.events
            n = bisect.bisect_left(ev, (cut,))
            if n:
                # fold the dropped events into the open state at the cut
                agent.events = ev[:n]
                head = self._agent_changes(agent)
                open_cls = agent.open0
                for _ts, cls, delta in head:
                    open_cls = cls if delta > 0 else None
                agent.open0 = open_cls
                agent.events = ev[n:]
                agent.changes = [p for p in agent.changes if p[0] >= cut]
                if not agent.events and agent.open0 is None and not agent.changes:
                    gone.append(name)
        # an agent logged out with nothing left is exactly a new _Agent(): forget it, or
        # every agent id ever seen (a new one per shift, in some systems) stays for good
        for name in gone:
            del self.agents[name]

    # ------------------------------------------------------------------ figures

    def figures_at_M(self, all_windows: bool = True) -> list[dict[str, Any]]:
        M = self.M
        assert M is not None
        windows = self.windows if all_windows else self.engine.published
        nk = len(self.keys)
        fig = np.empty((nk, K.NF), np.float64)
        result: list[dict[str, Any]] = []
        for wi, w in enumerate(self.windows):
            if w not in windows:
                continue
            length = M - self.today_start if w.length_ms is None else w.length_ms
            R_w = np.zeros((nk, K.NV), np.int64)
            K.combo_to_keys(self.C - self.Ct[wi], self.combo_keys, R_w)
            SR_w = self.CS - self.CSt[wi]
            K.derive(R_w, SR_w, length, self.labour_rates, self.rate_vec, fig)
            rows = fig.tolist()
            for k, (scope, name) in enumerate(self.keys):
                row = rows[k]
                d: dict[str, Any] = {
                    fname: (None if math.isnan(x) else x)
                    for fname, x in zip(K.FIELD_NAMES, row, strict=True)
                }
                min_calls, low, high = self.status_rule[scope, wi]
                handled = row[K.F_HANDLED]
                cpc = d["cost_per_call"]
                if handled < min_calls:
                    status = "insufficient"
                elif cpc is not None and cpc > high:
                    status = "above"
                elif cpc is not None and cpc < low:
                    status = "below"
                else:
                    status = "ok"
                d.update(
                    status=status,
                    low=low,
                    high=high,
                    centre=self.centre,
                    scope=scope,
                    key=name,
                    window=w.name,
                    as_of=M,
                )
                result.append(d)
        return result

    def figures_message(self, all_windows: bool = False) -> dict[str, Any]:
        return {
            "type": "figures",
            "centre": self.centre,
            "as_of": self.M,
            "figures": self.figures_at_M(all_windows=all_windows),
        }


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

    def ingest_events(self, events: Iterable[Event], *, publish: bool = True) -> Output:
        out = Output()
        evs = list(events)
        self.counts["events"] += len(evs)
        self._fold(evs, out, publish)
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

    def checkpoint(self, centre: str, extra: dict[str, Any] | None = None) -> bytes:
        """One centre's whole state as bytes (see :mod:`callcost.streams.checkpoint`)."""
        from callcost.streams import checkpoint

        return checkpoint.dump(self.centres[centre], extra)

    def restore(self, data: bytes) -> str:
        """Load a centre from a checkpoint; returns the centre id."""
        from callcost.streams import checkpoint

        return checkpoint.load(self, data).centre

    def last_instants(self) -> dict[str, int | None]:
        return {c: st.M for c, st in self.centres.items()}

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "rejected_by_reason": dict(self.reject_reasons),
            "late_events": sum(st.late_events for st in self.centres.values()),
            "centres": len(self.centres),
        }
