"""Test data builders for the gateway: figures rows and messages, alerts, as the worker
writes them to ``cost-figures`` and ``cost-alerts``."""

from __future__ import annotations

import json
from typing import Any

from callcost.web.messages import FiguresMessage, parse_alert, parse_figures

T0 = 1768467660000  # 2026-01-15 09:01:00 UTC


def figure(centre: str, scope: str, key: str, window: str, as_of: int, **extra: Any) -> dict:
    handled = extra.pop("handled", 10)
    total = extra.pop("total", 40.0)
    f = {
        "centre": centre,
        "scope": scope,
        "key": key,
        "window": window,
        "as_of": as_of,
        "offered": handled + 2,
        "handled": handled,
        "abandoned": 2,
        "conversions": 1,
        "handle_s": 3000.0,
        "telephony": 1.0,
        "labour": 30.0,
        "overhead": 9.0,
        "total": total,
        "aht_s": 300.0,
        "cost_per_call": total / handled if handled else None,
        "cost_per_sale": total,
        "staffed_s": 3600.0 if scope == "centre" else None,
        "occupancy": 0.8 if scope == "centre" else None,
        "status": "insufficient",
    }
    f.update(extra)
    return f


def centre_figures(centre: str, as_of: int, queues=("billing", "sales"), total=40.0) -> list:
    out = []
    for window in ("15m", "1h", "today"):
        out.append(figure(centre, "centre", centre, window, as_of, total=total))
        for q in queues:
            out.append(figure(centre, "queue", q, window, as_of, total=total / 2))
        out.append(figure(centre, "channel", "voice", window, as_of, total=total))
        out.append(figure(centre, "direction", "inbound", window, as_of, total=total))
    return out


def figures_value(centre: str, as_of: int, figures: list | None = None, **kw: Any) -> bytes:
    if figures is None:
        figures = centre_figures(centre, as_of, **kw)
    return json.dumps(
        {"type": "figures", "centre": centre, "as_of": as_of, "figures": figures}
    ).encode()


def big_figures(centre: str, as_of: int) -> bytes:
    """A figures message with 60 queues (180 rows): big enough to fill socket buffers."""
    queues = tuple(f"queue-{i:03d}" for i in range(60))
    return figures_value(centre, as_of, centre_figures(centre, as_of, queues=queues))


def message(centre: str, as_of: int, **kw: Any) -> FiguresMessage:
    return parse_figures(figures_value(centre, as_of, **kw))


def alert(
    centre: str = "prg",
    key: str = "billing",
    since: int = T0,
    state: str = "firing",
    at: int | None = None,
    rule: str = "queue-15m",
) -> dict:
    return {
        "type": "alert",
        "id": f"{centre}/{rule}/{key}/{since}",
        "state": state,
        "rule": rule,
        "centre": centre,
        "scope": "queue",
        "key": key,
        "window": "15m",
        "direction": "above",
        "value": 7.5,
        "low": 2.7,
        "high": 5.6,
        "handled": 25,
        "since": since,
        "at": at if at is not None else since + 60000,
    }


def parsed_alert(**kw: Any) -> dict:
    return parse_alert(json.dumps(alert(**kw)))
