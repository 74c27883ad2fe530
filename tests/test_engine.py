"""Engine behaviour beyond the vectors: late events, live ticks, local days, memory."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import orjson
import pytest

from callcost.streams.config import Settings, StreamSettings, parse_settings
from callcost.streams.days import local_midnight, next_midnight
from callcost.streams.engine import Engine

T0 = 1_768_467_600_000  # 2026-01-15T09:00:00Z


def ev(eid: str, etype: str, ts: int, **kw: object) -> tuple[None, bytes]:
    return (None, orjson.dumps({"id": eid, "type": etype, "ts": ts, "centre": "c1", **kw}))


def call(n: int, t: int, queue: str = "q1", talk_ms: int = 60_000) -> list[tuple[None, bytes]]:
    return [
        ev(f"o{n}", "call.offered", t, call=f"k{n}", queue=queue),
        ev(f"a{n}", "call.answered", t + 5_000, call=f"k{n}", agent="a1"),
        ev(f"e{n}", "call.ended", t + 5_000 + talk_ms, call=f"k{n}"),
    ]


def figure(out_figs: list[dict], scope: str, key: str, window: str) -> dict:
    for msg in out_figs:
        for f in msg["figures"]:
            if (f["scope"], f["key"], f["window"]) == (scope, key, window):
                return f
    raise AssertionError(f"no figure {scope}/{key}/{window}")


def engine(**stream: object) -> Engine:
    return Engine(Settings(stream=StreamSettings(**stream)), check_key=False)


def test_late_event_counts_once_it_arrives() -> None:
    on_time = engine()
    late = engine()
    base = [ev("l1", "agent.login", T0, agent="a1")]
    calls = [x for n in range(5) for x in call(n, T0 + n * 120_000)]
    tail = [ev("tick", "agent.login", T0 + 1_800_000, agent="a2")]
    on_time.ingest(base + calls + tail)
    late.ingest(base + calls[:-3] + tail)
    before = figure(
        late.ingest([]).figures or [late.centres["c1"].figures_message()], "centre", "c1", "1h"
    )
    assert before["handled"] == 4
    # the last call arrives after the watermark passed it: it is late, and counts from now on
    out = late.ingest(calls[-3:])
    assert late.stats()["late_events"] == 3
    want = on_time.centres["c1"].figures_message()
    assert late.centres["c1"].M == on_time.centres["c1"].M
    for window in ("15m", "1h", "today"):
        a = figure(out.figures, "centre", "c1", window)
        b = figure([want], "centre", "c1", window)
        for name in ("offered", "handled", "handle_s", "total", "staffed_s", "cost_per_call"):
            assert a[name] == pytest.approx(b[name]), (window, name)
    assert figure(out.figures, "centre", "c1", "1h")["handled"] == 5


def test_late_session_change_is_accounted() -> None:
    a, b = engine(), engine()
    evs = [ev("l1", "agent.login", T0, agent="a1"), ev("x", "agent.login", T0 + 100, agent="a9")]
    logout = ev("lo1", "agent.logout", T0 + 600_000, agent="a1")
    end = ev("t", "agent.login", T0 + 3_000_000, agent="a2")
    a.ingest([*evs, logout, end])
    b.ingest([*evs, end])
    b.ingest([logout])  # 40 minutes late
    fa = a.centres["c1"].figures_at_M()
    fb = b.centres["c1"].figures_at_M()
    M = T0 + 2_995_000  # the last instant: (T0 + 3,000,000 - lateness 5,000)
    assert a.centres["c1"].M == b.centres["c1"].M == M
    for x, y in zip(fa, fb, strict=True):
        assert x["staffed_s"] == pytest.approx(y["staffed_s"]) and x["labour"] == pytest.approx(
            y["labour"]
        )
    # by hand: a1 is on for [T0, T0 + 600 s), a9 from T0 + 0.1 s on to M, a2 not yet;
    # 15m = [M - 900 s, M) holds only a9's last 900 s; 1h and today (from 00:00Z) both
    # hold a1's 600 s and a9's 2,994.9 s; labour: 24.00 an hour (no team)
    want_staffed_s = {"15m": 900.0, "1h": 600.0 + 2994.9, "today": 600.0 + 2994.9}
    centre_rows = {f["window"]: f for f in fb if f["scope"] == "centre"}
    assert set(centre_rows) == set(want_staffed_s)
    for window, staffed_s in want_staffed_s.items():
        f = centre_rows[window]
        assert f["staffed_s"] == pytest.approx(staffed_s, rel=1e-9), window
        assert f["labour"] == pytest.approx(staffed_s / 3600 * 24.0, rel=1e-9), window


def test_duplicate_id_changes_nothing_even_with_other_content() -> None:
    e = engine()
    e.ingest([ev("l1", "agent.login", T0, agent="a1"), *call(1, T0 + 1000)])
    e.ingest([ev("o1", "call.offered", T0 + 500, call="k1", queue="other")])
    e.ingest([ev("z", "agent.login", T0 + 900_000, agent="a2")])
    assert e.stats()["duplicates"] == 1
    keys = {f["key"] for f in e.centres["c1"].figures_at_M()}
    assert "other" not in keys


def test_idle_advance_moves_the_watermark_with_the_clock() -> None:
    e = engine(idle_advance=True)
    out = e.ingest(
        [ev("l1", "agent.login", T0, agent="a1"), ev("l2", "agent.login", T0 + 10_000, agent="a2")]
    )
    as_of = out.figures[-1]["as_of"]
    assert as_of == T0 + 5_000
    out = e.tick(T0 + 65_000)
    f = figure(out.figures, "centre", "c1", "15m")
    assert f["as_of"] == T0 + 60_000
    assert f["staffed_s"] == pytest.approx(60 + 50)  # both agents accrue on a quiet floor
    assert engine(idle_advance=False).tick(T0 + 65_000).figures == []


def test_today_empties_at_local_midnight() -> None:
    s = parse_settings(
        '[defaults]\ntimezone = "Europe/Prague"\n[stream]\nwindows = ["today", "1h"]\n'
    )
    e = Engine(s, check_key=False)
    midnight = 1_768_431_600_000 + 86_400_000  # 2026-01-16T00:00 in Prague (23:00Z)
    e.ingest(
        [ev("l1", "agent.login", midnight - 600_000, agent="a1"), *call(1, midnight - 300_000)]
    )
    out = e.ingest([ev("z", "agent.login", midnight + 125_000, agent="a2")])
    today = figure(out.figures, "centre", "c1", "today")
    hour = figure(out.figures, "centre", "c1", "1h")
    assert today["as_of"] == midnight + 120_000
    assert today["offered"] == 0 and hour["offered"] == 1
    assert today["staffed_s"] == pytest.approx(120)
    assert hour["staffed_s"] == pytest.approx(720)


@pytest.mark.parametrize(
    ("zone", "local_day_start_utc"),
    [
        ("Europe/Prague", "2026-03-28T23:00:00+00:00"),  # spring forward at 02:00 that night
        ("America/New_York", "2026-11-01T04:00:00+00:00"),  # fall back day
        (
            "America/Havana",
            "2026-03-08T05:00:00+00:00",
        ),  # clocks jump at midnight: the day starts at 01:00
        ("Asia/Kolkata", "2026-03-28T18:30:00+00:00"),
    ],
)
def test_local_midnight(zone: str, local_day_start_utc: str) -> None:
    from datetime import datetime

    start = int(datetime.fromisoformat(local_day_start_utc).timestamp() * 1000)
    tz = ZoneInfo(zone)
    assert local_midnight(start + 7_200_000, tz) == start
    assert local_midnight(start, tz) == start
    assert next_midnight(start - 1000, tz) == start
    assert next_midnight(start, tz) > start + 22 * 3_600_000


def test_state_stays_bounded_over_days() -> None:
    from callcost.streams.simulation import Simulator

    sim = Simulator(seed=3, centres=1, rate=4.0, start_ms=T0)
    e = Engine(Settings(), check_key=False)
    sizes = []
    t = T0
    for _day in range(3):
        for _ in range(24):
            t += 3_600_000
            e.ingest([(None, orjson.dumps(x)) for x in sim.events_until(t)], publish=False)
        st = next(iter(e.centres.values()))
        sizes.append(
            (
                len(st.calls),
                len(st.ats),
                len(st.seen),
                sum(len(a.events) for a in st.agents.values()),
            )
        )
    # a day's worth of calls is about 5,800: only the last call_ttl (4 h) of them is kept
    for calls, bookings, seen, agent_events in sizes:
        assert calls < 1500 and bookings < 5000 and seen < 3000 and agent_events < 2000
    assert e.stats()["accepted"] > 60_000


def test_event_far_ahead_of_the_clock_is_rejected_live_only() -> None:
    far = ev("f1", "agent.login", 2**53 - 1, agent="a1")
    near = ev("n1", "agent.login", T0 + 60_000, agent="a1")
    live = engine()
    out = live.ingest([near, far], now_ms=T0)
    assert [(r.index, r.reason) for r in out.rejects] == [(1, "future_ts")]
    assert live.centres["c1"].max_ts == T0 + 60_000
    assert "ahead of the clock" in out.rejects[0].detail
    # replay has no clock: an event at the end of time is valid there (SPEC section 1)
    assert parse_settings("").stream.max_future_ms == 900_000
    e = engine()
    assert e.ingest([near], now_ms=None).rejects == []
    assert e.centres["c1"].max_ts == T0 + 60_000


def _run(records_batches, jump: bool, monkeypatch) -> tuple[list, list, int]:
    import callcost.streams.centre as E

    monkeypatch.setattr(E, "QUIET_JUMP_MS", 6 * 3_600_000 if jump else 10**18)
    s = parse_settings(
        '[defaults]\ntimezone = "Europe/Prague"\n[[rules]]\nname = "c"\nscope = "centre"\n'
        'window = "15m"\nmin_calls = 1\nfor_s = 30\n[stream]\nwindows = ["15m", "1h", "today"]\n'
    )
    e = Engine(s, check_key=False)
    alerts = []
    for batch in records_batches:
        alerts += e.ingest(batch).alerts
    st = e.centres["c1"]
    return st.figures_at_M(), alerts, st.quiet_jumps


def test_a_long_quiet_stretch_is_skipped_exactly(monkeypatch) -> None:
    day = 86_400_000
    first = [ev("l1", "agent.login", T0, agent="a1"), *call(1, T0 + 1000), *call(2, T0 + 200_000)]
    # ten days later, with agent a1 still logged in, more calls
    later = [x for n in range(3, 6) for x in call(n, T0 + 10 * day + n * 60_000)]
    tail = [ev("t", "agent.login", T0 + 10 * day + 3_600_000, agent="a2")]
    fast = _run([first, later, tail], True, monkeypatch)
    slow = _run([first, later, tail], False, monkeypatch)
    assert fast[2] >= 1 and slow[2] == 0
    assert fast[1] == slow[1] and fast[1]  # the same alerts, and there are some
    for a, b in zip(fast[0], slow[0], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(b[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-12), k
            else:
                assert a[k] == b[k], k


def test_an_event_at_the_end_of_time_does_not_stall_replay() -> None:
    e = engine()
    e.ingest([ev("l1", "agent.login", T0, agent="a1"), *call(1, T0 + 1000)])
    out = e.ingest([ev("z", "agent.login", 2**53 - 1, agent="a9")])
    assert out.figures[-1]["as_of"] == ((2**53 - 1 - 5000) // 1000) * 1000
    assert e.centres["c1"].quiet_jumps == 1


def test_a_logged_out_agent_with_nothing_left_is_forgotten_exactly() -> None:
    """Once all of an agent's events are older than ``call_ttl_ms`` and no session is open,
    the agent is dropped (so agent ids do not pile up for good); coming back later it is a
    new agent, and every figure is the same as in an engine that forgot nothing."""
    forgets = engine()  # call_ttl_ms: 4 h
    keeps = engine(call_ttl_ms=48 * 3_600_000)
    hour = 3_600_000
    day = [
        ev("l1", "agent.login", T0, agent="a1", team="care"),
        ev("x1", "agent.logout", T0 + hour, agent="a1"),
        ev("l2", "agent.login", T0, agent="a2"),  # stays logged in all along
    ] + [x for n in range(7) for x in call(n, T0 + n * hour + 60_000)]
    back = [
        ev("l3", "agent.login", T0 + 7 * hour, agent="a1", team="care"),
        ev("x3", "agent.logout", T0 + 8 * hour, agent="a1"),
    ] + [x for n in range(7, 10) for x in call(n, T0 + n * hour + 60_000)]
    for e in (forgets, keeps):
        e.ingest(day)
    assert sorted(forgets.centres["c1"].agents) == ["a2"]  # a1's last event is 6 h old
    assert sorted(keeps.centres["c1"].agents) == ["a1", "a2"]
    for e in (forgets, keeps):
        e.ingest(back)
    a, b = forgets.centres["c1"], keeps.centres["c1"]
    assert a.M == b.M
    assert a.figures_at_M() == b.figures_at_M()
    assert figure([a.figures_message(True)], "centre", "c1", "today")["staffed_s"] > 9 * 3600
