"""The two topic messages the gateway serves: ``cost-figures`` and ``cost-alerts``. Pure.

:func:`parse_figures` and :func:`parse_alert` decode and check one message value (SPEC
section 5; ``docs/PROTOCOL.md`` for what clients then see) and raise
:class:`callcost.web.wire.BadMessage` for one that breaks its format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callcost.streams.vocabulary import ALERT_STATES, BAND_SIDES, SCOPES
from callcost.web.wire import (
    BadMessage,
    good_centre,
    is_int,
    is_number,
    load_object,
    need,
    nonempty_str,
    show,
)


@dataclass(frozen=True, slots=True)
class FiguresMessage:
    """One ``cost-figures`` message: every figure of ``centre`` at ``as_of``."""

    centre: str
    as_of: int
    figures: tuple[dict[str, Any], ...]


def parse_figures(value: bytes | str) -> FiguresMessage:
    """Decode and check one ``cost-figures`` message value; raises :class:`BadMessage`.

    The identity of every figure (centre, scope, key, window) is checked, since the store
    and the subscriptions key on it; the other fields are passed through as they are.
    """
    data = load_object(value, "figures message")
    where = "figures message"
    need(data, "type", lambda v: v == "figures", "'figures'", where)
    centre = need(data, "centre", good_centre, "a centre id", where)
    as_of = need(data, "as_of", is_int, "an integer (ms)", where)
    figures = need(data, "figures", lambda v: isinstance(v, list), "a list", where)
    out: list[dict[str, Any]] = []
    for i, figure in enumerate(figures):
        # the usual case first, without building a single error text
        if (
            type(figure) is dict
            and figure.get("centre") == centre
            and figure.get("scope") in SCOPES
            and nonempty_str(figure.get("key"))
            and nonempty_str(figure.get("window"))
            and ("as_of" not in figure or is_int(figure["as_of"]))
        ):
            out.append(figure)
            continue
        at = f"figure {i} of {centre}@{as_of}"
        if not isinstance(figure, dict):
            raise BadMessage("not_an_object", f"{at} is not a JSON object: {show(figure)}")
        need(figure, "centre", lambda v: v == centre, f"the message's centre {show(centre)}", at)
        need(figure, "scope", lambda v: v in SCOPES, f"one of {', '.join(SCOPES)}", at)
        need(figure, "key", nonempty_str, "a non-empty string", at)
        need(figure, "window", nonempty_str, "a non-empty string", at)
        if "as_of" in figure and not is_int(figure["as_of"]):
            raise BadMessage("invalid_value", f"{at} 'as_of' must be an integer")
        out.append(figure)
    return FiguresMessage(centre, as_of, tuple(out))


def parse_alert(value: bytes | str) -> dict[str, Any]:
    """Decode and check one ``cost-alerts`` message value (SPEC section 5)."""
    data = load_object(value, "alert message")
    where = "alert message"
    need(data, "type", lambda v: v == "alert", "'alert'", where)
    alert_id = need(data, "id", nonempty_str, "a non-empty string", where)
    where = f"alert {show(alert_id)}"
    need(data, "state", lambda v: v in ALERT_STATES, "'firing' or 'resolved'", where)
    need(data, "centre", good_centre, "a centre id", where)
    need(data, "rule", nonempty_str, "a non-empty string", where)
    need(data, "scope", lambda v: v in SCOPES, f"one of {', '.join(SCOPES)}", where)
    need(data, "key", nonempty_str, "a non-empty string", where)
    need(data, "window", nonempty_str, "a non-empty string", where)
    need(data, "direction", lambda v: v in BAND_SIDES, "'above' or 'below'", where)
    for field in ("value", "low", "high"):
        need(data, field, lambda v: v is None or is_number(v), "a number or null", where)
    need(data, "handled", lambda v: v is None or is_int(v), "an integer or null", where)
    need(data, "since", is_int, "an integer (ms)", where)
    need(data, "at", is_int, "an integer (ms)", where)
    return data
