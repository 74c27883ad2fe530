"""Local days of a time zone: the midnights where ``today`` windows empty.

datetime ends with year 9999; SPEC allows ts up to 2^53 ms (year 287396). Beyond it, days
are UTC days: nobody's wall clock is there, but the engine must not fail on it. Pure:
standard library only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_MAX_DATETIME_MS = 253_402_214_400_000  # 9999-12-31T00:00:00Z
_DAY_MS = 86_400_000


def local_midnight(ms: int, tz: ZoneInfo) -> int:
    """The last local midnight at or before ``ms`` (the first instant of the local day)."""
    if ms >= _MAX_DATETIME_MS:
        return ms - ms % _DAY_MS
    local = datetime.fromtimestamp(ms / 1000, tz)
    start = datetime(local.year, local.month, local.day, tzinfo=tz)
    return int(start.timestamp()) * 1000


def next_midnight(ms: int, tz: ZoneInfo) -> int:
    """The first local midnight strictly after ``ms``."""
    if ms >= _MAX_DATETIME_MS - 2 * _DAY_MS:
        return ms - ms % _DAY_MS + _DAY_MS
    local = datetime.fromtimestamp(ms / 1000, tz)
    day = datetime(local.year, local.month, local.day) + timedelta(days=1)
    return int(day.replace(tzinfo=tz).timestamp()) * 1000
