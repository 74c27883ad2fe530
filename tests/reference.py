"""A brute-force reference of the contract, written straight from SPEC sections 1, 3, 4, 5.

Slow and literal on purpose: every rule of the SPEC is one visible line or block, with a
comment that cites it, so that a reader can check this file against the SPEC by eye and
the property tests can then check the engine against this file. It shares nothing with
the engine except the parsing of settings and events (``streams/config.py``,
``streams/events.py``) and the names and window syntax (``streams/vocabulary.py``), so
that the tests test meaning, not parsing; tests/test_reference_independent.py guards it.

Entry point: :class:`Reference` built from the valid events of a stream (in arrival
order, all on time) and the :class:`Settings`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from callcost.streams.config import Rates, Rule, Settings
from callcost.streams.events import (
    ANSWERED,
    ENDED,
    LOGIN,
    LOGOUT,
    OFFERED,
    OUTCOME,
    WRAPPED,
    Event,
)
from callcost.streams.vocabulary import Window, parse_window

HOUR_MS = 3_600_000
SCOPES = ("centre", "queue", "channel", "direction")
COUNTS = ("offered", "handled", "abandoned", "conversions")
NUMBERS = (
    "offered", "handled", "abandoned", "conversions", "handle_s", "telephony", "labour",
    "overhead", "total", "aht_s", "cost_per_call", "cost_per_sale", "staffed_s", "occupancy",
)
CALL_TYPES = (OFFERED, ANSWERED, ENDED, WRAPPED, OUTCOME)


# ------------------------------------------------------------------ section 1: events


def dedupe(events: Iterable[Event]) -> list[Event]:
    """SPEC 1 envelope: a second event with an id already seen is a duplicate and changes
    nothing."""
    seen: set[str] = set()
    out: list[Event] = []
    for e in events:
        if e.id in seen:
            continue
        seen.add(e.id)
        out.append(e)
    return out


@dataclass(frozen=True)
class Call:
    """One call after SPEC 1's rules: only the events that count, as timestamps."""

    call: str
    queue: str
    direction: str
    channel: str
    offered: int
    answered: int | None
    ended: int | None
    wrapped: int | None
    outcome: str | None
    outcome_ts: int | None


def calls_of(events: Iterable[Event]) -> list[Call]:
    """The calls of one centre's (deduplicated) events."""
    first: dict[str, dict[int, Event]] = defaultdict(dict)
    for e in events:
        if e.type not in CALL_TYPES:
            continue
        assert e.call is not None
        cur = first[e.call].get(e.type)
        # SPEC 1: per call and type only the event with the smallest ts (ties: the
        # smallest id) is considered; the others are ignored.
        if cur is None or (e.ts, e.id) < (cur.ts, cur.id):
            first[e.call][e.type] = e
    calls: list[Call] = []
    for call_id in sorted(first):
        by_type = first[call_id]
        off = by_type.get(OFFERED)
        # SPEC 1: a call exists from its call.offered.
        if off is None:
            continue

        def counted(
            etype: int, off: Event = off, by_type: dict[int, Event] = by_type
        ) -> int | None:
            e = by_type.get(etype)
            # SPEC 1: its other events count only if their ts is >= the offered ts.
            return e.ts if e is not None and e.ts >= off.ts else None

        answered = counted(ANSWERED)
        ended = counted(ENDED)
        wrapped = counted(WRAPPED)
        outcome_ts = counted(OUTCOME)
        # SPEC 1: call.answered counts only if the call has no call.ended or its ts is
        # <= the ended ts.
        if answered is not None and ended is not None and not answered <= ended:
            answered = None
        # SPEC 1: call.wrapped counts only if the call was answered and ended and its ts
        # is >= the ended ts.
        if wrapped is not None and not (
            answered is not None and ended is not None and wrapped >= ended
        ):
            wrapped = None
        outcome = by_type[OUTCOME].outcome if outcome_ts is not None else None
        assert off.queue is not None
        calls.append(
            Call(
                call=call_id,
                # SPEC 1: queue, direction and channel come from the call.offered.
                queue=off.queue,
                direction=off.direction,
                channel=off.channel,
                offered=off.ts,
                answered=answered,
                ended=ended,
                wrapped=wrapped,
                outcome=outcome,
                outcome_ts=outcome_ts,
            )
        )
    return calls


class Booking(NamedTuple):
    """One quantity booked at ``ts`` for a call, with the call's key in every scope."""

    ts: int
    keys: dict[str, str]  # scope -> key
    offered: int = 0
    handled: int = 0
    abandoned: int = 0
    conversions: int = 0
    handle_s: float = 0.0
    telephony: float = 0.0


def bookings_of(centre: str, calls: Iterable[Call], rates: Rates) -> list[Booking]:
    """SPEC 1's table "booked at / value", sorted by booking ts."""
    out: list[Booking] = []
    for c in calls:
        keys = {"centre": centre, "queue": c.queue, "channel": c.channel, "direction": c.direction}
        # offered: booked at call.offered, value 1
        out.append(Booking(c.offered, keys, offered=1))
        if c.ended is not None:
            if c.answered is not None:
                # handled: at call.ended of an answered call, 1; talk seconds at the same
                # event, (ended - answered) / 1000
                out.append(
                    Booking(c.ended, keys, handled=1, handle_s=(c.ended - c.answered) / 1000)
                )
            else:
                # abandoned: at call.ended of a call not answered, 1
                out.append(Booking(c.ended, keys, abandoned=1))
            if c.channel == "voice":
                # telephony: at call.ended of a voice call (SPEC 3): d = ended - offered,
                # billed = ceil(d / (1000 x inc)) x inc, cost = billed / 60 x rate[direction]
                inc = rates.billing_increment_s
                d = c.ended - c.offered
                billed = -(-d // (1000 * inc)) * inc
                cost = billed / 60 * rates.telephony_per_minute[c.direction]
                out.append(Booking(c.ended, keys, telephony=cost))
        if c.wrapped is not None:
            assert c.ended is not None
            # wrap seconds: at call.wrapped, (wrapped - ended) / 1000
            out.append(Booking(c.wrapped, keys, handle_s=(c.wrapped - c.ended) / 1000))
        if c.outcome_ts is not None and c.outcome in ("sale", "lead"):
            # conversion: at call.outcome with outcome sale or lead, 1
            out.append(Booking(c.outcome_ts, keys, conversions=1))
    out.sort(key=lambda b: b.ts)
    return out


@dataclass(frozen=True)
class Session:
    agent: str
    team: str | None
    start: int
    end: int | None  # None: still open


def sessions_of(events: Iterable[Event]) -> list[Session]:
    """SPEC 1 agent sessions."""
    per_agent: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.type in (LOGIN, LOGOUT):
            assert e.agent is not None
            per_agent[e.agent].append(e)
    out: list[Session] = []
    for agent in sorted(per_agent):
        # SPEC 1: the agent's login and logout events sorted by (ts, id)
        evs = sorted(per_agent[agent], key=lambda e: (e.ts, e.id))
        open_login: Event | None = None
        for e in evs:
            if e.type == LOGIN and open_login is None:
                # a login opens a session when none is open
                open_login = e
            elif e.type == LOGOUT and open_login is not None:
                # a logout closes the open one
                out.append(Session(agent, open_login.team, open_login.ts, e.ts))
                open_login = None
            # any other login or logout is ignored
        if open_login is not None:
            out.append(Session(agent, open_login.team, open_login.ts, None))
    return out


def overlap_ms(s: Session, start: int, end: int) -> int:
    """SPEC 1/3: a session's overlap with [start, end), in ms; a session still open at T
    (or closed at or after T, which the events before T do not show) runs on to T=end."""
    s_end = end if s.end is None else min(s.end, end)
    return max(0, s_end - max(s.start, start))


# ------------------------------------------------------------------ section 3: figures


def last_local_midnight(T: int, timezone: str) -> int:
    """SPEC 3: S = the last local midnight <= T in the centre's timezone."""
    tz = ZoneInfo(timezone)
    local = datetime.fromtimestamp(T / 1000, tz)
    best: int | None = None
    for days_back in (0, 1, 2):
        day = local.date() - timedelta(days=days_back)
        for fold in (0, 1):
            midnight = datetime(day.year, day.month, day.day, tzinfo=tz, fold=fold)
            ms = round(midnight.astimezone(UTC).timestamp() * 1000)
            if ms <= T and (best is None or ms > best):
                best = ms
    assert best is not None
    return best


def window_start(window: Window, T: int, rates: Rates) -> int:
    """SPEC 3: [S, T) with S = T - L, or the last local midnight for ``today``."""
    if window.is_today:
        return last_local_midnight(T, rates.timezone)
    assert window.length_ms is not None
    return T - window.length_ms


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def status_of(
    settings: Settings, rates: Rates, scope: str, window: str, handled: float, v: float | None
) -> str:
    """SPEC 3 status: the first rule on the same scope and window, else 20 and the band."""
    rule = settings.first_rule(scope, window)
    min_calls = rule.min_calls if rule is not None else 20
    low, high = rule.band_for(rates) if rule is not None else rates.band
    if handled < min_calls:
        return "insufficient"
    # v is null here only when min_calls = 0 and handled = 0: neither above nor below
    if v is not None and v > high:
        return "above"
    if v is not None and v < low:
        return "below"
    return "ok"


def compute_figures(
    settings: Settings,
    centre: str,
    T: int,
    window: Window,
    scopes: Iterable[str],
    bookings: list[Booking],
    sessions: list[Session],
    keys: dict[str, set[str]] | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Figures of every key of ``scopes`` for the window ending at T.

    ``bookings`` may hold more than the window: only those with ts in [S, T) count.
    ``keys`` lists the keys to report per scope (default: every key of a booking < T).
    """
    rates = settings.rates_for(centre)
    S = window_start(window, T, rates)
    # SPEC 3: each booked quantity counts in the window when its booking ts is in [S, T)
    inside = [b for b in bookings if S <= b.ts < T]
    # SPEC 3: sessions count by their overlap with [S, T), in ms
    overlaps = [(s, overlap_ms(s, S, T)) for s in sessions if s.start < T]
    staffed_ms = sum(ms for _, ms in overlaps)
    # labour: sum over sessions of overlap / 3,600,000 x the session team's labour rate
    labour = sum(ms / HOUR_MS * rates.labour_rate(s.team) for s, ms in overlaps)
    # overhead: fixed x (T - S) / 3,600,000 + seat x the sessions' total overlap / 3,600,000
    overhead = (
        rates.fixed_per_hour * (T - S) / HOUR_MS + rates.seat_per_hour * staffed_ms / HOUR_MS
    )
    centre_handle_s = sum(b.handle_s for b in inside)  # the centre's handle_s, for allocation

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for scope in scopes:
        if keys is not None:
            scope_keys = keys.get(scope, set())
        else:
            scope_keys = {b.keys[scope] for b in bookings if b.ts < T}
        if scope == "centre":
            scope_keys = {centre}  # SPEC 3: centre scope, key = the centre id
        # SPEC 3: a call belongs to the key of its call.offered; the bookings of a key
        # are those of its calls alone
        by_key: dict[str, list[Booking]] = defaultdict(list)
        for b in inside:
            by_key[b.keys[scope]].append(b)
        for key in sorted(scope_keys):
            mine = by_key.get(key, [])
            # sum each quantity over the key's bookings in the window
            column: dict[str, tuple[Any, ...]] = {}
            if mine:
                column = dict(zip(Booking._fields, zip(*mine, strict=True), strict=True))
            fig: dict[str, Any] = {c: float(sum(column.get(c, ()))) for c in COUNTS}
            handle_s = sum(column.get("handle_s", ()))
            telephony = sum(column.get("telephony", ()))
            if scope == "centre":
                k_labour, k_overhead = labour, overhead
                staffed_s: float | None = staffed_ms / 1000
                # occupancy = handle_s / staffed_s (null when 0)
                occupancy = _ratio(handle_s, staffed_ms / 1000)
            else:
                # allocated = (labour + overhead) x handle_s[k] / handle_s[centre] (0 when
                # the centre's handle_s is 0), split as labour and overhead in proportion
                share = 0.0 if centre_handle_s == 0 else handle_s / centre_handle_s
                k_labour, k_overhead = labour * share, overhead * share
                # staffed_s and occupancy are null on every other scope
                staffed_s = occupancy = None
            # total = labour + overhead + telephony (keys: telephony[k] + allocated)
            total = k_labour + k_overhead + telephony
            handled = fig["handled"]
            cost_per_call = _ratio(total, handled)  # total / handled, null when 0
            fig.update(
                handle_s=handle_s,
                telephony=telephony,
                labour=k_labour,
                overhead=k_overhead,
                total=total,
                aht_s=_ratio(handle_s, handled),  # handle_s / handled, null when 0
                cost_per_call=cost_per_call,
                cost_per_sale=_ratio(total, fig["conversions"]),  # null when 0
                staffed_s=staffed_s,
                occupancy=occupancy,
                status=status_of(settings, rates, scope, window.name, handled, cost_per_call),
                centre=centre,
                scope=scope,
                key=key,
                window=window.name,
                as_of=T,
            )
            out[(scope, key)] = fig
    return out


# ------------------------------------------------------------------ sections 4 and 5


@dataclass
class _AlertState:
    kind: str = "inactive"  # inactive | pending | firing
    direction: str | None = None
    since: int | None = None


class Reference:
    """The contract, brute force. ``events``: valid events in arrival order, all on time."""

    def __init__(self, events: Iterable[Event], settings: Settings) -> None:
        self.settings = settings
        self.events = dedupe(events)
        self.by_centre: dict[str, list[Event]] = defaultdict(list)
        for e in self.events:
            self.by_centre[e.centre].append(e)
        self._cache: dict[str, tuple[list[Booking], list[int], list[Session]]] = {}
        self._firsts: dict[str, dict[tuple[str, str], int]] = {}

    @property
    def centres(self) -> list[str]:
        return sorted(self.by_centre)

    # -- section 4 ------------------------------------------------------------------

    def watermark(self, centre: str) -> int:
        """SPEC 4: W = (largest ts seen) - lateness_ms."""
        return max(e.ts for e in self.by_centre[centre]) - self.settings.stream.lateness_ms

    def last_instant(self, centre: str) -> int:
        """SPEC 4: the latest instant (whole second) <= W."""
        return self.watermark(centre) // 1000 * 1000

    def first_instant(self, centre: str) -> int:
        """SPEC 5: instants are evaluated from the first whole second after a centre's
        first event (the smallest ts: meaning never depends on arrival order, SPEC 1)."""
        first_ts = min(e.ts for e in self.by_centre[centre])
        return (first_ts // 1000 + 1) * 1000

    def instants(self, centre: str) -> range:
        """SPEC 4: every instant is evaluated, including the seconds between two events."""
        return range(self.first_instant(centre), self.last_instant(centre) + 1, 1000)

    # -- section 3, literally: from the set of events with ts < T ----------------------

    def figures(
        self, centre: str, T: int, windows: Iterable[str] | None = None
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Every scope/key/window figure at T, keyed (scope, key, window)."""
        assert T % 1000 == 0, "an instant is a whole second"
        # SPEC 1: the figures for T are a function of the set of events with ts < T
        before = [e for e in self.by_centre[centre] if e.ts < T]
        rates = self.settings.rates_for(centre)
        bookings = bookings_of(centre, calls_of(before), rates)
        sessions = sessions_of(before)
        if windows is None:
            windows = [w.name for w in self.settings.all_windows]
        names = list(windows)
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for name in names:
            window = parse_window(name)
            figs = compute_figures(self.settings, centre, T, window, SCOPES, bookings, sessions)
            for (scope, key), fig in figs.items():
                out[(scope, key, name)] = fig
        return out

    # -- section 5 --------------------------------------------------------------------

    def _whole(self, centre: str) -> tuple[list[Booking], list[int], list[Session]]:
        """The bookings (sorted by ts, with their ts) and sessions of the whole set.

        Booked quantities depend only on events at or before their booking ts (SPEC 1),
        so the bookings of the whole set, cut at T, are those of the events before T;
        likewise the sessions, cut at T. test_reference_vectors checks fast_figures()
        against figures() at sample instants.
        """
        if centre not in self._cache:
            evs = self.by_centre[centre]
            bookings = bookings_of(centre, calls_of(evs), self.settings.rates_for(centre))
            self._cache[centre] = (bookings, [b.ts for b in bookings], sessions_of(evs))
        return self._cache[centre]

    def _first_ts(self, centre: str) -> dict[tuple[str, str], int]:
        """(scope, key) -> the ts of its first booking."""
        if centre not in self._firsts:
            first: dict[tuple[str, str], int] = {}
            for b in self._whole(centre)[0]:
                for scope in SCOPES:
                    first.setdefault((scope, b.keys[scope]), b.ts)
            self._firsts[centre] = first
        return self._firsts[centre]

    def fast_figures(
        self, centre: str, T: int, window_name: str, scope: str
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """figures() for one window and scope, from the whole set cut at T (for alerts)."""
        bookings, booking_ts, sessions = self._whole(centre)
        window = parse_window(window_name)
        S = window_start(window, T, self.settings.rates_for(centre))
        hi = bisect.bisect_left(booking_ts, T)
        # the keys of the calls offered before T: the first booking of a key is an offered
        keys = {scope: {k for (sc, k), first in self._first_ts(centre).items()
                        if sc == scope and first < T}}
        lo = bisect.bisect_left(booking_ts, S)
        return compute_figures(
            self.settings, centre, T, window, (scope,), bookings[lo:hi], sessions, keys
        )

    def alerts(self, centre: str, until: int | None = None) -> list[dict[str, Any]]:
        """Every alert message of the centre, stepping every instant literally (SPEC 5);
        ``until``: stop after that instant (the messages of a prefix of the stream)."""
        rates = self.settings.rates_for(centre)
        states: dict[tuple[str, str], _AlertState] = defaultdict(_AlertState)
        out: list[dict[str, Any]] = []
        for T in self.instants(centre):
            if until is not None and until < T:
                break
            for rule in self.settings.rules:
                figs = self.fast_figures(centre, T, rule.window, rule.scope)
                low, high = rule.band_for(rates)  # band: default the centre's
                for (_scope, key), fig in sorted(figs.items()):
                    out.extend(step(states[(rule.name, key)], rule, low, high, centre, key, T, fig))
        return out


def condition(rule: Rule, low: float, high: float, fig: dict[str, Any]) -> str | None:
    """SPEC 5: above (v > high), below (v < low), or none (v within the band, v null, or
    handled < min_calls)."""
    v = fig["cost_per_call"]
    if v is None or fig["handled"] < rule.min_calls:
        return None
    if v > high:
        return "above"
    if v < low:
        return "below"
    return None


def step(
    state: _AlertState,
    rule: Rule,
    low: float,
    high: float,
    centre: str,
    key: str,
    T: int,
    fig: dict[str, Any],
) -> list[dict[str, Any]]:
    """SPEC 5, one (rule, key) at instant T; mutates ``state``, returns the messages."""
    v = fig["cost_per_call"]
    handled = fig["handled"]
    cond = condition(rule, low, high, fig)
    out: list[dict[str, Any]] = []

    def message(kind: str) -> dict[str, Any]:
        return {
            "type": "alert",
            # id = centre/rule/key/since; a resolved carries its firing's id
            "id": f"{centre}/{rule.name}/{key}/{state.since}",
            "state": kind,
            "rule": rule.name,
            "centre": centre,
            "scope": rule.scope,
            "key": key,
            "window": rule.window,
            "direction": state.direction,
            "value": v,
            "low": low,
            "high": high,
            "handled": int(handled),
            "since": state.since,
            "at": T,
        }

    if state.kind == "firing":
        # firing(dir): clears when handled >= min_calls and v <= high x (1 - hysteresis)
        # for above, v >= low x (1 + hysteresis) for below
        if state.direction == "above":
            clears = v is not None and v <= high * (1 - rule.hysteresis)
        else:
            clears = v is not None and v >= low * (1 + rule.hysteresis)
        if not (handled >= rule.min_calls and clears):
            return out  # otherwise it holds
        out.append(message("resolved"))  # emit resolved at T
        # then back to inactive (and pending at once if v is beyond the other edge: that
        # is the inactive rule below, since a cleared v cannot be beyond its own edge)
        state.kind, state.direction, state.since = "inactive", None, None
    elif state.kind == "pending" and cond != state.direction:
        # pending: any other condition -> inactive, or pending for the other direction
        # from T (that is the inactive rule below)
        state.kind, state.direction, state.since = "inactive", None, None
    if state.kind == "inactive" and cond is not None:
        # inactive -> pending(dir, since = T) when the condition is dir
        state.kind, state.direction, state.since = "pending", cond, T
    if state.kind == "pending" and cond == state.direction:
        assert state.since is not None
        # pending: the same dir at T - since >= for_s -> firing: emit firing at T
        if T - state.since >= rule.for_s * 1000:
            state.kind = "firing"
            out.append(message("firing"))
    return out


# ------------------------------------------------------------------ comparing


def close(a: float | None, b: float | None) -> bool:
    """SPEC 3: numbers match to 1e-6 relative (1e-9 absolute near zero); null only null."""
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= max(1e-9, 1e-6 * max(abs(a), abs(b)))


def zero_figure(scope: str) -> dict[str, Any]:
    """A key with no booking: all zero counts and null ratios (tests/vectors/README.md)."""
    fig: dict[str, Any] = {n: 0.0 for n in NUMBERS}
    for n in ("aht_s", "cost_per_call", "cost_per_sale", "occupancy"):
        fig[n] = None
    if scope != "centre":
        fig["staffed_s"] = None
    return fig


def figure_diffs(
    expected: dict[str, Any] | None, actual: dict[str, Any] | None, scope: str
) -> list[str]:
    """The fields where two figures of the same scope/key/window disagree."""
    exp = expected if expected is not None else zero_figure(scope)
    act = actual if actual is not None else zero_figure(scope)
    diffs = [f"{n}: {exp[n]!r} != {act[n]!r}" for n in NUMBERS if not close(exp[n], act[n])]
    if expected is not None and actual is not None and expected["status"] != actual["status"]:
        diffs.append(f"status: {expected['status']!r} != {actual['status']!r}")
    return diffs


def alert_diffs(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    diffs = []
    for n in ("type", "id", "state", "rule", "centre", "scope", "key", "window", "direction",
              "since", "at"):
        if expected.get(n) != actual.get(n):
            diffs.append(f"{n}: {expected.get(n)!r} != {actual.get(n)!r}")
    for n in ("value", "low", "high", "handled"):
        if not close(expected.get(n), actual.get(n)):
            diffs.append(f"{n}: {expected.get(n)!r} != {actual.get(n)!r}")
    return diffs
