"""The words callcost speaks everywhere: scopes, channels, directions, states, windows.

Config, events, engine, alert machine and the gateway's protocol all take their names and
the window syntax from here, so that what a rule may name, what an event may carry and
what a client may subscribe to cannot drift apart. Pure: standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the scopes figures are kept in, coarsest first
SCOPES: tuple[str, ...] = ("centre", "queue", "channel", "direction")
#: a call's direction (an event field, and the keys of the direction scope)
CALL_DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
#: a call's channel (an event field, and the keys of the channel scope)
CALL_CHANNELS: tuple[str, ...] = ("voice", "chat", "email")
#: a call's outcome; the converting ones count towards cost per sale
OUTCOMES: tuple[str, ...] = ("sale", "lead", "resolved", "unresolved")
CONVERTING: frozenset[str] = frozenset({"sale", "lead"})

#: a figure's status against its rule's band
STATUSES: tuple[str, ...] = ("ok", "above", "below", "insufficient")
#: the side of the band an alert left by
BAND_SIDES: tuple[str, ...] = ("above", "below")
#: an alert machine's states (SPEC section 5)
MACHINE_STATES: tuple[str, ...] = ("inactive", "pending", "firing")
#: the states an alert message carries
ALERT_STATES: tuple[str, ...] = ("firing", "resolved")

#: what a websocket client subscribes to
SUBSCRIPTION_CHANNELS: tuple[str, ...] = ("figures", "alerts")

#: longest window a rule or a subscription may name
MAX_WINDOW_MS = 7 * 24 * 3_600_000
_WINDOW_RE = re.compile(r"([1-9][0-9]{0,6})([smh])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000}


@dataclass(frozen=True, slots=True)
class Window:
    """A window: ``[T - length_ms, T)``, or ``today`` (``length_ms`` is None)."""

    name: str
    length_ms: int | None

    @property
    def is_today(self) -> bool:
        return self.length_ms is None


def parse_window(name: object) -> Window:
    """``"15m"`` -> Window("15m", 900000); ``"today"`` -> Window("today", None).

    Raises ValueError naming the value when it is not a window."""
    if not isinstance(name, str):
        raise ValueError(f"window must be a string like '15m' or 'today', not {name!r}")
    if name == "today":
        return Window("today", None)
    m = _WINDOW_RE.fullmatch(name)
    if not m:
        raise ValueError(f"window {name!r} is not 'today' nor a length like '90s', '15m', '8h'")
    length_ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if length_ms > MAX_WINDOW_MS:
        raise ValueError(f"window {name!r} is longer than 7 days")
    return Window(name, length_ms)


def is_window(name: object) -> bool:
    """Whether ``name`` is a window :func:`parse_window` accepts."""
    try:
        parse_window(name)
    except ValueError:
        return False
    return True
