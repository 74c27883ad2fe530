"""tests/vectorcheck.py compares both ways: what the output adds must be a zero figure."""

from __future__ import annotations

import copy
from typing import Any

from tests.vectorcheck import expected, figure_mismatches, zero_figure


def at_last(name: str = "edge") -> list[dict[str, Any]]:
    centre = expected(name)["centres"][name]
    rows = [f for f in centre["figures"] if f["as_of"] == centre["last_instant"]]
    assert rows
    return rows


def ghost(like: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A row shaped like ``like`` for another key (or scope, window, instant)."""
    row = {**copy.deepcopy(like), **zero_figure(like["scope"]), "key": "ghost"}
    row.update(changes)
    return row


def test_the_expected_rows_themselves_match() -> None:
    want = at_last()
    assert figure_mismatches(copy.deepcopy(want), want) == []


def test_a_ghost_key_that_costs_is_reported() -> None:
    want = at_last()
    queue_row = next(f for f in want if f["scope"] == "queue")
    got = [*copy.deepcopy(want), ghost(queue_row, total=999.0)]
    bad = figure_mismatches(got, want)
    assert len(bad) == 1 and "'ghost'" in bad[0] and "total" in bad[0] and "999" in bad[0], bad


def test_an_extra_row_of_zeros_passes() -> None:
    want = at_last()
    queue_row = next(f for f in want if f["scope"] == "queue")
    got = [*copy.deepcopy(want), ghost(queue_row, status="insufficient")]
    assert figure_mismatches(got, want) == []


def test_an_extra_window_or_centre_is_reported() -> None:
    want = at_last()
    centre_row = next(f for f in want if f["scope"] == "centre")
    assert centre_row["labour"] > 0  # a centre row: staffed, so never a zero figure
    for changes in ({"window": "3h"}, {"centre": "elsewhere"}, {"scope": "queue"}):
        extra = {**copy.deepcopy(centre_row), **changes}
        assert figure_mismatches([*copy.deepcopy(want), extra], want), changes


def test_rows_at_an_instant_not_expected_are_not_compared() -> None:
    want = at_last()
    later = {**copy.deepcopy(want[0]), "as_of": want[0]["as_of"] + 1000, "total": 999.0}
    assert figure_mismatches([*copy.deepcopy(want), later], want) == []


def test_a_ratio_in_an_extra_row_is_reported() -> None:
    want = at_last()
    queue_row = next(f for f in want if f["scope"] == "queue")
    bad = figure_mismatches([*copy.deepcopy(want), ghost(queue_row, aht_s=0.0)], want)
    assert len(bad) == 1 and "aht_s" in bad[0], bad


def test_a_missing_row_compares_as_zero() -> None:
    want = at_last()
    costly = next(f for f in want if f["scope"] != "centre" and f["total"] > 0)
    got = [f for f in copy.deepcopy(want) if f != costly]
    assert any("total" in b for b in figure_mismatches(got, want))
    zero = ghost(costly, key=costly["key"])
    assert figure_mismatches(got, [*[f for f in want if f != costly], zero]) == []


def test_a_row_listed_twice_is_reported() -> None:
    want = at_last()
    got = [*copy.deepcopy(want), copy.deepcopy(want[0])]
    assert any("twice" in b for b in figure_mismatches(got, want))


def test_fields_limit_the_comparison_both_ways() -> None:
    want = at_last()
    queue_row = next(f for f in want if f["scope"] == "queue")
    got = [*copy.deepcopy(want), ghost(queue_row, total=999.0)]
    assert figure_mismatches(got, want, ("offered", "handled")) == []
    assert figure_mismatches(got, want, ("total",))
