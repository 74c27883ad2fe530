"""Malformed ``call-events`` messages for the fuzz tests (issue 6): pure and seeded.

:func:`generate` turns valid events (templates, e.g. the lines of a vector) into messages
that break SPEC section 1, each with the reject reason(s) it must get. The expectations
are written from SPEC section 1 and the edge cases decided in ``streams/events.py``'s
docstring, not from the parser's code.

Rules every category keeps, so that mixing these into a valid stream cannot change a
figure unless the worker accepts something it must reject:

* each message gets a fresh id (``fuzz-N``), never the id of a valid event: if one were
  accepted by mistake it would change the figures, and the test would see it; a copy of
  a valid event would only be a duplicate, which is not malformed;
* a message breaks exactly one rule of SPEC section 1, or several whose reasons are all
  listed; nothing that a parser may legitimately accept (extra fields alone, whitespace
  between tokens, a repeated name whose *last* value is valid, ``"\\u0000"`` in a string)
  is generated;
* ``future_ts`` messages (a valid event far ahead of any clock) are made only when the
  consumer has a clock (``clock=True``: the live worker, or the engine given ``now_ms``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

#: SPEC section 1: required fields by type, optional fields that are checked when present
REQUIRED: dict[str, tuple[str, ...]] = {
    "agent.login": ("agent",),
    "agent.logout": ("agent",),
    "call.offered": ("call", "queue"),
    "call.answered": ("call", "agent"),
    "call.ended": ("call",),
    "call.wrapped": ("call",),
    "call.outcome": ("call", "outcome"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "agent.login": ("team",),
    "call.offered": ("direction", "channel"),
}
ENVELOPE = ("id", "type", "ts", "centre")
CHOICES: dict[str, tuple[str, ...]] = {
    "direction": ("inbound", "outbound"),
    "channel": ("voice", "chat", "email"),
    "outcome": ("sale", "lead", "resolved", "unresolved"),
}
MAX_TS = 2**53
#: a ts no clock reaches this century (2100-01-01T00:00:00Z) and far beyond it
FAR_FUTURE_TS = (4_102_444_800_000, 2**53 - 1, 3_000_000_000_000)

JSON_REASONS = frozenset({"invalid_json", "invalid_utf8", "not_an_object"})
SENTINEL = "__fuzz_sentinel__"


@dataclass(frozen=True, slots=True)
class Bad:
    """One malformed message and the reasons it may be rejected with."""

    category: str
    key: bytes | None
    value: bytes | None
    reasons: frozenset[str]


Maker = Callable[["_Gen", dict[str, Any]], tuple[bytes | None, bytes | None, frozenset[str]]]


def _r(*reasons: str) -> frozenset[str]:
    return frozenset(reasons)


def checked_fields(ev: dict[str, Any]) -> tuple[str, ...]:
    """Every field the rules look at for this event's type (present or optional)."""
    t = ev["type"]
    return ENVELOPE + REQUIRED[t] + OPTIONAL.get(t, ())


def string_fields(ev: dict[str, Any]) -> tuple[str, ...]:
    """The free-text string fields (1-128 chars) of this event's type."""
    t = ev["type"]
    return ("id", *tuple(f for f in REQUIRED[t] + OPTIONAL.get(t, ()) if f not in CHOICES))


class _Gen:
    def __init__(self, rng: random.Random, templates: Sequence[dict[str, Any]]) -> None:
        self.rng = rng
        self.templates = templates
        self.centres = sorted({t["centre"] for t in templates})
        self.n = 0

    def fresh(self) -> dict[str, Any]:
        """A valid event: a template with a fresh id."""
        self.n += 1
        ev = dict(self.rng.choice(self.templates))
        ev["id"] = f"fuzz-{self.n}"
        return ev

    def text(self, n: int) -> str:
        """``n`` characters, some of them outside ASCII."""
        chunk = "".join(self.rng.choice("abcXYZ019-_. é") for _ in range(64))
        return (chunk * (n // 64 + 1))[:n]

    def key(self, ev: dict[str, Any]) -> bytes:
        return str(ev["centre"]).encode()

    def with_raw(self, ev: dict[str, Any], field: str, raw: bytes) -> bytes:
        """``ev`` as JSON with ``field``'s value replaced by the raw JSON text ``raw``."""
        doc = orjson.dumps({**ev, field: SENTINEL})
        assert doc.count(SENTINEL.encode()) == 1
        return doc.replace(b'"' + SENTINEL.encode() + b'"', raw)

    def in_string(self, ev: dict[str, Any], field: str, raw: bytes) -> bytes:
        """``ev`` as JSON with ``raw`` bytes spliced into the middle of string ``field``."""
        value = str(ev[field])
        cut = self.rng.randint(0, len(value))
        doc = orjson.dumps({**ev, field: value[:cut] + SENTINEL + value[cut:]})
        assert doc.count(SENTINEL.encode()) == 1
        return doc.replace(SENTINEL.encode(), raw)


# ---------------------------------------------------------------- the categories


def random_bytes(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    n = rng.randint(1, 400)
    if rng.random() < 0.3:  # printable ASCII: valid UTF-8, (almost surely) not JSON
        value = bytes(rng.randint(0x20, 0x7E) for _ in range(n))
    else:
        value = rng.randbytes(n)
    key = rng.choice([g.key(ev), None, rng.randbytes(rng.randint(0, 20))])
    return key, value, JSON_REASONS


def truncated(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    doc = orjson.dumps(ev)
    value = doc[: g.rng.randint(1, len(doc) - 1)]  # a proper prefix: no closing brace
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:  # cut inside a multi-byte character
        return g.key(ev), value, _r("invalid_utf8")
    return g.key(ev), value, _r("invalid_json")


WRONG_STRING: tuple[Any, ...] = (0, 1, -7, 1.5, True, False, None, [], ["x"], {}, {"a": 1}, 10**18)
WRONG_TS: tuple[Any, ...] = ("1768467601984", "", 1.7e12, 1768467601984.5, True, False, None,
                             [1768467601984], {"ts": 1768467601984})


def wrong_type(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    field = g.rng.choice(checked_fields(ev))
    bad = g.rng.choice(WRONG_TS if field == "ts" else WRONG_STRING)
    return g.key(ev), orjson.dumps({**ev, field: bad}), _r("wrong_type")


def long_string(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    """A string field empty or longer than its rule allows (up to 20,000 characters)."""
    rng = g.rng
    field = rng.choice((*string_fields(ev), "centre", "type"))
    limit = 64 if field == "centre" else 128
    n = rng.choice([0, limit + 1, limit + 2, rng.randint(limit + 1, 20_000)])
    if field == "type":
        n = max(n, 129)  # no type name is that long
    s = "x" * n if rng.random() < 0.5 else g.text(n)
    reasons = _r("unknown_type") if field == "type" else _r("invalid_value")
    return g.key(ev), orjson.dumps({**ev, field: s}), reasons


def long_id(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    n = g.rng.choice([0, 129, 130, 256, 1000, g.rng.randint(129, 100_000)])
    return g.key(ev), orjson.dumps({**ev, "id": "i" * n}), _r("invalid_value")


def deep_nesting(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    how = rng.randrange(4)
    depth = rng.randint(1100, 5000)  # beyond the parser's 1024 levels
    if how == 0:
        return g.key(ev), b"[" * depth, _r("invalid_json")
    if how == 1:
        return g.key(ev), b"[" * depth + b"]" * depth, _r("invalid_json")
    if how == 2:  # in an extra field of an otherwise valid event
        nested = b'{"a":' * depth + b"1" + b"}" * depth
        return g.key(ev), g.with_raw(ev, "extra", nested), _r("invalid_json")
    # shallow nesting where a string must be: a type error, not a parse error
    field = rng.choice(string_fields(ev))
    d = rng.randint(1, 200)
    return g.key(ev), g.with_raw(ev, field, b"[" * d + b"]" * d), _r("wrong_type")


NON_FINITE = (b"NaN", b"nan", b"Infinity", b"-Infinity", b"inf", b"1e400", b"-1e999",
              b"1.0e309")


def nan_infinity(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    field = g.rng.choice(("ts", "ts", "extra", *string_fields(ev)))
    return g.key(ev), g.with_raw(ev, field, g.rng.choice(NON_FINITE)), _r("invalid_json")


BAD_UTF8 = (b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
            b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf",
            b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80")


def invalid_utf8(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    doc = orjson.dumps(ev)
    if rng.random() < 0.3:  # a producer that wrote Latin-1
        field = rng.choice(string_fields(ev))
        doc = orjson.dumps({**ev, field: f"{ev[field]}é"}).decode().encode("latin-1")
        return g.key(ev), doc, _r("invalid_utf8")
    bad = rng.choice(BAD_UTF8)
    at = rng.randint(0, len(doc))
    return g.key(ev), doc[:at] + bad + doc[at:], _r("invalid_utf8")


def key_not_centre(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    c = g.key(ev)
    others = [x.encode() for x in g.centres if x != ev["centre"]]
    key = rng.choice([
        *(others or [b"elsewhere"]), c.upper() if c.upper() != c else c + b"X", c + b" ",
        b" " + c, c + b"\x00", b"", c * 2, rng.randbytes(rng.randint(1, 40)), b"\xff" + c,
        b"k" * 10_000,
    ])
    assert key != c
    return key, orjson.dumps(ev), _r("key_mismatch")


def null_key(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    return None, orjson.dumps(ev), _r("key_mismatch")


def empty_value(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes | None, frozenset[str]]:
    value = g.rng.choice([None, b"", b" ", b"\n", b"\t\r\n "])
    # no value (a tombstone) needs a key: Kafka clients refuse a message with neither
    key = g.key(ev) if value is None else g.rng.choice([g.key(ev), None])
    return key, value, _r("invalid_json")


def not_an_object(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    doc = orjson.dumps(ev)
    value = g.rng.choice([
        b"[" + doc + b"]", b"[]", b"[" + doc + b"," + doc + b"]", orjson.dumps(doc.decode()),
        b"1", b"-0", b"1.5", b"true", b"false", b"null", b'"call.offered"', b'""',
        b"  42  ", b"1768467601984",
    ])
    return g.key(ev), value, _r("not_an_object")


def huge_number(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    how = rng.randrange(4)
    if how == 0:  # an integer a 64-bit parser holds, out of range
        n = rng.choice([MAX_TS, MAX_TS + 1, 2**63 - 1, 2**64 - 1, -(2**63), -(2**53)])
        return g.key(ev), g.with_raw(ev, "ts", str(n).encode()), _r("invalid_value")
    if how == 1:  # beyond 64 bits: an integer to SPEC, a float to a double parser
        n = rng.randint(2**64, 10**300) * rng.choice([1, -1])
        return g.key(ev), g.with_raw(ev, "ts", str(n).encode()), _r("invalid_value", "wrong_type")
    if how == 2:  # beyond a double: some parsers make it infinity, ours refuses it
        digits = b"9" * rng.randint(310, 5000)
        return (g.key(ev), g.with_raw(ev, "ts", digits),
                _r("invalid_json", "invalid_value", "wrong_type"))
    field = rng.choice(string_fields(ev))  # a number where a string must be
    n = rng.randint(2**53, 2**200)
    return g.key(ev), g.with_raw(ev, field, str(n).encode()), _r("wrong_type")


def bad_ts(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    if rng.random() < 0.5:
        raw = rng.choice([b"0", b"-0", b"-1", str(-ev["ts"]).encode(),
                          str(rng.randint(-(2**53), -1)).encode()])
        return g.key(ev), g.with_raw(ev, "ts", raw), _r("invalid_value")
    raw = rng.choice([f"{ev['ts']}.5".encode(), f"{ev['ts']}.0".encode(), b"0.5", b"-0.0",
                      f"{ev['ts'] / 1000:e}".encode(), f"{ev['ts']}e0".encode(),
                      f"{ev['ts'] // 1000}E3".encode(), f'"{ev["ts"]}"'.encode()])
    return g.key(ev), g.with_raw(ev, "ts", raw), _r("wrong_type")


def _bad_value(g: _Gen, ev: dict[str, Any], field: str) -> tuple[Any, frozenset[str]]:
    """A value of ``field`` that breaks its rule, and the reason."""
    rng = g.rng
    if field == "type":
        return rng.choice([("call.nope", _r("unknown_type")), ("", _r("unknown_type")),
                           ("CALL.OFFERED", _r("unknown_type")), (7, _r("wrong_type"))])
    if field == "ts":
        return rng.choice([("1", _r("wrong_type")), (-5, _r("invalid_value")),
                           (1.5, _r("wrong_type"))])
    if field == "centre":
        return rng.choice([("", _r("invalid_value")), ("a b", _r("invalid_value")),
                           (5, _r("wrong_type"))])
    if field in CHOICES:
        return rng.choice([("nope", _r("invalid_value")), ("", _r("invalid_value")),
                           (None, _r("wrong_type"))])
    return rng.choice([("", _r("invalid_value")), ("y" * 129, _r("invalid_value")),
                       (5, _r("wrong_type")), (None, _r("wrong_type"))])


def duplicate_keys(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    """A name repeated: the *last* value breaks its rule (the last one counts)."""
    field = g.rng.choice(checked_fields(ev))
    bad, reasons = _bad_value(g, ev, field)
    doc = orjson.dumps(ev)
    extra = b"," + orjson.dumps(field) + b":" + orjson.dumps(bad)
    return g.key(ev), doc[:-1] + extra + b"}", reasons


def bom(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    doc = orjson.dumps(ev)
    how = g.rng.randrange(4)
    if how == 0:
        return g.key(ev), b"\xef\xbb\xbf" + doc, _r("invalid_json")
    if how == 1:
        return g.key(ev), b"\xef\xbb\xbf\xef\xbb\xbf" + doc, _r("invalid_json")
    if how == 2:
        return g.key(ev), b"\xff\xfe" + doc.decode().encode("utf-16-le"), _r("invalid_utf8")
    # UTF-16 without a BOM: every other byte a NUL, which is valid UTF-8 but not JSON
    return g.key(ev), doc.decode().encode("utf-16-be"), _r("invalid_json")


LONE_SURROGATES = (b"\\ud800", b"\\udbff", b"\\udc00", b"\\udfff", b"\\ud800\\u0041",
                   b"\\ud800\\ud800", b"\\udc00\\ud800", b"\\uD83D")


def surrogate_escape(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    field = g.rng.choice((*string_fields(ev), "centre", "type"))
    return (g.key(ev), g.in_string(ev, field, g.rng.choice(LONE_SURROGATES)),
            _r("invalid_json"))


UNKNOWN_TYPES = ("call.dropped", "", "CALL.OFFERED", "call.offered ", " agent.login",
                 "agent.login\u0000", "agent", "call.*", "call.offered\n", "événement",
                 "call_offered", "agent.login.", "t" * 300)


def unknown_type(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    return g.key(ev), orjson.dumps({**ev, "type": g.rng.choice(UNKNOWN_TYPES)}), _r(
        "unknown_type"
    )


def missing_field(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    if rng.random() < 0.05:
        return g.key(ev), b"{}", _r("missing_field")
    drop = rng.choice(ENVELOPE + REQUIRED[ev["type"]])
    return g.key(ev), orjson.dumps({k: v for k, v in ev.items() if k != drop}), _r(
        "missing_field"
    )


def extra_fields(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    """Many unknown fields (ignored by the rules) and one broken rule among them."""
    rng = g.rng
    extra: dict[str, Any] = {}
    for i in range(rng.randint(1, 60)):
        name = rng.choice(["Id", "TS", "centre ", "Type", "x", "meta", "agent_id", "__proto__",
                           ""]) + str(i)
        extra[name] = rng.choice([1, "s" * rng.randint(0, 300), None, [1, {"a": []}],
                                  {"nested": {"deep": [1, 2, 3]}}, 1.5, True])
    field = rng.choice(checked_fields(ev))
    if rng.random() < 0.5 and field in ENVELOPE + REQUIRED[ev["type"]]:
        body = {k: v for k, v in ev.items() if k != field}
        reasons = _r("missing_field")
    else:
        bad, reasons = _bad_value(g, ev, field)
        body = {**ev, field: bad}
    return g.key(ev), orjson.dumps({**extra, **body}), reasons


def invalid_value(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    rng = g.rng
    how = rng.randrange(3)
    if how == 0:
        centre = rng.choice(["", f"{ev['centre']} ", f"{ev['centre']}/x", "c" * 65,
                             f"{ev['centre']}\n", f"{ev['centre']}é", "a b", "*"])
        return centre.encode(), orjson.dumps({**ev, "centre": centre}), _r("invalid_value")
    choices = [f for f in checked_fields(ev) if f in CHOICES]
    if how == 1 and choices:
        field = rng.choice(choices)
        bad = rng.choice(["nope", "", CHOICES[field][0].upper(), CHOICES[field][0] + " ",
                          CHOICES[field][0].title()])
        return g.key(ev), orjson.dumps({**ev, field: bad}), _r("invalid_value")
    field = rng.choice(string_fields(ev))
    return g.key(ev), orjson.dumps({**ev, field: ""}), _r("invalid_value")


def not_json(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    """Text that looks like an event but is not JSON."""
    rng = g.rng
    doc = orjson.dumps(ev)
    value = rng.choice([
        doc + b"x", doc + doc, doc + b"\n" + doc, doc[:-1] + b",}", doc + b",",
        doc.replace(b'"', b"'"), repr(ev).encode(), b"{/*c*/" + doc[1:],
        doc.replace(b'"id"', b"id"), b"{" + doc, doc + b"}", doc.replace(b":", b"=", 1),
        doc.replace(b",", b";", 1), b"\x00" + doc, doc + b"\x00",
    ])
    return g.key(ev), value, _r("invalid_json")


def control_chars(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    """A raw control character inside a string (JSON wants it escaped)."""
    field = g.rng.choice((*string_fields(ev), "centre", "type"))
    ch = bytes([g.rng.choice([*range(0x00, 0x20)])])
    return g.key(ev), g.in_string(ev, field, ch), _r("invalid_json")


def far_future_ts(g: _Gen, ev: dict[str, Any]) -> tuple[bytes | None, bytes, frozenset[str]]:
    """A valid event, far ahead of any clock: rejected only by a consumer with a clock."""
    return g.key(ev), orjson.dumps({**ev, "ts": g.rng.choice(FAR_FUTURE_TS)}), _r("future_ts")


CATEGORIES: dict[str, Maker] = {
    "random_bytes": random_bytes,
    "truncated": truncated,
    "wrong_type": wrong_type,
    "long_string": long_string,
    "long_id": long_id,
    "deep_nesting": deep_nesting,
    "nan_infinity": nan_infinity,
    "invalid_utf8": invalid_utf8,
    "key_not_centre": key_not_centre,
    "null_key": null_key,
    "empty_value": empty_value,
    "not_an_object": not_an_object,
    "huge_number": huge_number,
    "bad_ts": bad_ts,
    "duplicate_keys": duplicate_keys,
    "bom": bom,
    "surrogate_escape": surrogate_escape,
    "unknown_type": unknown_type,
    "missing_field": missing_field,
    "extra_fields": extra_fields,
    "invalid_value": invalid_value,
    "not_json": not_json,
    "control_chars": control_chars,
    "far_future_ts": far_future_ts,
}
CLOCK_ONLY = frozenset({"far_future_ts"})


# ---------------------------------------------------------------- megabyte values


HUGE_KINDS = 7


def huge(
    g: _Gen, ev: dict[str, Any], size: int, how: int
) -> tuple[bytes | None, bytes, frozenset[str]]:
    """A value of at least ``size`` bytes that breaks a rule, of kind ``how``."""
    rng = g.rng
    n = size + rng.randint(0, 50_000)
    if how == 0:
        return g.key(ev), orjson.dumps({**ev, "id": "i" * n}), _r("invalid_value")
    if how == 1:
        field = rng.choice(string_fields(ev)[1:] or ("id",))
        return g.key(ev), orjson.dumps({**ev, field: g.text(n)}), _r("invalid_value")
    if how == 2:
        return g.key(ev), orjson.dumps({**ev, "type": "t" * n}), _r("unknown_type")
    if how == 3:
        return g.key(ev), rng.randbytes(n), JSON_REASONS
    if how == 4:
        return g.key(ev), b"[" * n, _r("invalid_json")
    if how == 5:  # a megabyte of ignored data, and the centre missing
        body = {k: v for k, v in ev.items() if k != "centre"}
        return g.key(ev), orjson.dumps({**body, "blob": "b" * n}), _r("missing_field")
    return g.key(ev), orjson.dumps({**ev, "centre": "c" * n}), _r("invalid_value")


def generate(
    templates: Sequence[dict[str, Any]],
    count: int,
    seed: int,
    *,
    clock: bool = True,
    huge_count: int = 0,
    huge_bytes: int | Sequence[int] = 1_000_000,
) -> list[Bad]:
    """``count`` malformed messages, round robin over :data:`CATEGORIES` (without the
    clock-only ones when ``clock`` is False), then ``huge_count`` values of at least
    ``huge_bytes`` bytes (a sequence: the i-th value at least ``huge_bytes[i % len]``).
    ``templates``: valid events (dicts) to derive them from."""
    if not templates:
        raise ValueError("generate needs at least one valid event as a template")
    rng = random.Random(seed)
    g = _Gen(rng, templates)
    names = [n for n in CATEGORIES if clock or n not in CLOCK_ONLY]
    out: list[Bad] = []
    for i in range(count):
        name = names[i % len(names)]
        key, value, reasons = CATEGORIES[name](g, g.fresh())
        out.append(Bad(name, key, value, reasons))
    sizes = [huge_bytes] if isinstance(huge_bytes, int) else list(huge_bytes)
    for i in range(huge_count):
        key, value, reasons = huge(g, g.fresh(), sizes[i % len(sizes)], i % HUGE_KINDS)
        out.append(Bad("huge_value", key, value, reasons))
    return out


def interleave(
    valid: Sequence[tuple[bytes | None, bytes]], bad: Sequence[Bad], seed: int
) -> list[tuple[bytes | None, bytes | None, Bad | None]]:
    """The valid messages in their order with the bad ones at random places among them:
    ``(key, value, Bad or None)``."""
    rng = random.Random(seed)
    slots = sorted(rng.randrange(len(valid) + 1) for _ in bad)
    order = list(bad)
    rng.shuffle(order)
    merged: list[tuple[bytes | None, bytes | None, Bad | None]] = []
    j = 0
    for i, (key, value) in enumerate(valid):
        while j < len(slots) and slots[j] == i:
            b = order[j]
            merged.append((b.key, b.value, b))
            j += 1
        merged.append((key, value, None))
    for b in order[j:]:
        merged.append((b.key, b.value, b))
    return merged
