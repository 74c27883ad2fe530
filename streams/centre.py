"""One centre's state and its advance (SPEC sections 1, 3, 4 and 5): events folded in,
instants evaluated, figures and alerts out.

How it works
------------
* **Join.** A call keeps, per event type, the event with the smallest ``(ts, id)``
  (:mod:`callcost.streams.calls`). From that join state a pure function derives the
  call's *bookings* (SPEC section 1: a quantity at the ``ts`` of the event that completes
  it). When a new event changes the join, the centre books the difference (old bookings
  negated, new ones added), so the result is a function of the set of events, whatever
  their order. Agents work the same way (:mod:`callcost.streams.sessions`): their
  login/logout events, sorted by ``(ts, id)``, derive session change points.
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

Pure: no I/O, no clock; time comes in as event timestamps and watermarks.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from callcost.streams import kernels as K
from callcost.streams.alerts import AlertMachine, Band
from callcost.streams.calls import CallTable
from callcost.streams.config import Rule, Settings
from callcost.streams.days import local_midnight, next_midnight
from callcost.streams.events import (
    LOGIN,
    LOGOUT,
    Event,
)
from callcost.streams.output import Output
from callcost.streams.sessions import Agent, forget_agents
from callcost.streams.vocabulary import SCOPES, STATUSES, Window

CHUNK = 4096  # instants per kernel call: bounds the transient output arrays
QUIET_JUMP_MS = 6 * 3_600_000  # skip quiet stretches longer than this
# a figure's status against its rule's band
OK, ABOVE, BELOW, INSUFFICIENT = STATUSES
# booking tuple: (ts, combo, *NV values)
_BW = 2 + K.NV


def _atoms(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Booking rows ``(ts, combo, NV values)`` -> one atom per non-zero value."""
    r, v = np.nonzero(rows[:, 2:])
    return rows[r, 0], rows[r, 1], v.astype(np.int64), rows[r, 2 + v]


class Host(Protocol):
    """What a centre reads of the engine that holds it (the engine, duck-typed)."""

    settings: Settings
    #: every window computed: published ones, then those only rules use
    windows: tuple[Window, ...]
    published: tuple[Window, ...]
    #: sorted instants at which figures are captured (replay ``--at``)
    snapshot_at: list[int]


class CentreState:
    """Everything the engine knows of one centre."""

    def __init__(self, engine: Host, centre: str) -> None:
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
        self.agents: dict[str, Agent] = {}
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
        for scope in SCOPES:
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
            self.calls.apply(ev, self.inc_s, self.combo, self.pend_b)
        return True

    def _apply_agent(self, ev: Event) -> None:
        agent = self.agents.get(ev.agent)
        if agent is None:
            agent = self.agents[ev.agent] = Agent()
        cls = self.team_class.get(ev.team, 0) if ev.team is not None else 0
        agent.add((ev.ts, ev.id, ev.type == LOGIN, cls), self.pend_s)

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
        forget_agents(self.agents, cut)

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
                    status = INSUFFICIENT
                elif cpc is not None and cpc > high:
                    status = ABOVE
                elif cpc is not None and cpc < low:
                    status = BELOW
                else:
                    status = OK
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
