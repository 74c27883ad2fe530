"""Compare engine output with a vector's expected.json (tests/vectors/README.md rules)."""

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


def figure_mismatches(
    got: list[dict[str, Any]], want: list[dict[str, Any]], fields=None
) -> list[str]:
    """Every difference; a key missing from ``got`` compares as zero counts and null ratios."""
    index = {(f["centre"], f["scope"], f["key"], f["window"], f["as_of"]): f for f in got}
    bad = []
    for f in want:
        k = (f["centre"], f["scope"], f["key"], f["window"], f["as_of"])
        g = index.get(k)
        for name in fields or (*NUMERIC, "status"):
            if g is None:
                gv = ZERO_COUNTS.get(name) if name in NUMERIC else None
                if name == "status":
                    continue
            else:
                gv = g.get(name)
            if not close(gv, f[name]):
                bad.append(f"{k} {name}: got {gv!r}, want {f[name]!r}")
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
