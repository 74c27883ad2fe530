"""The alert state machine: SPEC section 5 cases, and run() equals step() everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcost.streams.alerts import FIRING, INACTIVE, PENDING, AlertMachine, Band


def band(**kw: object) -> Band:
    base = dict(
        rule="r",
        centre="c",
        scope="queue",
        key="q",
        window="15m",
        low=2.0,
        high=4.0,
        min_calls=2,
        hysteresis=0.1,
        for_ms=3000,
    )
    base.update(kw)
    return Band(**base)  # type: ignore[arg-type]


def drive(m: AlertMachine, series: list[tuple[int, float]], t0: int = 1000) -> list[dict]:
    out: list[dict] = []
    for i, (h, v) in enumerate(series):
        m.step(t0 + 1000 * i, h, v, out)
    return out


def test_fires_after_for_and_resolves_with_hysteresis() -> None:
    m = AlertMachine(band())
    series = [(5, 3.0), (5, 4.5), (5, 4.6), (5, 4.2), (5, 4.1), (5, 3.7), (5, 3.5)]
    out = drive(m, series)
    assert [(a["state"], a["at"], a["since"]) for a in out] == [
        ("firing", 5000, 2000),
        ("resolved", 7000, 2000),
    ]
    assert out[0]["id"] == "c/r/q/2000" == out[1]["id"]
    assert out[0]["direction"] == "above" and out[0]["value"] == 4.1
    assert out[1]["value"] == 3.5  # 3.7 > 4.0 * 0.9 holds; 3.5 clears


def test_flapping_inside_for_does_not_fire() -> None:
    m = AlertMachine(band())
    out = drive(m, [(5, 4.5), (5, 4.5), (5, 3.0), (5, 4.5), (5, 4.5), (5, 3.0)])
    assert out == [] and m.state == INACTIVE


def test_too_few_calls_is_no_condition_and_does_not_clear() -> None:
    m = AlertMachine(band(for_ms=0))
    out = drive(m, [(1, 9.0), (5, 9.0), (1, 1.0), (1, math.nan), (5, 3.0)])
    assert [(a["state"], a["at"]) for a in out] == [("firing", 2000), ("resolved", 5000)]


def test_resolve_then_pending_at_once_in_the_other_direction() -> None:
    m = AlertMachine(band(for_ms=0))
    out = drive(m, [(5, 5.0), (5, 1.0)])
    assert [(a["state"], a["direction"]) for a in out] == [
        ("firing", "above"),
        ("resolved", "above"),
        ("firing", "below"),
    ]
    assert out[2]["since"] == 2000


def test_pending_switches_direction() -> None:
    m = AlertMachine(band(for_ms=2000))
    drive(m, [(5, 5.0), (5, 1.0)])
    assert (m.state, m.dir, m.since) == (PENDING, "below", 2000)


def test_dump_and_load() -> None:
    m = AlertMachine(band(for_ms=0))
    drive(m, [(5, 5.0)])
    m2 = AlertMachine(band(for_ms=0))
    m2.load(m.dump())
    assert m2.state == FIRING and m2.since == 1000


values = st.one_of(
    st.just(math.nan), st.sampled_from([1.0, 1.9, 2.0, 2.1, 2.3, 3.0, 3.7, 3.9, 4.0, 4.1, 6.0])
)


@settings(max_examples=300, deadline=None)
@given(
    series=st.lists(st.tuples(st.integers(0, 4), values), min_size=1, max_size=80),
    for_ms=st.sampled_from([0, 1000, 3000, 10_000]),
    hysteresis=st.sampled_from([0.0, 0.05, 0.5]),
    split=st.integers(0, 80),
)
def test_run_equals_step(
    series: list[tuple[int, float]], for_ms: int, hysteresis: float, split: int
) -> None:
    b = band(for_ms=for_ms, hysteresis=hysteresis)
    ref = drive(AlertMachine(b), series)
    m = AlertMachine(b)
    h = np.array([s[0] for s in series], np.int64)
    v = np.array([s[1] for s in series], np.float64)
    got: list[dict] = []
    split = min(split, len(series))
    m.run(1000, h[:split], v[:split], got)
    m.run(1000 + 1000 * split, h[split:], v[split:], got)
    assert got == ref


@pytest.mark.parametrize("for_ms", [0, 5000])
def test_long_constant_series_is_cheap_and_right(for_ms: int) -> None:
    n = 86_400
    h = np.full(n, 30, np.int64)
    v = np.full(n, 5.0)
    v[40_000:] = 3.0
    out: list[dict] = []
    AlertMachine(band(for_ms=for_ms)).run(1000, h, v, out)
    assert [(a["state"], a["at"]) for a in out] == [
        ("firing", 1000 + for_ms),
        ("resolved", 1000 + 40_000_000),
    ]
