"""``callcost worker`` end to end: a real broker, the worker as a subprocess.

The edge vector goes in through Kafka; the figures at the last instant, every alert, and
the three bad lines in the dead-letter topic (original bytes, reason, source) must come
out as ``expected.json`` says.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from callcost.produce import send
from callcost.streams.events import REASONS
from tests.support.processes import log_tail, log_text, stop
from tests.support.worker import consume_until
from tests.vectorcheck import alert_mismatches, expected, figure_mismatches

VECTORS = Path(__file__).parent / "vectors"
EDGE = VECTORS / "edge"
DLQ_HEADERS = ("callcost-reason", "callcost-detail", "callcost-source-topic",
               "callcost-source-partition", "callcost-source-offset")


def test_edge_vector_through_kafka(
    kafka_bootstrap: str, kafka_topics: dict[str, str], worker
) -> None:
    events_topic = kafka_topics["call-events"]
    with (EDGE / "events.jsonl").open("rb") as f:
        assert send(kafka_bootstrap, events_topic, f) == 43
    exp = expected("edge")
    centre = exp["centres"]["edge"]
    last = centre["last_instant"]
    proc = worker(EDGE / "callcost.toml")

    def last_as_of(msgs: list) -> bool:
        return bool(msgs) and orjson.loads(msgs[-1].value)["as_of"] == last

    figures = consume_until(kafka_bootstrap, kafka_topics["cost-figures"], last_as_of, proc)
    for m in figures:
        assert m.key == b"edge"
    as_ofs = [orjson.loads(m.value)["as_of"] for m in figures]
    assert as_ofs == sorted(as_ofs) and as_ofs[-1] == last
    final = orjson.loads(figures[-1].value)
    assert final["type"] == "figures" and final["centre"] == "edge"
    want = [f for f in centre["figures"] if f["as_of"] == last]
    assert want, "expected.json has figures at last_instant"
    got = final["figures"]
    for f in got:  # figure rows carry their own centre and instant
        assert f["centre"] == "edge" and f["as_of"] == last
    assert figure_mismatches(got, want, ("offered", "handled", "abandoned")) == []
    assert figure_mismatches(got, want) == []

    alerts = consume_until(kafka_bootstrap, kafka_topics["cost-alerts"],
                           lambda ms: len(ms) >= len(centre["alerts"]), proc)
    assert all(m.key == b"edge" for m in alerts)
    assert alert_mismatches([orjson.loads(m.value) for m in alerts], centre["alerts"]) == []

    dlq = consume_until(kafka_bootstrap, kafka_topics["call-events-dlq"],
                        lambda ms: len(ms) >= exp["rejected"], proc)
    assert len(dlq) == exp["rejected"] == 3
    lines = (EDGE / "events.jsonl").read_bytes().splitlines()
    bad = {b"{not json": None}
    for line in lines:
        if line.startswith(b'{"id":"bad'):
            bad[line] = b"edge"
    assert sorted(m.value for m in dlq) == sorted(bad)  # the original bytes
    reasons = {}
    for m in dlq:
        assert m.key == bad[m.value]  # the original key too
        headers = dict(m.headers)
        assert set(DLQ_HEADERS) <= set(headers)
        assert headers["callcost-reason"].decode() in REASONS
        assert headers["callcost-detail"]
        assert headers["callcost-source-topic"].decode() == events_topic
        reasons[m.value] = headers["callcost-reason"].decode()
        # partition and offset point at the very message
        assert source_value(kafka_bootstrap, events_topic,
                            int(headers["callcost-source-partition"]),
                            int(headers["callcost-source-offset"])) == m.value
    assert reasons[b"{not json"] == "invalid_json"
    assert sorted(reasons.values()) == ["invalid_json", "invalid_value", "missing_field"]

    assert stop(proc) == 0, log_tail(proc)
    summary = [ln for ln in log_text(proc).splitlines() if "events=" in ln]
    assert summary, "the worker logs a summary line"


def test_worker_survives_hostile_input(
    kafka_bootstrap: str, kafka_topics: dict[str, str], worker
) -> None:
    from kafka import KafkaProducer

    good = {"id": "g1", "type": "agent.login", "ts": 1768467600000, "centre": "ok",
            "agent": "a1"}
    hostile: list[tuple[bytes | None, bytes | None]] = [
        (b"ok", None),  # a tombstone
        (None, b""),
        (b"ok", b"\xff\xfe\x00garbage"),
        (b"ok", b"[" * 10_000),
        (b"ok", b"1e999999"),
        (b"other", orjson.dumps(good | {"id": "g0"})),  # key is not the centre
        (b"ok", orjson.dumps(good | {"ts": 1.5})),
        (b"ok", orjson.dumps(good | {"type": "agent.dance"})),
        (b"ok", b'{"id":"x","id":"y"}'),
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    topic = kafka_topics["call-events"]
    for key, value in hostile:
        producer.send(topic, key=key, value=value, partition=0)
    later = good | {"id": "g2", "ts": good["ts"] + 10_000}
    for ev in (good, later):
        producer.send(topic, key=b"ok", value=orjson.dumps(ev), partition=0)
    producer.flush()
    producer.close()
    proc = worker(EDGE / "callcost.toml")

    dlq = consume_until(kafka_bootstrap, kafka_topics["call-events-dlq"],
                        lambda ms: len(ms) >= len(hostile), proc)
    assert sorted((m.key or b"", m.value or b"") for m in dlq) == sorted(
        (k or b"", v or b"") for k, v in hostile
    )
    for m in dlq:
        assert dict(m.headers)["callcost-reason"].decode() in REASONS
    # and the good events after them still count
    figures = consume_until(kafka_bootstrap, kafka_topics["cost-figures"],
                            lambda ms: bool(ms), proc)
    assert orjson.loads(figures[-1].value)["centre"] == "ok"
    assert proc.poll() is None
    assert stop(proc) == 0


def source_value(bootstrap: str, topic: str, partition: int, offset: int) -> bytes | None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for msg in consumer:
            return msg.value
    finally:
        consumer.close()
    return None


def test_idle_centres_follow_the_wall_clock(
    kafka_bootstrap: str, kafka_topics: dict[str, str], worker, tmp_path: Path
) -> None:
    """``idle_advance``: the worker's timer moves a quiet centre's figures on."""
    from kafka import KafkaProducer

    config = tmp_path / "live.toml"
    config.write_text("[stream]\nidle_advance = true\n")
    ts = int(time.time() * 1000)
    login = {"id": "l1", "type": "agent.login", "ts": ts, "centre": "quiet", "agent": "a1"}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(kafka_topics["call-events"], key=b"quiet", value=orjson.dumps(login))
    producer.flush()
    producer.close()
    proc = worker(config)
    # The event alone moves the watermark to ts - 5 s; only the wall clock goes further.
    figures = consume_until(
        kafka_bootstrap, kafka_topics["cost-figures"],
        lambda ms: bool(ms) and orjson.loads(ms[-1].value)["as_of"] >= ts + 2000, proc,
    )
    last = orjson.loads(figures[-1].value)
    staffed = next(f["staffed_s"] for f in last["figures"]
                   if f["scope"] == "centre" and f["window"] == "15m")
    assert staffed == pytest.approx((last["as_of"] - ts) / 1000)
    assert stop(proc) == 0
