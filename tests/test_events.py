"""SPEC section 1: every reject reason, and what a valid event becomes."""

from __future__ import annotations

import orjson
import pytest

from callcost.errors import EventError
from callcost.streams.events import ANSWERED, LOGIN, OFFERED, REASONS, parse

BASE = {
    "id": "e1",
    "type": "call.offered",
    "ts": 1_768_467_600_000,
    "centre": "prg",
    "call": "c1",
    "queue": "billing",
}


def msg(**changes: object) -> bytes:
    d = {**BASE, **changes}
    return orjson.dumps({k: v for k, v in d.items() if v is not _DROP})


_DROP = object()


def reason(value: bytes, key: bytes | None = b"prg", check_key: bool = True) -> str:
    with pytest.raises(EventError) as info:
        parse(key, value, check_key=check_key)
    assert info.value.reason in REASONS
    return info.value.reason


def test_valid_offered_with_defaults() -> None:
    ev = parse(b"prg", msg())
    assert (ev.type, ev.call, ev.queue, ev.direction, ev.channel) == (
        OFFERED,
        "c1",
        "billing",
        "inbound",
        "voice",
    )


def test_valid_login_with_team_and_unknown_fields_ignored() -> None:
    ev = parse(
        b"prg",
        orjson.dumps(
            {
                "id": "a",
                "type": "agent.login",
                "ts": 5,
                "centre": "prg",
                "agent": "a1",
                "team": "sales",
                "extra": [1, 2],
            }
        ),
    )
    assert (ev.type, ev.agent, ev.team) == (LOGIN, "a1", "sales")


#: the reasons of SPEC section 1's rules, one per kind of break the SPEC names (not UTF-8,
#: not JSON, not an object, a missing or mistyped field, a bad value, an unknown type, a
#: key that is not the centre); the engine adds ``future_ts``, a rule of the live worker
SPEC_REASONS = (
    "invalid_utf8", "invalid_json", "not_an_object", "missing_field", "wrong_type",
    "invalid_value", "unknown_type", "key_mismatch",
)
LIVE_REASONS = ("future_ts",)  # tests/test_engine.py

#: (message value, the reason it is rejected with); key_mismatch: test_key_mismatch
REJECTS = [
    (b"\xff\xfe{}", "invalid_utf8"),
    (b'{"id": "x", "centre": "\xc3\x28"}', "invalid_utf8"),
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b'{"ts": NaN}', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"call.offered"', "not_an_object"),
    (b"null", "not_an_object"),
    (msg(id=_DROP), "missing_field"),
    (msg(type=_DROP), "missing_field"),
    (msg(ts=_DROP), "missing_field"),
    (msg(centre=_DROP), "missing_field"),
    (msg(queue=_DROP), "missing_field"),
    (msg(call=_DROP), "missing_field"),
    (msg(type="call.answered"), "missing_field"),
    (msg(type="call.outcome"), "missing_field"),
    (msg(type="agent.login", agent=_DROP), "missing_field"),
    (msg(id=7), "wrong_type"),
    (msg(type=1), "wrong_type"),
    (msg(ts="1768467600000"), "wrong_type"),
    (msg(ts=1.5), "wrong_type"),
    (msg(ts=True), "wrong_type"),
    (msg(centre=["prg"]), "wrong_type"),
    (msg(queue=None), "wrong_type"),
    (msg(direction=1), "wrong_type"),
    (msg(channel=False), "wrong_type"),
    (msg(type="call.outcome", outcome=3), "wrong_type"),
    (msg(type="agent.login", agent="a", team=5), "wrong_type"),
    (msg(id=""), "invalid_value"),
    (msg(id="x" * 129), "invalid_value"),
    (msg(ts=0), "invalid_value"),
    (msg(ts=-5), "invalid_value"),
    (msg(ts=2**53), "invalid_value"),
    (msg(centre="pr g"), "invalid_value"),
    (msg(centre="x" * 65), "invalid_value"),
    (msg(queue="q" * 129), "invalid_value"),
    (msg(direction="sideways"), "invalid_value"),
    (msg(channel="fax"), "invalid_value"),
    (msg(type="call.outcome", outcome="maybe"), "invalid_value"),
    (msg(type="call.transferred"), "unknown_type"),
]


@pytest.mark.parametrize(("value", "expected"), REJECTS)
def test_reject_reasons(value: bytes, expected: str) -> None:
    key = b"prg"
    assert reason(value, key) == expected


def test_key_mismatch() -> None:
    assert reason(msg(), key=b"nyc") == "key_mismatch"
    assert reason(msg(), key=None) == "key_mismatch"
    # replay of a file has no keys: the rule is skipped
    assert parse(None, msg(), check_key=False).centre == "prg"


def test_boundaries_are_accepted() -> None:
    parse(b"prg", msg(id="x" * 128, ts=1))
    parse(b"prg", msg(ts=2**53 - 1))
    parse(b"p" * 64, msg(centre="p" * 64))
    ev = parse(b"prg", msg(type="call.answered", agent="a1"))
    assert ev.type == ANSWERED


def test_every_reason_is_tested() -> None:
    assert sorted(REASONS) == sorted((*SPEC_REASONS, *LIVE_REASONS))
    tested = {expected for _value, expected in REJECTS} | {"key_mismatch"}
    assert tested == set(SPEC_REASONS)


def test_error_message_names_the_value() -> None:
    with pytest.raises(EventError, match="sideways"):
        parse(b"prg", msg(direction="sideways"))
