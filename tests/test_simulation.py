"""The traffic simulator (streams/simulation.py): pure, seeded, valid, realistic enough."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from callcost.streams.events import parse
from callcost.streams.simulation import Simulator, daily_curve

START = 1768467600000  # 2026-01-15 09:00 UTC: 10:00 in Prague, 04:00 in New York
HOUR = 3_600_000


@pytest.fixture(scope="module")
def day() -> list[dict]:
    """One simulated day of two centres."""
    return Simulator(7, 2, 4.0, START).events_until(START + 24 * HOUR)


def test_same_seed_same_events_whatever_the_steps() -> None:
    a = Simulator(1, 2, 6.0, START).events_until(START + HOUR)
    sim = Simulator(1, 2, 6.0, START)
    b: list[dict] = []
    t = START
    while t < START + HOUR:  # paced in uneven steps, as the live shell does
        t += 137 if len(b) % 2 else 2_003
        b += sim.events_until(min(t, START + HOUR))
    assert a == b
    assert len(a) > 1000


def test_other_seed_other_events() -> None:
    a = Simulator(1, 2, 6.0, START).events_until(START + HOUR)
    b = Simulator(2, 2, 6.0, START).events_until(START + HOUR)
    assert a != b


def test_every_event_is_valid_and_keyed_by_its_centre(day: list[dict]) -> None:
    for ev in day:
        parsed = parse(ev["centre"].encode(), orjson.dumps(ev))  # raises on any SPEC breach
        assert parsed.ts == ev["ts"]
    assert len({ev["id"] for ev in day}) == len(day)  # ids unique


def test_time_order_and_range(day: list[dict]) -> None:
    ts = [ev["ts"] for ev in day]
    assert ts == sorted(ts)
    assert ts[0] >= START and ts[-1] < START + 24 * HOUR


def test_call_lifecycle_is_ordered(day: list[dict]) -> None:
    calls: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for ev in day:
        if ev["type"].startswith("call."):
            assert ev["type"] not in calls[(ev["centre"], ev["call"])], "one event per type"
            calls[(ev["centre"], ev["call"])][ev["type"]] = ev["ts"]
    order = ["call.offered", "call.answered", "call.ended", "call.wrapped"]
    for steps in calls.values():
        seen = [steps[t] for t in order if t in steps]
        assert seen == sorted(seen)
        assert "call.offered" in steps
        if "call.wrapped" in steps:
            assert "call.answered" in steps and "call.ended" in steps


def test_queues_channels_directions_and_outcomes(day: list[dict]) -> None:
    offered = [ev for ev in day if ev["type"] == "call.offered"]
    assert {ev["centre"] for ev in day} == {"prg", "nyc"}
    assert {ev["queue"] for ev in offered} == {"billing", "support", "sales-out", "chat"}
    assert {(ev["queue"], ev["direction"], ev["channel"]) for ev in offered} == {
        ("billing", "inbound", "voice"),
        ("support", "inbound", "voice"),
        ("sales-out", "outbound", "voice"),
        ("chat", "inbound", "chat"),
    }
    queue_of = {(ev["centre"], ev["call"]): ev["queue"] for ev in offered}
    outcomes = Counter(
        (queue_of[(ev["centre"], ev["call"])], ev["outcome"])
        for ev in day if ev["type"] == "call.outcome"
    )
    assert {o for (q, o) in outcomes if q == "sales-out"} == {"sale", "lead", "unresolved"}
    assert outcomes[("billing", "resolved")] > 0
    # answered and abandoned calls both happen
    answered = {(ev["centre"], ev["call"]) for ev in day if ev["type"] == "call.answered"}
    ended = [(ev["centre"], ev["call"]) for ev in day if ev["type"] == "call.ended"]
    abandoned = [c for c in ended if c not in answered]
    assert 0.01 < len(abandoned) / len(ended) < 0.2


def test_agents_shifts_teams_and_breaks(day: list[dict]) -> None:
    logins = [ev for ev in day if ev["type"] == "agent.login"]
    logouts = [ev for ev in day if ev["type"] == "agent.logout"]
    assert {ev["team"] for ev in logins} == {"care", "sales", "digital"}
    # breaks: some agents log in again after logging out
    per_agent = Counter((ev["centre"], ev["agent"]) for ev in logins)
    assert any(n > 1 for n in per_agent.values())
    assert len(logouts) > len(logins) / 2
    # sessions alternate: never two logins (or logouts) in a row for one agent
    state: dict[tuple[str, str], str] = {}
    for ev in sorted(logins + logouts, key=lambda e: e["ts"]):
        k = (ev["centre"], ev["agent"])
        assert state.get(k) != ev["type"]
        state[k] = ev["type"]


def test_fast_start_logs_in_the_staff_at_once() -> None:
    sim = Simulator(3, 2, 6.0, START)
    first = sim.events_until(START + 3_000)
    logins = [ev for ev in first if ev["type"] == "agent.login"]
    assert len(logins) >= 2 * 10
    nxt = sim.events_until(START + 60_000)
    assert any(ev["type"] == "call.answered" for ev in nxt)


def test_rate_follows_the_request_on_average(day: list[dict]) -> None:
    offered = Counter(ev["centre"] for ev in day if ev["type"] == "call.offered")
    for centre in ("prg", "nyc"):
        assert offered[centre] == pytest.approx(4.0 * 1440, rel=0.1)


def test_daily_curve() -> None:
    mean = sum(daily_curve(m / 60) for m in range(1440)) / 1440
    assert mean == pytest.approx(1.0, rel=1e-6)
    assert daily_curve(10.5) > 2 * daily_curve(3)
    sim = Simulator(1, ["prg"], 6.0, START)
    assert sim.rate_at("prg", START) == pytest.approx(6.0 * daily_curve(10.0))


def test_close_logs_everyone_out() -> None:
    sim = Simulator(5, 1, 6.0, START)
    evs = sim.events_until(START + HOUR)
    last = sim.close(START + HOUR + 1)
    evs += last
    open_: set[str] = set()
    for ev in evs:
        if ev["type"] == "agent.login":
            open_.add(ev["agent"])
        elif ev["type"] == "agent.logout":
            open_.discard(ev["agent"])
    assert not open_
    assert all(ev["ts"] <= START + HOUR + 1 for ev in last)
    assert sim.events_until(START + 2 * HOUR) == []


def test_runs_from_different_starts_share_no_ids() -> None:
    a = Simulator(1, 1, 6.0, START).events_until(START + 10 * 60_000)
    b = Simulator(1, 1, 6.0, START + 1).events_until(START + 10 * 60_000)
    assert not {e["id"] for e in a} & {e["id"] for e in b}
    calls_a = {e["call"] for e in a if "call" in e}
    assert not calls_a & {e["call"] for e in b if "call" in e}


def test_engine_reads_an_hour_with_no_reject_and_a_plausible_cost() -> None:
    from callcost.streams.config import Settings
    from callcost.streams.engine import Engine

    sim = Simulator(11, 2, 6.0, START)
    engine = Engine(Settings())
    records = [(ev["centre"].encode(), orjson.dumps(ev))
               for ev in sim.events_until(START + 2 * HOUR)]
    out = engine.ingest(records)
    stats = engine.stats()
    assert not out.rejects and stats["duplicates"] == 0
    last = {m["centre"]: m for m in out.figures}
    assert set(last) == {"prg", "nyc"}
    for msg in last.values():
        centre_15m = next(f for f in msg["figures"]
                          if f["scope"] == "centre" and f["window"] == "15m")
        assert centre_15m["handled"] > 20
        assert 1.5 < centre_15m["cost_per_call"] < 12
