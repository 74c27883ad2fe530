"""Compare engine output with a vector's expected.json, both ways (tests/vectors/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"
NAMES = ("edge", "sim-2h", "two-centres")
NUMERIC = (
    "offered",
    "handled",
    "abandoned",
    "conversions",
    "handle_s",
    "telephony",
    "labour",
    "overhead",
    "total",
    "aht_s",
    "cost_per_call",
    "cost_per_sale",
    "staffed_s",
    "occupancy",
)
ZERO_COUNTS = {
    "offered": 0.0,
    "handled": 0.0,
    "abandoned": 0.0,
    "conversions": 0.0,
    "handle_s": 0.0,
    "telephony": 0.0,
    "labour": 0.0,
    "overhead": 0.0,
    "total": 0.0,
}


def expected(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name / "expected.json").read_text())


def instants(exp: dict[str, Any]) -> list[int]:
    return sorted({f["as_of"] for c in exp["centres"].values() for f in c["figures"]})


def close(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, str):
        return got == want
    return abs(got - want) <= max(1e-9, 1e-6 * abs(want))


#: SPEC 3's ratios, null when their divisor is 0
RATIOS = ("aht_s", "cost_per_call", "cost_per_sale", "occupancy")


def zero_figure(scope: str) -> dict[str, Any]:
    """A key with no call in the window: zero counts and sums, null ratios; ``staffed_s``
    is the centre's own (0 with no session), null on every other scope (SPEC 3)."""
    fig: dict[str, Any] = {**ZERO_COUNTS, **dict.fromkeys(RATIOS)}
    fig["staffed_s"] = 0.0 if scope == "centre" else None
    return fig


def _row(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f["centre"], f["scope"], f["key"], f["window"], f["as_of"])


def figure_mismatches(
    got: list[dict[str, Any]], want: list[dict[str, Any]], fields=None
) -> list[str]:
    """Every difference, both ways: a row of ``want`` missing from ``got`` compares as a
    zero figure (tests/vectors/README.md), and a row of ``got`` at an instant ``want``
    lists that ``want`` does not list itself (another key, scope, window or centre) must be
    a zero figure. Rows at other instants are not compared: the expected file says nothing
    of them."""
    names = fields or (*NUMERIC, "status")
    index: dict[tuple[Any, ...], dict[str, Any]] = {}
    bad = []
    for f in got:
        k = _row(f)
        if k in index:
            bad.append(f"{k}: listed twice in the output")
        index[k] = f
    for f in want:
        k = _row(f)
        g = index.pop(k, None)
        for name in names:
            if g is None:
                if name == "status":
                    continue
                gv = zero_figure(k[1])[name]
            else:
                gv = g.get(name)
            if not close(gv, f[name]):
                bad.append(f"{k} {name}: got {gv!r}, want {f[name]!r}")
    listed = {f["as_of"] for f in want}
    for k, g in index.items():  # what the expected file does not list
        if k[4] not in listed:
            continue
        zero = zero_figure(k[1])
        for name in names:
            if name != "status" and not close(g.get(name), zero[name]):
                bad.append(f"{k} {name}: got {g.get(name)!r} in a row not expected, "
                           f"want {zero[name]!r} (no call)")
    return bad


def alert_mismatches(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> list[str]:
    if len(got) != len(want):
        return [
            f"{len(got)} alerts, want {len(want)}: got {[a['id'] + ' ' + a['state'] for a in got]}"
        ]
    bad = []
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        for name, value in w.items():
            if not close(g.get(name), value):
                bad.append(f"alert {i} {name}: got {g.get(name)!r}, want {value!r}")
    return bad
