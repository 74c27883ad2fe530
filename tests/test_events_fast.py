"""parse (the fast path) and parse_strict (the reference) agree on every message:
both accept with equal events, or both reject with the same reason."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from callcost.errors import EventError
from callcost.streams.events import parse, parse_strict

VECTORS = Path(__file__).parent / "vectors"
FIELDS = ("id", "type", "ts", "centre", "agent", "team", "call", "queue", "direction",
          "channel", "outcome")


def outcome(fn: object, key: bytes | None, value: bytes, check_key: bool) -> object:
    try:
        return fn(key, value, check_key=check_key)  # type: ignore[operator]
    except EventError as exc:
        return ("reject", exc.reason, exc.detail)


def same(key: bytes | None, value: bytes, check_key: bool = True) -> None:
    assert outcome(parse, key, value, check_key) == outcome(parse_strict, key, value, check_key)


def vector_lines() -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(VECTORS.glob("*/events.jsonl")):
        lines += [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    return lines


LINES = vector_lines()


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


OBJECTS = [ln for ln in LINES if _is_object(ln)]


def test_every_vector_line() -> None:
    assert len(LINES) > 20_000
    accepted = 0
    for line in LINES:
        try:
            centre = orjson.loads(line).get("centre")
        except (orjson.JSONDecodeError, AttributeError):
            centre = None
        key = centre.encode() if isinstance(centre, str) else b"prg"
        for check_key in (True, False):
            same(key, line, check_key)
        accepted += not isinstance(outcome(parse, key, line, True), tuple)
    assert accepted > 20_000  # most lines are valid: the fast path is exercised


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False)
    | st.text(max_size=140) | st.sampled_from(
        ["inbound", "outbound", "voice", "chat", "email", "sale", "lead", "resolved",
         "unresolved", "call.offered", "agent.login", "agent.logout", "call.answered",
         "call.ended", "call.wrapped", "call.outcome", "prg", "x" * 128, "x" * 129, ""]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=5,
)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(OBJECTS),
    st.lists(st.tuples(st.sampled_from(FIELDS), st.one_of(st.just(...), json_values)),
             max_size=3),
    st.sampled_from([b"prg", b"nyc", None, b"other", b"\xff"]),
    st.booleans(),
)
def test_mutated_vector_lines(line: bytes, changes: list, key: bytes | None,
                              check_key: bool) -> None:
    obj = orjson.loads(line)
    for name, value in changes:
        if value is ...:
            obj.pop(name, None)
        else:
            obj[name] = value
    value_bytes = orjson.dumps(obj)
    same(key, value_bytes, check_key)
    if isinstance(obj.get("centre"), str):
        same(obj["centre"].encode(), value_bytes, check_key)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"prg", None]))
def test_random_bytes(value: bytes, key: bytes | None) -> None:
    same(key, value)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(LINES), st.integers(0, 300), st.integers(0, 255))
def test_flipped_and_truncated(line: bytes, at: int, byte: int) -> None:
    at = at % max(1, len(line))
    same(b"prg", line[:at])
    same(b"prg", line[:at] + bytes([byte]) + line[at + 1:])
