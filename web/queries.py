"""The query strings of the HTTP routes that read the stores, checked. Pure.

Each function takes ``urllib.parse.parse_qs`` output and returns the route's filters, or
raises :class:`callcost.web.wire.RequestError` (``unknown_parameter`` for a name the
route does not take; ``docs/PROTOCOL.md``, "HTTP").
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from callcost.web.wire import RequestError, check_centre, check_scope, check_window, optional, show


def _params(params: Mapping[str, list[str]], allowed: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, values in params.items():
        if name not in allowed:
            raise RequestError(
                "unknown_parameter",
                f"unknown parameter {show(name)}; expected {', '.join(allowed)}",
            )
        out[name] = values[-1] if values and values[-1] != "" else None
    return out


def figures_query(params: Mapping[str, list[str]]) -> tuple[str | None, str | None, str | None]:
    """(centre, scope, window) of ``GET /api/figures`` from its parsed query string."""
    p = _params(params, ("centre", "scope", "window"))
    return (
        optional(p, "centre", check_centre),
        optional(p, "scope", check_scope),
        optional(p, "window", check_window),
    )


def _ms(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"-?[0-9]{1,15}", value):
        raise RequestError(
            "invalid_value", f"'{field}' must be a time in ms since the epoch, got {show(value)}"
        )
    return int(value)


def alerts_query(
    params: Mapping[str, list[str]],
) -> tuple[str | None, str, int | None, int | None]:
    """(centre, state, since, until) of ``GET /api/alerts`` from its parsed query string."""
    p = _params(params, ("centre", "state", "since", "until"))
    state = p.get("state") or "firing"
    if state not in ("firing", "all"):
        raise RequestError("invalid_value", f"'state' must be firing or all, got {show(state)}")
    since, until = _ms(p.get("since"), "since"), _ms(p.get("until"), "until")
    return optional(p, "centre", check_centre), state, since, until


def snoozes_query(params: Mapping[str, list[str]]) -> str | None:
    """The centre of ``GET /api/snoozes`` (None: every centre)."""
    return optional(_params(params, ("centre",)), "centre", check_centre)



def no_parameters(params: Mapping[str, list[str]]) -> None:
    """``GET /api/centres`` and ``GET /api/whoami`` take no parameter."""
    if params:
        raise RequestError("unknown_parameter", f"no parameter {show(sorted(params)[0])}")
