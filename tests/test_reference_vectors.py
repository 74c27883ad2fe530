"""The brute-force reference (tests/reference.py) reproduces the shared test vectors.

This validates the reference itself, before test_properties.py trusts it as an oracle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from callcost.errors import EventError
from callcost.streams.config import parse_settings
from callcost.streams.events import Event, parse
from tests.reference import SCOPES, Reference, alert_diffs, figure_diffs

VECTORS = Path(__file__).parent / "vectors"
NAMES = ["edge", "sim-2h", "two-centres"]


def load(name: str) -> tuple[Reference, int, dict[str, Any]]:
    folder = VECTORS / name
    settings = parse_settings((folder / "callcost.toml").read_text(), source=name)
    events: list[Event] = []
    rejected = 0
    for line in (folder / "events.jsonl").read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            events.append(parse(None, line, check_key=False))
        except EventError:
            rejected += 1
    expected = json.loads((folder / "expected.json").read_text())
    return Reference(events, settings), rejected, expected


_LOADED: dict[str, tuple[Reference, int, dict[str, Any]]] = {}


def vector(name: str) -> tuple[Reference, int, dict[str, Any]]:
    if name not in _LOADED:
        _LOADED[name] = load(name)
    return _LOADED[name]


@pytest.mark.parametrize("name", NAMES)
def test_rejected_and_last_instant(name: str) -> None:
    ref, rejected, expected = vector(name)
    assert rejected == expected["rejected"]
    assert ref.centres == sorted(expected["centres"])
    for centre, exp in expected["centres"].items():
        assert ref.last_instant(centre) == exp["last_instant"]


@pytest.mark.parametrize("name", NAMES)
def test_figures(name: str) -> None:
    ref, _, expected = vector(name)
    problems: list[str] = []
    checked = 0
    for centre, exp in expected["centres"].items():
        by_instant: dict[int, dict[tuple[str, str, str], dict[str, Any]]] = {}
        for f in exp["figures"]:
            by_instant.setdefault(f["as_of"], {})[(f["scope"], f["key"], f["window"])] = f
        for T, want in sorted(by_instant.items()):
            windows = sorted({w for (_, _, w) in want})
            got = ref.figures(centre, T, windows)
            for k in sorted(set(want) | set(got)):
                checked += 1
                for d in figure_diffs(want.get(k), got.get(k), k[0]):
                    problems.append(f"{centre} T={T} {k}: expected vs reference {d}")
    assert checked >= sum(len(e["figures"]) for e in expected["centres"].values())
    assert not problems, "\n".join(problems[:40])


#: two-centres steps ~34,000 instants: about 90 s for the whole of it, so by default only
#: its first 90 minutes (10 of its 37 alerts, both rules, firing and resolved);
#: CALLCOST_SLOW_TESTS=1 checks all of it.
ALERT_SPAN_MS = {"edge": None, "sim-2h": None, "two-centres": 90 * 60_000}


@pytest.mark.parametrize("name", NAMES)
def test_alerts(name: str) -> None:
    ref, _, expected = vector(name)
    span = None if os.environ.get("CALLCOST_SLOW_TESTS") else ALERT_SPAN_MS[name]
    for centre, exp in expected["centres"].items():
        until = None if span is None else ref.first_instant(centre) + span
        got = ref.alerts(centre, until)
        want = [a for a in exp["alerts"] if until is None or a["at"] <= until]
        assert want or until is None
        problems = [
            f"#{i}: {d}" for i, (w, g) in enumerate(zip(want, got, strict=False))
            for d in alert_diffs(w, g)
        ]
        assert not problems, "\n".join(problems[:40])
        assert len(got) == len(want), (got[len(want):], want[len(got):])


@pytest.mark.parametrize("name", ["edge", "sim-2h"])
def test_fast_figures_equal_literal_figures(name: str) -> None:
    """The alert stepper's shortcut (the whole set cut at T) equals the literal figures."""
    ref, _, _ = vector(name)
    for centre in ref.centres:
        instants = list(ref.instants(centre))
        for T in instants[:: max(1, len(instants) // 12)]:
            literal = ref.figures(centre, T)
            for window in ref.settings.all_windows:
                for scope in SCOPES:
                    fast = ref.fast_figures(centre, T, window.name, scope)
                    lit = {(s, k): f for (s, k, w), f in literal.items()
                           if s == scope and w == window.name}
                    assert set(fast) == set(lit)
                    for k in lit:
                        assert figure_diffs(lit[k], fast[k], scope) == [], (T, window, k)
