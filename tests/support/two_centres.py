"""The ``two-centres`` vector as the recovery and fault tests feed it to the worker: its
config, its lines as Kafka messages, the instant of a line."""

from __future__ import annotations

import orjson

from callcost.produce import messages
from tests.vectorcheck import VECTORS

NAME = "two-centres"
VECTOR = VECTORS / NAME
CONFIG = VECTOR / "callcost.toml"


def lines() -> list[tuple[bytes | None, bytes]]:
    """Every line of the vector as ``(key, value)``, keyed as ``callcost produce`` keys."""
    return list(messages((VECTOR / "events.jsonl").read_bytes().splitlines()))


def ts_of(value: bytes) -> int | None:
    """The ``ts`` of a line, None for a line without an integer one."""
    try:
        ts = orjson.loads(value)["ts"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return ts if isinstance(ts, int) else None
