"""Property tests: the engine against the brute-force reference (tests/reference.py).

Random small streams (1-2 centres, a few queues, every channel and direction, 0-5 agents
with teams, up to ~16 calls over a few minutes, random subsets of each call's events,
equal timestamps, events before their call's offered, duplicates re-sent with the same
id, extra events of the same type) arrive in a random order in which every event is on
time (SPEC 4), split in random batches. Then:

(a) the engine's figures equal the reference's at several instants, for every scope, key
    and window;
(b) the engine's figures and alerts do not depend on the arrival order nor the batches;
(c) the keys of a scope add up to the centre;
(d) a key that never appears costs nothing;
(e) the engine's alert sequence equals the reference's, in order (see ``in_order``).

Instants are drawn inside each centre's range and most streams end with a clock event
past the lateness, so nearly every example compares figures; each property asserts at
its end a minimum share of examples that compared something (``Shares``), and the alert
property steers generation toward more alert messages (``hypothesis.target``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, example, given, note, settings
from hypothesis import strategies as st
from hypothesis import target as hypothesis_target
from hypothesis.errors import InvalidArgument

from callcost.streams.config import Settings, parse_settings
from callcost.streams.engine import Engine
from callcost.streams.events import OFFERED, parse
from tests.reference import (
    COUNTS,
    SCOPES,
    Reference,
    alert_diffs,
    calls_of,
    close,
    figure_diffs,
    last_local_midnight,
)

CENTRES = ("alpha", "beta.2")
QUEUES = ("q1", "q2", "Q 3/é")
TEAMS = (None, "sales", "care", "night")  # night: not listed, so the default rate
ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Australia/Adelaide")
DAY = 1_768_435_200_000  # 2026-01-15T00:00:00Z
#: DST changes (zone, UTC ms): `today` is then not the local clock time since midnight
DST_CHANGES = (
    ("Europe/Prague", 1_774_746_000_000),  # 2026-03-29 02:00 -> 03:00
    ("Europe/Prague", 1_792_890_000_000),  # 2026-10-25 03:00 -> 02:00
    ("America/New_York", 1_772_953_200_000),  # 2026-03-08 02:00 -> 03:00
    ("America/New_York", 1_793_512_800_000),  # 2026-11-01 02:00 -> 01:00
)


def _note(text: str) -> None:
    """hypothesis.note inside a property, print outside one (the regression tests)."""
    try:
        note(text)
    except InvalidArgument:
        print(text)


def _target(observation: float, label: str) -> None:
    """hypothesis.target inside a property (steers generation), nothing outside one."""
    if currently_in_test_context():
        hypothesis_target(observation, label=label)


class Shares:
    """Per property, how many examples compared something: each property asserts at its
    end that a minimum share did, so that a strategy drifting to empty streams fails."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = defaultdict(int)
        self.hits: dict[str, int] = defaultdict(int)

    def record(self, name: str, compared: int) -> None:
        self.runs[name] += 1
        self.hits[name] += compared > 0

    def run(self, name: str, prop: Any, minimum: float) -> None:
        self.runs[name] = self.hits[name] = 0
        prop()
        runs, hits = self.runs[name], self.hits[name]
        print(f"{name}: {hits} of {runs} examples compared something")
        assert runs and hits >= minimum * runs, (
            f"{name}: only {hits} of {runs} examples compared something (< {minimum:.0%})")


SHARES = Shares()


# ------------------------------------------------------------------ scenarios


@dataclass
class Scenario:
    """A stream: configuration, messages in arrival order, batch sizes, instants."""

    toml: str
    events: list[dict[str, Any]]  # in arrival order, duplicates included
    batches: list[int] = field(default_factory=list)  # sizes; the rest is one last batch
    snapshot_at: list[int] = field(default_factory=list)
    alt_events: list[dict[str, Any]] = field(default_factory=list)  # another on-time order
    alt_batches: list[int] = field(default_factory=list)

    @cached_property
    def settings(self) -> Settings:
        return parse_settings(self.toml, source="scenario")

    @cached_property
    def reference(self) -> Reference:
        return Reference([parse(None, m, check_key=False) for m in self.messages], self.settings)

    @property
    def messages(self) -> list[bytes]:
        return [json.dumps(e, separators=(",", ":")).encode() for e in self.events]

    def __repr__(self) -> str:
        lines = ",\n    ".join(json.dumps(e, separators=(",", ":")) for e in self.events)
        return (
            f"Scenario(toml={self.toml!r},\n  events=[\n    {lines}],\n"
            f"  batches={self.batches!r}, snapshot_at={self.snapshot_at!r},\n"
            f"  alt_events=<order {[e['id'] for e in self.alt_events]}>,"
            f" alt_batches={self.alt_batches!r})"
        )


#: a time within the stream, from its base: whole seconds often, so that ties and
#: boundaries happen
def _offsets(span_s: int) -> st.SearchStrategy[int]:
    return st.builds(
        lambda s, ms: s * 1000 + ms, st.integers(0, span_s), st.sampled_from([0, 0, 0, 1, 500, 999])
    )


#: a stream lasts four minutes, or sometimes half an hour (span in s -> offsets)
OFFSETS = {240: _offsets(240), 1800: _offsets(1800)}
#: time from one event of a call to its next: mostly forward, sometimes 0 or back
DELTA = st.builds(
    lambda s, ms: s * 1000 + ms,
    st.one_of(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(-4, 0)),
    st.sampled_from([0, 0, 0, 1, -1, 500]),
)
#: the same, in a tidy call: forward only
FORWARD = st.builds(lambda s, ms: s * 1000 + ms, st.integers(0, 50), st.sampled_from([0, 1, 500]))
TENTHS = st.integers(0, 9)


def on_time_order(
    draw: st.DrawFn, events: list[dict[str, Any]], lateness: int
) -> list[dict[str, Any]]:
    """A random arrival order in which every event is on time (SPEC 4: ts >= W at arrival).

    Picking only events with ts <= (smallest ts still to come in its centre) + lateness
    keeps every event still to come >= (largest ts seen) - lateness. Each event draws a
    priority and the eligible one with the smallest goes next: shrinks to the order by ts.
    """
    prio = draw(st.lists(st.integers(0, 20), min_size=len(events), max_size=len(events)))
    rest = sorted(range(len(events)), key=lambda i: events[i]["ts"])
    out: list[dict[str, Any]] = []
    while rest:
        low: dict[str, int] = {}
        for i in rest:
            low.setdefault(events[i]["centre"], events[i]["ts"])
        eligible = [i for i in rest if events[i]["ts"] <= low[events[i]["centre"]] + lateness]
        pick = min(eligible, key=lambda i: prio[i])
        rest.remove(pick)
        out.append(events[pick])
    return out


def check_on_time(events: list[dict[str, Any]], lateness: int) -> None:
    top: dict[str, int] = {}
    for e in events:
        assert e["ts"] >= top.get(e["centre"], 0) - lateness, ("late event", e)
        top[e["centre"]] = max(top.get(e["centre"], 0), e["ts"])


def fmt(x: float) -> str:
    return repr(float(x))


@st.composite
def configs(draw: st.DrawFn, centres: tuple[str, ...], zones: dict[str, str]) -> tuple[str, int]:
    lateness = draw(st.sampled_from([0, 1000, 5000, 30_000, 300_000]))
    lines = ["[defaults]"]
    lines.append(f"labour_per_hour = {fmt(draw(st.sampled_from([24.0, 18.5])))}")
    lines.append(f"seat_per_hour = {fmt(draw(st.sampled_from([1.5, 0.0, 3.25])))}")
    lines.append(f"fixed_per_hour = {fmt(draw(st.sampled_from([60.0, 0.0, 36.0])))}")
    lines.append(f"billing_increment_s = {draw(st.sampled_from([1, 6, 60]))}")
    lines.append(f'timezone = "{zones[centres[0]]}"')
    low = draw(st.sampled_from([0.3, 1.0, 2.7]))
    lines.append(f"band = [{fmt(low)}, {fmt(low + draw(st.sampled_from([0.5, 1.5, 3.0])))}]")
    lines.append("[defaults.labour_per_hour_by_team]")
    lines.append("sales = 30.0")
    lines.append("care = 21.0")
    lines.append("[defaults.telephony_per_minute]")
    lines.append(f"inbound = {fmt(draw(st.sampled_from([0.012, 0.5])))}")
    lines.append(f"outbound = {fmt(draw(st.sampled_from([0.02, 0.75])))}")
    for c in centres[1:]:
        lines.append(f'[centres."{c}"]')
        lines.append(f'timezone = "{zones[c]}"')
        lines.append(f"fixed_per_hour = {fmt(draw(st.sampled_from([95.0, 12.0])))}")
        if draw(st.booleans()):
            lines.append("band = [0.5, 1.25]")
        if draw(st.booleans()):
            lines.append("billing_increment_s = 30")
        if draw(st.booleans()):
            lines.append(f'[centres."{c}".labour_per_hour_by_team]')
            lines.append("night = 40.0")
    windows = ["30s", "1m", "2m", "5m", "15m", "today"]
    # mostly rules of our own: the default ones need 20 calls, more than a stream has
    n_rules = draw(st.sampled_from([1, 2, 3, 0, 1, 2, 3, 3]))
    for i in range(n_rules):
        lines.append("[[rules]]")
        lines.append(f'name = "r{i}"')
        lines.append(f'scope = "{draw(st.sampled_from(SCOPES))}"')
        # short windows more often: their cost per call swings, so alerts fire and resolve
        lines.append(f'window = "{draw(st.sampled_from([*windows, "30s", "1m", "2m"]))}"')
        lines.append(f"min_calls = {draw(st.sampled_from([1, 0, 1, 2, 3]))}")
        lines.append(f"for_s = {draw(st.sampled_from([0, 0, 3, 20, 60]))}")
        lines.append(f"hysteresis = {fmt(draw(st.sampled_from([0.0, 0.05, 0.3])))}")
        if draw(st.booleans()):
            r_low = draw(st.sampled_from([0.2, 0.8, 1.5]))
            r_high = r_low + draw(st.sampled_from([0.3, 1.0, 2.5]))
            lines.append(f"band = [{fmt(r_low)}, {fmt(r_high)}]")
    published = draw(st.lists(st.sampled_from(windows), min_size=1, max_size=3, unique=True))
    lines.append("[stream]")
    lines.append(f"lateness_ms = {lateness}")
    lines.append("windows = [" + ", ".join(f'"{w}"' for w in published) + "]")
    return "\n".join(lines) + "\n", lateness


@st.composite
def call_events(
    draw: st.DrawFn, centre: str, call: str, base: int, offset: st.SearchStrategy[int]
) -> list[dict[str, Any]]:
    """A random subset of one call's events, with times that may break SPEC 1's order; or,
    half of the time, a tidy call: offered, answered and ended in that order, so that
    enough calls are handled for costs per call to cross their bands."""
    tidy = draw(st.booleans())
    o = base + draw(offset)
    env = {"centre": centre, "call": call}
    offered: dict[str, Any] = {"type": "call.offered", "ts": o, **env,
                               "queue": draw(st.sampled_from(QUEUES))}
    if draw(st.booleans()):
        offered["direction"] = draw(st.sampled_from(["inbound", "outbound"]))
    if draw(st.booleans()):
        offered["channel"] = draw(st.sampled_from(["voice", "chat", "email"]))
    out = []
    delta = FORWARD if tidy else DELTA
    if tidy or draw(TENTHS) > 0:
        out.append(offered)
    t = o
    if tidy or draw(TENTHS) > 1:
        t = t + draw(delta)
        agent = f"a{draw(st.integers(0, 4))}"
        out.append({"type": "call.answered", "ts": t, **env, "agent": agent})
    if tidy or draw(TENTHS) > 0:
        t = t + draw(delta)
        out.append({"type": "call.ended", "ts": t, **env})
        if draw(st.booleans()):
            out.append({"type": "call.wrapped", "ts": t + draw(DELTA), **env})
    if draw(TENTHS) > 5:
        out.append({"type": "call.outcome", "ts": o + draw(DELTA), **env,
                    "outcome": draw(st.sampled_from(["sale", "lead", "resolved", "unresolved"]))})
    # extra events of a type the call may already have, at another time
    for _ in range(0 if tidy else draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["call.offered", "call.answered", "call.ended",
                                     "call.wrapped", "call.outcome"]))
        extra: dict[str, Any] = {"type": kind, "ts": o + draw(DELTA), **env}
        if kind == "call.offered":
            extra["queue"] = draw(st.sampled_from(QUEUES))
            extra["channel"] = draw(st.sampled_from(["voice", "chat", "email"]))
        elif kind == "call.answered":
            extra["agent"] = "a0"
        elif kind == "call.outcome":
            extra["outcome"] = draw(st.sampled_from(["sale", "resolved"]))
        out.append(extra)
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    centres = CENTRES[: draw(st.integers(1, 2))]
    zones = {c: draw(st.sampled_from(ZONES)) for c in centres}
    span = draw(st.sampled_from([240, 240, 240, 1800]))
    offset = OFFSETS[span]
    mode = draw(st.sampled_from(["midnight", "plain", "dst"]))
    if mode == "dst":
        # the first centre's zone changes its clocks inside the stream
        zones[centres[0]], change = draw(st.sampled_from(DST_CHANGES))
        base = change - draw(st.integers(1, span)) * 1000
    elif mode == "midnight":
        # a midnight of the first centre's zone inside the stream
        midnight = last_local_midnight(DAY + 12 * 3_600_000, zones[centres[0]])
        base = midnight - draw(st.integers(1, span)) * 1000 - draw(st.sampled_from([0, 1, 300]))
    else:
        base = DAY + 3 * 3_600_000 + draw(st.sampled_from([0, 1, 300]))
    toml, lateness = draw(configs(centres, zones))
    events: list[dict[str, Any]] = []
    # a few calls or none now and then, but mostly enough for a cost per call to move
    n_calls = draw(st.one_of(st.integers(0, 16), st.integers(6, 16), st.integers(6, 16)))
    for c in centres:
        for a in range(draw(st.integers(0, 5))):
            for _ in range(draw(st.integers(0, 4))):
                kind = draw(st.sampled_from(["agent.login", "agent.login", "agent.logout"]))
                ev: dict[str, Any] = {"type": kind, "ts": base + draw(offset), "centre": c,
                                      "agent": f"a{a}"}
                team = draw(st.sampled_from(TEAMS))
                if kind == "agent.login" and team is not None:
                    ev["team"] = team
                events.append(ev)
        for k in range(n_calls // len(centres)):
            events.extend(draw(call_events(c, f"c{k}", base, offset)))
    if not events:
        events.append({"type": "agent.logout", "ts": base, "centre": centres[0], "agent": "a0"})
    # most of the time a clock event per centre: the logout of an agent that never logged in
    # (SPEC 1 ignores it), later than the last event by more than the lateness, so that the
    # watermark passes the whole stream and the windows empty out after it
    for c in centres:
        if draw(TENTHS) > 1:
            top = max((e["ts"] for e in events if e["centre"] == c), default=base)
            events.append({"type": "agent.logout", "centre": c, "agent": "clock",
                           "ts": top + lateness + draw(st.integers(1, 30)) * 1000})
    # ids: unique, in an order unrelated to ts (and "e10" < "e9": ties break by string)
    perm = draw(st.permutations(range(len(events))))
    events = [{"id": f"e{perm[i]}", **e} for i, e in enumerate(events)]
    # duplicates: the same event re-sent with the same id
    for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=3)):
        events.append(dict(events[i]))
    ordered = on_time_order(draw, events, lateness)
    batches = draw(st.lists(st.integers(1, 8), max_size=12))
    alt = on_time_order(draw, events, lateness)
    alt_batches = draw(st.lists(st.integers(1, 30), max_size=6))
    # instants to capture: whole seconds inside each centre's range (SPEC 4 and 5: from the
    # first whole second after its first event to the last instant its watermark passes)
    instants: set[int] = set()
    for c in centres:
        ts = [e["ts"] for e in events if e["centre"] == c]
        if not ts:
            continue
        first, last = min(ts) // 1000 + 1, (max(ts) - lateness) // 1000
        if first <= last:
            picks = st.lists(st.integers(first, last), min_size=1, max_size=4, unique=True)
            instants.update(t * 1000 for t in draw(picks))
    return Scenario(toml, ordered, batches, sorted(instants), alt, alt_batches)


# ------------------------------------------------------------------ running the engine


@dataclass
class Run:
    engine: Engine
    snapshots: dict[tuple[str, int], dict[tuple[str, str, str], dict[str, Any]]]
    alerts: dict[str, list[dict[str, Any]]]


def run_engine(sc: Scenario, order: list[bytes] | None = None,
               batches: list[int] | None = None) -> Run:
    messages = sc.messages if order is None else order
    sizes = list(sc.batches if batches is None else batches)
    eng = Engine(sc.settings, check_key=False, snapshot_at=sc.snapshot_at)
    snapshots: dict[tuple[str, int], dict[tuple[str, str, str], dict[str, Any]]] = {}
    alerts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    i = 0
    while i < len(messages):
        size = sizes.pop(0) if sizes else len(messages) - i
        out = eng.ingest([(None, m) for m in messages[i : i + size]], publish=False)
        i += size
        assert not out.rejects, out.rejects
        for s in out.snapshots:
            key = (s["centre"], s["as_of"])
            assert key not in snapshots, f"two snapshots for {key}"
            figs = {(f["scope"], f["key"], f["window"]): f for f in s["figures"]}
            for f in s["figures"]:
                assert f["as_of"] == s["as_of"] and f["centre"] == s["centre"]
            snapshots[key] = figs
        for a in out.alerts:
            alerts[a["centre"]].append(a)
    return Run(eng, snapshots, dict(alerts))


def in_range(sc: Scenario, centre: str, T: int) -> bool:
    ref = sc.reference
    return ref.first_instant(centre) <= T <= ref.last_instant(centre)


def in_order(sc: Scenario, alerts: list[dict[str, Any]], who: str) -> list[dict[str, Any]]:
    """Check that ``alerts`` come in the order of the engine and of SPEC 5's stepping: by
    instant ``at``, then by rule in configuration order, and for one (rule, key) in its
    machine's own order (a ``resolved`` before a ``firing`` the other way at the same T).
    The order of the keys of one rule at one instant is left open (the engine's is the
    order in which it met the keys, which depends on arrival): return the alerts with that
    one freedom fixed by a stable sort on the key, every other order kept as it came."""
    rank = {r.name: i for i, r in enumerate(sc.settings.rules)}
    seq = [(a["at"], rank[a["rule"]]) for a in alerts]
    wrong = [(i, x, y) for i, (x, y) in enumerate(pairwise(seq)) if y < x]
    assert not wrong, f"{who}: alerts out of order (index, (at, rule), next): {wrong[:5]}"
    return sorted(alerts, key=lambda a: (a["at"], rank[a["rule"]], a["key"]))


# ------------------------------------------------------------------ regression examples


def _sc(toml: str, rows: list[tuple[Any, ...]], snapshot_at: list[int],
        batches: list[int] | None = None) -> Scenario:
    """rows: (id, type, ts offset in ms from DAY, centre, extra fields)."""
    events = [{"id": i, "type": t, "ts": DAY + dt, "centre": c, **x} for i, t, dt, c, x in rows]
    return Scenario(toml, events, batches or [], [DAY + t for t in snapshot_at])


BASIC = """
[defaults]
timezone = "UTC"
band = [0.3, 0.8]
[[rules]]
name = "r0"
scope = "queue"
window = "1m"
min_calls = 1
for_s = 0
hysteresis = 0.0
[stream]
lateness_ms = 10000
windows = ["30s", "1m", "today"]
"""

#: SPEC 1's rules once each: answered before offered, wrapped before ended, the smallest
#: (ts, id) per type with "e10" < "e9", an ended without offered, a double login.
EX_RULES = _sc(BASIC, [
    ("e1", "agent.login", -5000, "alpha", {"agent": "a1", "team": "sales"}),
    ("e2", "agent.login", -5000, "alpha", {"agent": "a1", "team": "care"}),
    ("e3", "call.answered", 999, "alpha", {"call": "c1", "agent": "a1"}),
    ("e4", "call.offered", 1000, "alpha", {"call": "c1", "queue": "q1"}),
    ("e5", "call.ended", 9000, "alpha", {"call": "c1"}),
    ("e6", "call.offered", 2000, "alpha", {"call": "c2", "queue": "q2", "channel": "chat"}),
    ("e9", "call.answered", 3000, "alpha", {"call": "c2", "agent": "a1"}),
    ("e10", "call.answered", 3000, "alpha", {"call": "c2", "agent": "a1"}),
    ("e11", "call.wrapped", 9500, "alpha", {"call": "c2"}),
    ("e12", "call.ended", 10000, "alpha", {"call": "c2"}),
    ("e13", "call.ended", 11000, "alpha", {"call": "c3"}),
    ("e14", "call.offered", 12000, "alpha", {"call": "c4", "queue": "q1", "direction": "outbound"}),
    ("e15", "call.answered", 12000, "alpha", {"call": "c4", "agent": "a9"}),
    ("e16", "call.ended", 15000, "alpha", {"call": "c4"}),
    ("e17", "call.wrapped", 15000, "alpha", {"call": "c4"}),
    ("e18", "call.outcome", 16000, "alpha", {"call": "c4", "outcome": "lead"}),
    ("e18", "call.outcome", 16000, "alpha", {"call": "c4", "outcome": "lead"}),
    ("e19", "agent.logout", 70000, "alpha", {"agent": "a1"}),
    ("e20", "agent.login", 80000, "alpha", {"agent": "a2"}),
    ("e21", "call.offered", 90000, "alpha", {"call": "c5", "queue": "q3"}),
], [10000, 16000, 17000, 60000, 85000])

#: a zone whose midnight falls inside the stream, for `today`, with two centres
EX_MIDNIGHT = _sc(BASIC.replace('timezone = "UTC"', 'timezone = "Asia/Kolkata"') + """
[centres.beta]
timezone = "America/New_York"
""", [
    ("e1", "agent.login", -19_830_000, "alpha", {"agent": "a1"}),
    ("e2", "call.offered", -19_820_000, "alpha", {"call": "c1", "queue": "q1"}),
    ("e3", "call.answered", -19_819_000, "alpha", {"call": "c1", "agent": "a1"}),
    ("e4", "call.ended", -19_790_000, "alpha", {"call": "c1"}),
    ("e5", "call.offered", -19_795_000, "beta", {"call": "c1", "queue": "q1"}),
    ("e6", "call.ended", -19_785_000, "beta", {"call": "c1"}),
    ("e7", "call.offered", -19_795_000, "alpha", {"call": "c2", "queue": "q2"}),
    ("e8", "call.answered", -19_794_500, "alpha", {"call": "c2", "agent": "a1"}),
    ("e9", "call.ended", -19_780_000, "alpha", {"call": "c2"}),
    ("e10", "agent.logout", -19_700_000, "alpha", {"agent": "a1"}),
], [-19_801_000, -19_800_000, -19_799_000, -19_780_000, -19_760_000], [3, 1, 4])

#: for_s = 0 and no hysteresis: fire at the instant it is pending, resolve and pend the
#: other way at once, and fire that way at the same instant
EX_FLIP = _sc(BASIC.replace("band = [0.3, 0.8]", "band = [1.0, 1.1]"), [
    ("e1", "agent.login", 0, "alpha", {"agent": "a1"}),
    ("e2", "call.offered", 1000, "alpha", {"call": "c1", "queue": "q1"}),
    ("e3", "call.answered", 1000, "alpha", {"call": "c1", "agent": "a1"}),
    ("e4", "call.ended", 2000, "alpha", {"call": "c1"}),
    ("e5", "call.offered", 3000, "alpha", {"call": "c2", "queue": "q1"}),
    ("e6", "call.answered", 3000, "alpha", {"call": "c2", "agent": "a1"}),
    ("e7", "call.ended", 50_000, "alpha", {"call": "c2"}),
    ("e8", "call.wrapped", 61_000, "alpha", {"call": "c2"}),
    ("e9", "call.offered", 62_000, "alpha", {"call": "c3", "queue": "q1"}),
    ("e10", "call.answered", 62_000, "alpha", {"call": "c3", "agent": "a1"}),
    ("e11", "call.ended", 63_000, "alpha", {"call": "c3"}),
    ("e12", "agent.logout", 150_000, "alpha", {"agent": "a1"}),
], [3000, 51000, 62000, 64000, 120000])

#: the first event to arrive is not the first in time: the earlier one is on time
#: (5000 >= W = 15000 - 10000), so the instants from 6000 are evaluated in every order
#: (SPEC 4, SPEC 5 "from the first whole second after a centre's first event")
EX_EARLIER_ARRIVES_SECOND = _sc(BASIC.replace("band = [0.3, 0.8]", "band = [100.0, 200.0]"), [
    ("e1", "agent.login", 15_000, "alpha", {"agent": "a1"}),
    ("e2", "call.offered", 5_000, "alpha", {"call": "c1", "queue": "q1"}),
    ("e3", "call.answered", 6_000, "alpha", {"call": "c1", "agent": "a1"}),
    ("e4", "call.ended", 7_000, "alpha", {"call": "c1"}),
    ("e5", "agent.logout", 40_000, "alpha", {"agent": "a1"}),
], [10_000, 20_000], [1])

#: two queues fire at the same instant on one rule, arriving q2 first: the engine sends
#: them in the order it met the keys, the reference in key order (in_order's one freedom)
EX_TIE = _sc(BASIC.replace("band = [0.3, 0.8]", "band = [0.1, 0.2]"), [
    ("e1", "agent.login", 0, "alpha", {"agent": "a1"}),
    ("e2", "call.offered", 1000, "alpha", {"call": "c2", "queue": "q2"}),
    ("e3", "call.answered", 2000, "alpha", {"call": "c2", "agent": "a1"}),
    ("e4", "call.ended", 10_000, "alpha", {"call": "c2"}),
    ("e5", "call.offered", 1000, "alpha", {"call": "c1", "queue": "q1"}),
    ("e6", "call.answered", 2000, "alpha", {"call": "c1", "agent": "a1"}),
    ("e7", "call.ended", 10_000, "alpha", {"call": "c1"}),
    ("e8", "agent.logout", 90_000, "alpha", {"agent": "clock"}),
], [11_000, 30_000])

EXAMPLES = [EX_RULES, EX_MIDNIGHT, EX_FLIP, EX_TIE]


def with_examples(f: Any) -> Any:
    for ex in EXAMPLES:
        f = example(ex)(f)
    return f


#: examples per property; CALLCOST_PROPERTY_EXAMPLES=2000 for a long hunt
EXAMPLES_PER_TEST = int(os.environ.get("CALLCOST_PROPERTY_EXAMPLES", "120"))
#: the least share of a property's examples that must compare something: figures at an
#: instant in range (measured 0.84-0.99), alert messages (0.5 without targeting, 0.76-0.91)
MIN_FIGURES, MIN_ALERTS = 0.8, 0.5
COMMON = settings(
    max_examples=EXAMPLES_PER_TEST,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

#: the reference steps every instant of every rule and key: two thirds of the examples,
#: each steered (hypothesis.target) toward more alert messages
ALERTS = settings(COMMON, max_examples=max(1, EXAMPLES_PER_TEST * 2 // 3))


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    eng = Engine(Settings(), check_key=False)
    warm = getattr(eng, "warm_up", None)
    if warm is not None:
        warm()


# ------------------------------------------------------------------ (a) figures


def test_figures_equal_reference() -> None:
    SHARES.run("figures", _figures_equal_reference, minimum=MIN_FIGURES)


@COMMON
@given(scenarios())
@with_examples
def _figures_equal_reference(sc: Scenario) -> None:
    SHARES.record("figures", check_figures(sc))


def check_figures(sc: Scenario) -> int:
    check_on_time(sc.events, sc.settings.stream.lateness_ms)
    run = run_engine(sc)
    ref = sc.reference
    published = set(sc.settings.stream.windows)
    problems: list[str] = []
    compared = 0
    for centre in ref.centres:
        M = run.engine.centres[centre].M
        if ref.last_instant(centre) >= ref.first_instant(centre):
            assert ref.last_instant(centre) == M, (centre, M, ref.last_instant(centre))
        for T in sc.snapshot_at:
            if not in_range(sc, centre, T):
                continue
            assert (centre, T) in run.snapshots, f"no snapshot for {centre} at {T}"
            got = run.snapshots[(centre, T)]
            windows = {w for (_, _, w) in got}
            assert published <= windows, (published, windows)
            want = ref.figures(centre, T, sorted(windows))
            for k in sorted(set(want) | set(got)):
                compared += 1
                for d in figure_diffs(want.get(k), got.get(k), k[0]):
                    problems.append(f"{centre} T={T} (+{T - DAY}) {k}: reference vs engine {d}")
    _note("\n".join(problems))
    assert not problems, "\n".join(problems[:30])
    return compared


# ------------------------------------------------------------------ (b) order, batches


def latest_first_order(events: list[dict[str, Any]], lateness: int) -> list[dict[str, Any]]:
    """The on-time order that holds events back the most: always the latest eligible."""
    rest = sorted(events, key=lambda e: e["ts"])
    out: list[dict[str, Any]] = []
    while rest:
        low: dict[str, int] = {}
        for e in rest:
            low.setdefault(e["centre"], e["ts"])
        pick = max((e for e in rest if e["ts"] <= low[e["centre"]] + lateness),
                   key=lambda e: e["ts"])
        rest.remove(pick)
        out.append(pick)
    return out


def test_same_for_every_on_time_order_and_batching() -> None:
    SHARES.run("orders", _same_for_every_order, minimum=MIN_FIGURES)


@COMMON
@given(scenarios())
@with_examples
def _same_for_every_order(sc: Scenario) -> None:
    SHARES.record("orders", check_order_and_batching(sc))


def check_order_and_batching(sc: Scenario) -> int:
    """The figures and alerts of other on-time orders and batches; returns how many
    snapshots and alerts were compared."""
    lateness = sc.settings.stream.lateness_ms
    first = run_engine(sc)
    others = [
        # everything at once, in the order of ts
        (sorted(sc.events, key=lambda e: e["ts"]), [len(sc.events)]),
        # one at a time, each event as late as it may be
        (latest_first_order(sc.events, lateness), [1] * len(sc.events)),
        # the scenario's other random order and batches
        (sc.alt_events or sc.events, sc.alt_batches),
    ]
    for order, sizes in others:
        check_on_time(order, lateness)
        _note(f"order {[e['id'] for e in order]}, batches {sizes}")
        run = run_engine(sc, [json.dumps(e).encode() for e in order], sizes)
        assert set(run.snapshots) == set(first.snapshots)
        for key, figs in first.snapshots.items():
            for k in set(figs) | set(run.snapshots[key]):
                assert figure_diffs(figs.get(k), run.snapshots[key].get(k), k[0]) == [], (key, k)
        for centre in sc.reference.centres:
            a = in_order(sc, first.alerts.get(centre, []), "engine")
            b = in_order(sc, run.alerts.get(centre, []), "engine in another order")
            assert len(a) == len(b), (a, b)
            for x, y in zip(a, b, strict=True):
                assert alert_diffs(x, y) == [], (x, y)
            assert first.engine.centres[centre].M == run.engine.centres[centre].M
    in_range_snapshots = sum(in_range(sc, c, T) for c, T in first.snapshots)
    n_alerts = sum(len(a) for a in first.alerts.values())
    return in_range_snapshots + n_alerts


# ------------------------------------------------------------------ (c) keys add up


ADDITIVE = (*COUNTS, "handle_s", "telephony")


def test_keys_add_up_to_the_centre() -> None:
    SHARES.run("add up", _keys_add_up_to_the_centre, minimum=MIN_FIGURES)


@COMMON
@given(scenarios())
@with_examples
def _keys_add_up_to_the_centre(sc: Scenario) -> None:
    run = run_engine(sc)
    compared = 0
    for (centre, T), figs in run.snapshots.items():
        if not in_range(sc, centre, T):
            continue
        compared += 1
        for window in {w for (_, _, w) in figs}:
            whole = figs[("centre", centre, window)]
            for scope in ("queue", "channel", "direction"):
                parts = [f for (s, _, w), f in figs.items() if s == scope and w == window]
                for n in ADDITIVE:
                    total = sum(f[n] for f in parts)
                    assert close(total, whole[n]), (centre, T, window, scope, n, total, whole[n])
                if whole["handle_s"] > 0:
                    for n in ("labour", "overhead", "total"):
                        total = sum(f[n] for f in parts)
                        assert close(total, whole[n]), (
                            centre, T, window, scope, n, total, whole[n])
    SHARES.record("add up", compared)


# ------------------------------------------------------------------ (d) absent keys


def test_a_key_that_never_appears_costs_nothing() -> None:
    SHARES.run("absent keys", _a_key_that_never_appears_costs_nothing, minimum=MIN_FIGURES)


@COMMON
@given(scenarios())
@with_examples
def _a_key_that_never_appears_costs_nothing(sc: Scenario) -> None:
    run = run_engine(sc)
    ref = sc.reference
    SHARES.record("absent keys", sum(in_range(sc, c, T) for c, T in run.snapshots))
    for centre in ref.centres:
        evs = [e for e in ref.by_centre[centre] if e.type == OFFERED]
        # every key any offered event names, even one that SPEC 1 then ignores
        named = {
            "queue": {e.queue for e in evs},
            "channel": {e.channel for e in evs},
            "direction": {e.direction for e in evs},
        }
        calls = calls_of(ref.by_centre[centre])
        counted = {
            "queue": {c.queue for c in calls},
            "channel": {c.channel for c in calls},
            "direction": {c.direction for c in calls},
        }
        for (c, T), figs in run.snapshots.items():
            if c != centre:
                continue
            for (scope, key, _w), f in figs.items():
                if scope == "centre":
                    assert key == centre
                    continue
                if scope == "queue":
                    assert key in named[scope], (
                        f"{centre} T={T}: a figure for queue {key!r} that no event names", f)
                if key not in named[scope]:
                    assert figure_diffs(None, f, scope) == [], (
                        f"{centre} T={T}: {scope} {key!r} that no event names costs", f)
                if key not in counted[scope]:
                    assert figure_diffs(None, f, scope) == [], (
                        f"{centre} T={T}: {scope} {key!r} has no call but costs", f)


# ------------------------------------------------------------------ (e) alerts


def test_alerts_equal_reference() -> None:
    SHARES.run("alerts", _alerts_equal_reference, minimum=MIN_ALERTS)


@ALERTS
@given(scenarios())
@with_examples
def _alerts_equal_reference(sc: Scenario) -> None:
    SHARES.record("alerts", check_alerts(sc))


def check_alerts(sc: Scenario) -> int:
    """The engine's alert sequence against the reference's; returns the reference's
    number of alert messages (firing or resolved)."""
    run = run_engine(sc)
    ref = sc.reference
    compared = 0
    for centre in ref.centres:
        want = in_order(sc, ref.alerts(centre), "reference")
        got = in_order(sc, run.alerts.get(centre, []), "engine")
        compared += len(want)
        _note(f"{centre}: reference {json.dumps(want)}\nengine {json.dumps(got)}")
        for i, (w, g) in enumerate(zip(want, got, strict=False)):
            assert alert_diffs(w, g) == [], (centre, i, w, g)
        assert len(want) == len(got), (centre, want[len(got):], got[len(want):])
    for centre in run.alerts:
        assert centre in ref.centres
    _target(float(compared), "alerts compared")
    return compared


# ------------------------------------------------------------------ regressions


@pytest.mark.parametrize("check", [check_figures, check_order_and_batching, check_alerts])
def test_earlier_event_arriving_second_moves_the_first_instant(check: Any) -> None:
    """The first instant comes from the earliest event, not the first to arrive."""
    check(EX_EARLIER_ARRIVES_SECOND)
