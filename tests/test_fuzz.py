"""Bad events (issue 6): malformed messages mixed into a valid stream change nothing.

* The engine, fed the ``two-centres`` vector with 10,000 malformed messages of
  ``tests/malformed.py`` interleaved (and a few megabyte-sized ones), rejects each with
  its expected reason and ends with exactly the clean figures and alerts.
* ``events.parse`` raises nothing but :class:`EventError` (with a known reason and a
  bounded detail) on 100,000 random and mutated inputs, and what it accepts keeps every
  rule of SPEC section 1; the engine takes the same inputs in batches without raising.
* Through Kafka: the same mix (>= 10,000 malformed, >= 5 of them >= 1,000,000 bytes)
  through a ``callcost worker`` subprocess; every malformed message is on the DLQ once,
  with its reason, original key and bytes (matched by source offset), the worker is still
  running at the end, and the figures and alerts equal ``expected.json``.

``CALLCOST_FUZZ_SEED`` changes the seed of every test here (default fixed).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcost.errors import CallcostError, EventError
from callcost.produce import key_of
from callcost.streams.config import load_settings
from callcost.streams.engine import Engine
from callcost.streams.events import MAX_DETAIL_CHARS, MAX_TS, REASONS, TYPE_NAMES, parse
from callcost.streams.topics import DLQ_MAX_BYTES, EVENT_MAX_BYTES
from tests.malformed import CATEGORIES, Bad, generate, interleave
from tests.support.brokers import message_count, read_to_end
from tests.support.processes import log_tail, log_text, stop
from tests.support.waiting import wait_for
from tests.support.worker import ASSIGNED, consume_until
from tests.vectorcheck import VECTORS, alert_mismatches, expected, figure_mismatches

SEED = int(os.environ.get("CALLCOST_FUZZ_SEED", "20261127"))
VECTOR = VECTORS / "two-centres"
#: reading the dead letters back: megabyte values, more than a consumer fetches by default
BIG_FETCH = {"max_partition_fetch_bytes": 2 * DLQ_MAX_BYTES, "fetch_max_bytes": 8 * DLQ_MAX_BYTES}
#: the engine's clock in the unit tests: after every event of the vector
NOW_MS = 1_800_000_000_000
_CENTRE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def vector_messages() -> list[tuple[bytes | None, bytes]]:
    """The vector as ``callcost produce`` sends it: (centre or no key, line)."""
    return [(key_of(line), line) for line in (VECTOR / "events.jsonl").read_bytes().splitlines()
            if line.strip()]


def templates() -> list[dict[str, Any]]:
    """The vector's valid events, as dicts."""
    out = []
    for key, value in vector_messages():
        try:
            parse(key, value)
        except EventError:
            continue
        out.append(orjson.loads(value))
    return out


def check_accepted(ev: Any) -> None:
    """What ``parse`` accepts keeps SPEC section 1."""
    assert ev.type in TYPE_NAMES
    assert isinstance(ev.ts, int) and not isinstance(ev.ts, bool) and 0 < ev.ts < MAX_TS
    assert _CENTRE_RE.fullmatch(ev.centre)
    for name in ("id", "agent", "team", "call", "queue"):
        v = getattr(ev, name)
        assert v is None or (isinstance(v, str) and 1 <= len(v) <= 128)
    assert ev.direction in ("inbound", "outbound") and ev.channel in ("voice", "chat", "email")
    assert ev.outcome in (None, "sale", "lead", "resolved", "unresolved")
    for name in ("id", "centre", "agent", "team", "call", "queue"):
        v = getattr(ev, name)
        if v is not None:
            v.encode("utf-8")  # no lone surrogate slipped through: it goes out as JSON


def check_rejected(exc: EventError) -> None:
    assert exc.reason in REASONS
    assert exc.detail and len(exc.detail) <= MAX_DETAIL_CHARS
    exc.detail.encode("utf-8")  # a header value: must encode


# ---------------------------------------------------------------- the generator itself


def test_generator_is_seeded_and_covers_every_category() -> None:
    tmpl = templates()
    a = generate(tmpl, 2 * len(CATEGORIES), 7)
    b = generate(tmpl, 2 * len(CATEGORIES), 7)
    assert a == b
    assert generate(tmpl, 2 * len(CATEGORIES), 8) != a
    assert Counter(x.category for x in a) == {name: 2 for name in CATEGORIES}
    without = generate(tmpl, 100, 7, clock=False)
    assert "far_future_ts" not in {x.category for x in without}
    big = generate(tmpl, 0, 7, huge_count=7, huge_bytes=1_000_000)
    assert len(big) == 7 and all(len(x.value or b"") >= 1_000_000 for x in big)
    # no malformed message reuses the id of a valid event
    ids = {t["id"] for t in tmpl}
    for x in a:
        try:
            obj = orjson.loads(x.value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            assert obj.get("id") not in ids


# ---------------------------------------------------------------- engine, no Kafka


def _collect(engine: Engine, merged: list, batch: int) -> tuple[dict, dict]:
    """Feed ``merged`` to ``engine`` in batches: (rejects by index, alerts by centre)."""
    rejects: dict[int, tuple[str, str]] = {}
    alerts: dict[str, list] = {}
    for start in range(0, len(merged), batch):
        chunk = merged[start:start + batch]
        out = engine.ingest([(k, v) for k, v, _ in chunk], now_ms=NOW_MS, publish=False)
        for r in out.rejects:
            rejects[start + r.index] = (r.reason, r.detail)
        for a in out.alerts:
            alerts.setdefault(a["centre"], []).append(a)
    return rejects, alerts


@pytest.mark.parametrize("batch", [1000, 97])
def test_engine_with_malformed_interleaved_gives_the_clean_figures(batch: int) -> None:
    exp = expected("two-centres")
    bad = generate(templates(), 10_000, SEED, huge_count=5)
    merged = interleave(vector_messages(), bad, SEED)
    engine = Engine(load_settings(str(VECTOR / "callcost.toml")))
    rejects, alerts = _collect(engine, merged, batch)

    wrong = []
    seen: Counter[tuple[str, str]] = Counter()
    for i, (_, _, b) in enumerate(merged):
        if b is None:
            continue
        got = rejects.get(i, ("ACCEPTED", ""))[0]
        seen[(b.category, got)] += 1
        if got not in b.reasons:
            head = (b.value or b"")[:80]
            wrong.append(f"{b.category}: {got}, want {sorted(b.reasons)}: {head!r}")
    assert wrong == []
    for reason, detail in rejects.values():
        assert reason in REASONS and len(detail) <= MAX_DETAIL_CHARS
    # the vector's own bad lines, and nothing else of it, are rejected
    assert len(rejects) - len(bad) == exp["rejected"]
    assert {c for c, _ in seen} == {*CATEGORIES, "huge_value"}

    for cid, want in exp["centres"].items():
        st = engine.centres[cid]
        assert want["last_instant"] == st.M
        at_last = [f for f in want["figures"] if f["as_of"] == want["last_instant"]]
        assert at_last
        assert figure_mismatches(st.figures_at_M(all_windows=False), at_last) == []
        assert alert_mismatches(alerts.get(cid, []), want["alerts"]) == []
    assert sorted(engine.centres) == sorted(exp["centres"])  # no centre made up by a bad one


# ---------------------------------------------------------------- parse on mutated input

SPECIAL = (b"NaN", b"-Infinity", b"1e999", b"\\ud800", b"\xed\xa0\x80", b"\xff", b"\x00",
           b"[" * 1100, b"{", b"}", b'"', b"\\", b"null", b"true", b"-0", b"1.5",
           b"18446744073709551616", b"9007199254740992", b'"centre"', b'"ts":', b"\xef\xbb\xbf",
           b'"type":"call.nope"', b",", b":", b" ")


def mutate(rng: random.Random, lines: list[bytes]) -> bytes:
    """One random mutation (or a few) of a valid line."""
    v = bytearray(rng.choice(lines))
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        how = rng.randrange(10)
        n = len(v)
        at = rng.randint(0, n)
        if how == 0 and n:  # flip a byte
            v[rng.randrange(n)] = rng.randrange(256)
        elif how == 1 and n:  # flip a bit
            i = rng.randrange(n)
            v[i] ^= 1 << rng.randrange(8)
        elif how == 2:  # truncate
            del v[at:]
        elif how == 3:  # drop a range
            del v[at:at + rng.randint(1, 30)]
        elif how == 4:  # insert random bytes
            v[at:at] = rng.randbytes(rng.randint(1, 8))
        elif how == 5:  # splice with another line
            other = rng.choice(lines)
            v = v[:at] + other[rng.randint(0, len(other)):]
        elif how == 6:  # repeat a range
            v[at:at] = v[at:at + rng.randint(1, 40)]
        elif how == 7:  # a special token
            v[at:at] = rng.choice(SPECIAL)
        elif how == 8 and n:  # swap a digit (often still valid: a different ts)
            digits = [i for i, c in enumerate(v) if 0x30 <= c <= 0x39]
            if digits:
                v[rng.choice(digits)] = rng.randint(0x30, 0x39)
        else:  # random bytes altogether
            v = bytearray(rng.randbytes(rng.randint(0, 200)))
    return bytes(v)


def mutated_inputs(count: int, seed: int) -> Iterator[tuple[bytes | None, bytes]]:
    rng = random.Random(seed)
    lines = [v for _, v in vector_messages()][:3000]
    keys = [b"prg", b"nyc", None, b"", b"\xff"]
    for _ in range(count):
        yield rng.choice(keys), mutate(rng, lines)


def test_parse_raises_only_event_error_on_100k_mutated_inputs() -> None:
    reasons: Counter[str] = Counter()
    t0 = time.perf_counter()
    for key, value in mutated_inputs(100_000, SEED):
        try:
            ev = parse(key, value)
        except EventError as exc:
            check_rejected(exc)
            reasons[exc.reason] += 1
        else:
            check_accepted(ev)
            reasons["accepted"] += 1
    took = time.perf_counter() - t0
    print(f"\n100,000 mutated inputs in {took:.2f} s: {dict(sorted(reasons.items()))}")
    assert sum(reasons.values()) == 100_000
    # the mutations reach most reasons and some stay valid: the fuzz is not all one kind
    assert {"invalid_json", "invalid_utf8", "wrong_type", "invalid_value", "unknown_type",
            "missing_field", "key_mismatch", "accepted"} <= set(reasons)


def test_engine_takes_mutated_batches_without_raising() -> None:
    """Mutated lines (some still valid, with odd content) through the engine itself.

    The clock is an hour after the vector's last event: a valid event further ahead is
    ``future_ts``, as in the live worker (otherwise a mutated ts months ahead would make
    the engine evaluate every second up to it, which is correct but slow). The centres
    start from clean events, as a live stream's do: a mutated ts months *behind* in a
    centre's very first batch would likewise make it evaluate every second from there."""
    engine = Engine(load_settings(str(VECTOR / "callcost.toml")))
    now_ms = max(t["ts"] for t in templates()) + 3_600_000
    engine.ingest(vector_messages()[:2000], now_ms=now_ms)
    engine.counts = dict.fromkeys(engine.counts, 0)
    inputs = list(mutated_inputs(10_000, SEED + 1))
    counted = 0
    for start in range(0, len(inputs), 500):
        out = engine.ingest(inputs[start:start + 500], now_ms=now_ms)
        counted += len(out.rejects)
    s = engine.stats()
    assert s["events"] == 10_000 == s["accepted"] + s["duplicates"] + s["rejected"]
    assert s["rejected"] == counted and 0 < counted < 10_000 and s["accepted"] > 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
fields = st.sampled_from(["id", "type", "ts", "centre", "agent", "team", "call", "queue",
                          "direction", "channel", "outcome"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(["agent.login", "call.offered", "call.outcome", "call.answered"]),
    changes=st.dictionaries(fields, json_values | st.sampled_from(
        ["call.offered", "agent.login", "prg", "sale", "outbound", "chat", 1768467601984]),
        max_size=4),
    key=st.sampled_from([b"prg", None, b"nyc"]) | st.binary(max_size=8),
)
def test_parse_on_generated_objects(base: str, changes: dict, key: bytes | None) -> None:
    """Well-formed JSON objects with any values in the known fields."""
    ev = {"id": "h1", "type": base, "ts": 1768467601984, "centre": "prg", "agent": "a1",
          "call": "c1", "queue": "q1", "outcome": "sale", **changes}
    try:
        got = parse(key, orjson.dumps(ev))
    except EventError as exc:
        check_rejected(exc)
    else:
        check_accepted(got)
        assert key == got.centre.encode()


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300), st.none() | st.binary(max_size=10))
def test_parse_on_arbitrary_bytes(value: bytes, key: bytes | None) -> None:
    try:
        check_accepted(parse(key, value))
    except EventError as exc:
        check_rejected(exc)


def test_tombstone_and_detail_bounds() -> None:
    with pytest.raises(EventError) as info:
        parse(b"prg", None)
    assert info.value.reason == "invalid_json"
    with pytest.raises(EventError) as info:
        parse(b"prg", orjson.dumps({"id": "x" * 1_000_000, "type": "call.ended", "ts": 5,
                                    "centre": "prg", "call": "c"}))
    assert info.value.reason == "invalid_value" and len(info.value.detail) <= MAX_DETAIL_CHARS


# ---------------------------------------------------------------- through Kafka


def _produce(bootstrap: str, topic: str, merged: list) -> dict[tuple[int, int], Bad | None]:
    """Send ``merged`` in order; ``{(partition, offset): Bad or None}``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=64 * 1024, max_request_size=EVENT_MAX_BYTES)
    try:
        futures = [(producer.send(topic, key=k, value=v), b) for k, v, b in merged]
        producer.flush()
        where = {}
        for fut, b in futures:
            md = fut.get(timeout=60)
            where[(md.partition, md.offset)] = b
    finally:
        producer.close()
    return where


def _place_huge(merged: list, huge: list[Bad], seed: int) -> list:
    """``merged`` with half of ``huge`` at random places in its first half, the rest in
    its second half."""
    rng = random.Random(seed)
    mid = len(merged) // 2
    halves = [merged[:mid], merged[mid:]]
    for i, b in enumerate(huge):
        half = halves[0] if i < len(huge) // 2 else halves[1]
        half.insert(rng.randint(0, len(half)), (b.key, b.value, b))
    return halves[0] + halves[1]


def test_malformed_through_kafka_and_the_worker(
    kafka_bootstrap: str, kafka_topics: dict[str, str], worker, tmp_path: Path
) -> None:
    """The first half is produced while the worker starts (most of it reaches the engine
    through the worker's own replay of its partitions, kafka-python), the second half
    once it has recovered its partitions (all of it through Faust's stream, aiokafka);
    three megabyte-sized values in each half (one of them 3 MB: more than a consumer
    fetches by default)."""
    exp = expected("two-centres")
    bad = generate(templates(), 10_000, SEED, huge_count=6,
                   huge_bytes=(1_000_000, 1_000_000, 3_000_000))
    huge = [b for b in bad if b.category == "huge_value"]
    assert len(huge) == 6 and all(len(b.value or b"") >= 1_000_000 for b in huge)
    assert sum(len(b.value or b"") >= 3_000_000 for b in huge) == 2
    merged = _place_huge(
        interleave(vector_messages(), [b for b in bad if b not in huge], SEED), huge, SEED
    )
    mid = len(merged) // 2
    events = kafka_topics["call-events"]
    proc = worker(VECTOR / "callcost.toml")
    t0 = time.monotonic()
    where = _produce(kafka_bootstrap, events, merged[:mid])
    wait_for(lambda: ASSIGNED in log_text(proc), 120, f"the worker to log {ASSIGNED!r}",
             procs=[proc], interval_s=0.3)
    where.update(_produce(kafka_bootstrap, events, merged[mid:]))
    produced_s = time.monotonic() - t0
    assert len(where) == len(merged)

    # every centre's figures reach the last instant
    last = {cid: c["last_instant"] for cid, c in exp["centres"].items()}
    final: dict[str, dict] = {}

    def at_last(msgs: list) -> bool:
        for m in msgs[len(seen_figs):]:
            doc = orjson.loads(m.value)
            final[doc["centre"]] = doc
        seen_figs[:] = msgs
        return all(final.get(c, {}).get("as_of") == t for c, t in last.items())

    seen_figs: list = []
    consume_until(kafka_bootstrap, kafka_topics["cost-figures"], at_last, proc, timeout_s=120)
    want_dlq = len(bad) + exp["rejected"]
    n_alerts = sum(len(c["alerts"]) for c in exp["centres"].values())
    outputs = [kafka_topics["call-events-dlq"], kafka_topics["cost-alerts"]]
    deadline = time.monotonic() + 60
    while True:  # the worker's outputs keep no order between topics: wait for the counts
        n_dlq, n_al = (message_count(kafka_bootstrap, t) for t in outputs)
        if n_dlq >= want_dlq and n_al >= n_alerts:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"DLQ {n_dlq}/{want_dlq}, alerts {n_al}/{n_alerts}; "
                        f"worker:\n{log_tail(proc)}")
        time.sleep(0.5)
    processed_s = time.monotonic() - t0
    assert proc.poll() is None, "the worker is still running"
    assert stop(proc) == 0, log_tail(proc)
    # after a clean stop nothing more can come: the counts are exact
    dlq = read_to_end(kafka_bootstrap, kafka_topics["call-events-dlq"], **BIG_FETCH)
    alerts = read_to_end(kafka_bootstrap, kafka_topics["cost-alerts"], **BIG_FETCH)
    assert len(dlq) == want_dlq
    assert len(alerts) == n_alerts

    observed: Counter[tuple[str, str]] = Counter()
    offsets = set()
    wrong = []
    for m in dlq:
        h = dict(m.headers)
        assert h["callcost-source-topic"].decode() == events
        src = (int(h["callcost-source-partition"]), int(h["callcost-source-offset"]))
        assert src in where and src not in offsets, src
        offsets.add(src)
        reason = h["callcost-reason"].decode()
        detail = h["callcost-detail"].decode("utf-8")
        assert detail and len(detail) <= MAX_DETAIL_CHARS
        b = where[src]
        if b is None:  # one of the vector's own bad lines
            assert reason in REASONS
            observed[("vector", reason)] += 1
            continue
        assert m.value == b.value and m.key == b.key, b.category  # the original bytes
        observed[(b.category, reason)] += 1
        if reason not in b.reasons:
            wrong.append(f"{b.category}: {reason}, want {sorted(b.reasons)}")
    assert wrong == []
    assert {s for s, b in where.items() if b is not None} <= offsets  # every one of them
    assert sum(n for (c, _), n in observed.items() if c == "vector") == exp["rejected"]

    for cid, want in exp["centres"].items():
        at = [f for f in want["figures"] if f["as_of"] == want["last_instant"]]
        assert figure_mismatches(final[cid]["figures"], at) == []
        mine = [orjson.loads(m.value) for m in alerts if m.key == cid.encode()]
        assert alert_mismatches(mine, want["alerts"]) == []
    summary = [ln for ln in Path(proc.log_path).read_text().splitlines()
               if "stopped:" in ln]
    assert summary and "engine_errors=0" in summary[-1] and "send_errors=0" in summary[-1]
    sizes = sum(len(b.value or b"") for b in bad)
    print(f"\n{len(merged)} messages ({len(bad)} malformed, {sizes / 1e6:.1f} MB of them) "
          f"produced in {produced_s:.1f} s; all out {processed_s:.1f} s after the start; "
          f"DLQ {len(dlq)}; {summary[-1].split('stopped: ')[-1]}")
    for (cat, reason), n in sorted(observed.items()):
        print(f"  {cat:16} {reason:14} {n}")


def test_a_value_larger_than_the_topic_takes_is_refused_to_its_producer(
    kafka_bootstrap: str, kafka_topics: dict[str, str], tmp_path: Path
) -> None:
    """Such a message never reaches call-events (nor the worker, nor the DLQ): the broker
    refuses it to a producer that lets it through, ``callcost produce`` refuses to send it."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from callcost.produce import send

    events = kafka_topics["call-events"]
    too_big = b'{"id":"' + b"x" * EVENT_MAX_BYTES + b'"}'
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap,
                             max_request_size=4 * EVENT_MAX_BYTES, retries=0)
    try:
        with pytest.raises(KafkaError, match=r"MessageSizeTooLarge|RecordTooLarge"):
            producer.send(events, key=b"prg", value=too_big).get(timeout=30)
        # just under the limit is taken
        fits = b"x" * (EVENT_MAX_BYTES - 1024)
        assert producer.send(events, key=b"prg", value=fits).get(timeout=30).offset >= 0
    finally:
        producer.close()
    f = tmp_path / "big.jsonl"
    f.write_bytes(b'{"centre":"prg"}\n' + too_big + b"\n")
    with pytest.raises(CallcostError, match=r"message 2 is \d+ bytes"), f.open("rb") as fh:
        send(kafka_bootstrap, events, fh)
