"""The request rate limit of one websocket connection: a token bucket. Pure, no clock.

``docs/PROTOCOL.md`` ("Limits") says what a client sees: ``rate_limited``, then 1008.
"""

from __future__ import annotations

#: requests per second per connection on average, and the burst above it
MAX_REQUESTS_PER_S = 20.0
REQUEST_BURST = 100


class RequestLimiter:
    """A token bucket for one connection's requests: ``rate_per_s`` on average, up to
    ``burst`` at once. Time is an argument (seconds on any monotonic clock).

    :meth:`take` says whether a request may be handled; :attr:`refused_in_a_row` counts
    the requests refused since the last one taken, and :attr:`abusive` is true once
    more than ``burst`` were refused in a row (the client ignores the errors).
    """

    __slots__ = ("_at_s", "_tokens", "burst", "rate_per_s", "refused_in_a_row")

    def __init__(self, rate_per_s: float = MAX_REQUESTS_PER_S, burst: int = REQUEST_BURST) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, not {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at_s: float | None = None
        self.refused_in_a_row = 0

    def take(self, now_s: float) -> bool:
        if self._at_s is not None and now_s > self._at_s:
            self._tokens = min(self.burst, self._tokens + (now_s - self._at_s) * self.rate_per_s)
        if self._at_s is None or now_s > self._at_s:
            self._at_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False

    @property
    def abusive(self) -> bool:
        return self.refused_in_a_row > self.burst

