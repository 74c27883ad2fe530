"""The alert state machine (SPEC section 5). Pure: numbers and instants in, messages out.

One :class:`AlertMachine` per (rule, key). :meth:`AlertMachine.step` evaluates one
instant and is the reference; :meth:`AlertMachine.run` evaluates a series of
consecutive instants and only does Python work where the condition changes, so that a
day of instants costs as much as its handful of transitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from callcost.streams.vocabulary import BAND_SIDES, MACHINE_STATES

#: a machine's state, an index into MACHINE_STATES
INACTIVE, PENDING, FIRING = range(len(MACHINE_STATES))
#: the side of the band a figure left by
ABOVE, BELOW = BAND_SIDES


@dataclass(frozen=True, slots=True)
class Band:
    """What a machine needs to know of its rule."""

    rule: str
    centre: str
    scope: str
    key: str
    window: str
    low: float
    high: float
    min_calls: int
    hysteresis: float
    for_ms: int


class AlertMachine:
    __slots__ = ("band", "dir", "since", "state")

    def __init__(self, band: Band) -> None:
        self.band = band
        self.state = INACTIVE
        self.dir: str | None = None
        self.since = 0

    # -- one instant ------------------------------------------------------------------

    def condition(self, handled: int, v: float) -> str | None:
        b = self.band
        if handled < b.min_calls or v is None or math.isnan(v):
            return None
        if v > b.high:
            return ABOVE
        if v < b.low:
            return BELOW
        return None

    def clears(self, handled: int, v: float) -> bool:
        b = self.band
        if handled < b.min_calls or v is None or math.isnan(v):
            return False
        if self.dir == ABOVE:
            return v <= b.high * (1 - b.hysteresis)
        return v >= b.low * (1 + b.hysteresis)

    def step(self, t: int, handled: int, v: float, out: list[dict[str, Any]]) -> None:
        """Evaluate instant ``t``; append any alert message to ``out``."""
        if self.state == FIRING:
            if not self.clears(handled, v):
                return
            out.append(self.message("resolved", t, handled, v))
            self.state, self.dir = INACTIVE, None
        cond = self.condition(handled, v)
        if self.state == PENDING and cond != self.dir:
            self.state, self.dir = INACTIVE, None
        if self.state == INACTIVE and cond is not None:
            self.state, self.dir, self.since = PENDING, cond, t
        if self.state == PENDING and t - self.since >= self.band.for_ms:
            self.state = FIRING
            out.append(self.message("firing", t, handled, v))

    def message(self, state: str, t: int, handled: int, v: float) -> dict[str, Any]:
        b = self.band
        return {
            "type": "alert",
            "id": f"{b.centre}/{b.rule}/{b.key}/{self.since}",
            "state": state,
            "rule": b.rule,
            "centre": b.centre,
            "scope": b.scope,
            "key": b.key,
            "window": b.window,
            "direction": self.dir,
            "value": float(v),
            "low": b.low,
            "high": b.high,
            "handled": int(handled),
            "since": self.since,
            "at": t,
        }

    # -- a series ---------------------------------------------------------------------

    def run(
        self, t_first: int, handled: np.ndarray, v: np.ndarray, out: list[dict[str, Any]]
    ) -> None:
        """Evaluate instants ``t_first, t_first + 1000, ...``, one per element.

        Equal to calling :meth:`step` on every instant: within a run of instants whose
        condition and clearing flags are constant, the only transition left after the
        run's first instant is pending -> firing, whose instant is computed.
        """
        n = handled.shape[0]
        if n == 0:
            return
        b = self.band
        enough = handled >= b.min_calls
        with np.errstate(invalid="ignore"):
            above = enough & (v > b.high)
            below = enough & (v < b.low)
            clear_a = enough & (v <= b.high * (1 - b.hysteresis))
            clear_b = enough & (v >= b.low * (1 + b.hysteresis))
        code = above.astype(np.int8) | (below.astype(np.int8) << 1)
        code |= (clear_a.astype(np.int8) << 2) | (clear_b.astype(np.int8) << 3)
        starts = np.flatnonzero(np.diff(code)) + 1
        bounds = [0, *starts.tolist(), n]
        for r in range(len(bounds) - 1):
            i, j = bounds[r], bounds[r + 1]
            t = t_first + 1000 * i
            self.step(t, int(handled[i]), float(v[i]), out)
            if self.state == PENDING:
                t_fire = self.since + b.for_ms
                if t_fire > t:
                    k = (t_fire - t_first + 999) // 1000
                    if k < j:
                        self.step(t_first + 1000 * k, int(handled[k]), float(v[k]), out)

    # -- persistence (checkpoints) -------------------------------------------------------

    def dump(self) -> tuple[int, str | None, int]:
        return (self.state, self.dir, self.since)

    def load(self, state: tuple[int, str | None, int]) -> None:
        self.state, self.dir, self.since = state
