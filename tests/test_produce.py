"""The commands that write to call-events.

``callcost produce``: every line goes out unchanged, keyed by its centre when it has one.
``callcost simulate``: paced simulated traffic, keyed by centre, agents logged out at the end.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from callcost.produce import key_of, messages

VECTORS = Path(__file__).parent / "vectors"


def read_all(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    got = []
    try:
        for msg in consumer:
            got.append(msg)
            if len(got) >= count:
                break
    finally:
        consumer.close()
    return got


def test_keys_and_line_ends() -> None:
    lines = [
        b'{"centre":"prg","id":"1"}\n',
        b'{"centre": 7}\r\n',
        b"[1, 2]\n",
        b"\n",
        b"{not json\n",
        b'{"centre":"nyc"}',
    ]
    assert list(messages(lines)) == [
        (b"prg", b'{"centre":"prg","id":"1"}'),
        (None, b'{"centre": 7}'),
        (None, b"[1, 2]"),
        (None, b"{not json"),
        (b"nyc", b'{"centre":"nyc"}'),
    ]
    assert key_of(b'"prg"') is None


def test_produce_file_unchanged(kafka_bootstrap: str, kafka_topics: dict[str, str]) -> None:
    topic = kafka_topics["call-events"]
    path = VECTORS / "edge" / "events.jsonl"
    lines = path.read_bytes().splitlines()
    run = subprocess.run(
        [sys.executable, "-m", "callcost.cli", "produce", str(path),
         "--bootstrap", kafka_bootstrap, "--topic", topic],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"sent {len(lines)} messages to {topic}" in run.stderr

    got = read_all(kafka_bootstrap, topic, len(lines))
    assert sorted(m.value for m in got) == sorted(lines)  # byte for byte, bad lines too
    by_key: dict[bytes | None, list[bytes]] = defaultdict(list)
    for m in sorted(got, key=lambda m: (m.partition, m.offset)):
        by_key[m.key].append(m.value)
    assert by_key[None] == [b"{not json"]
    # one key, one partition: the file's order is kept
    assert by_key[b"edge"] == [line for line in lines if line != b"{not json"]


def test_produce_stdin(kafka_bootstrap: str, kafka_topics: dict[str, str]) -> None:
    topic = kafka_topics["call-events"]
    data = b'{"centre":"a","x":1}\n\xff\xfe not utf-8\n\n{"centre":"b"}\r\n'
    run = subprocess.run(
        [sys.executable, "-m", "callcost.cli", "produce", "-",
         "--bootstrap", kafka_bootstrap, "--topic", topic],
        input=data, capture_output=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    got = read_all(kafka_bootstrap, topic, 3)
    assert sorted((m.key or b"", m.value) for m in got) == sorted([
        (b"a", b'{"centre":"a","x":1}'),
        (b"", b"\xff\xfe not utf-8"),
        (b"b", b'{"centre":"b"}'),
    ])


def test_produce_missing_file() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "callcost.cli", "produce", "/nonexistent/events.jsonl"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 2
    assert "cannot read /nonexistent/events.jsonl" in run.stderr


@pytest.mark.parametrize("line", [b"", b"\n", b"\r\n"])
def test_blank_lines_are_skipped(line: bytes) -> None:
    assert list(messages([line])) == []


def test_simulate_sends_keyed_valid_events(
    kafka_bootstrap: str, kafka_topics: dict[str, str]
) -> None:
    import orjson

    from callcost.streams.events import parse

    topic = kafka_topics["call-events"]
    run = subprocess.run(
        [sys.executable, "-m", "callcost.cli", "simulate", "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--speed", "300", "--duration", "3", "--seed", "5",
         "--start-ms", "1768467600000"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    sent = int(run.stderr.rsplit("sent ", 1)[1].split()[0])
    assert sent > 100  # about 15 simulated minutes of two centres
    got = read_all(kafka_bootstrap, topic, sent)
    assert len(got) == sent
    events = [orjson.loads(m.value) for m in got]
    for m in got:
        parse(m.key, m.value)  # valid, and keyed by its centre
    assert {e["centre"] for e in events} == {"prg", "nyc"}
    staff: dict[tuple[str, str], int] = defaultdict(int)
    for _m, e in sorted(zip(got, events, strict=True),
                       key=lambda pair: (pair[0].partition, pair[0].offset)):
        if e["type"] == "agent.login":
            staff[(e["centre"], e["agent"])] += 1
        elif e["type"] == "agent.logout":
            staff[(e["centre"], e["agent"])] -= 1
    assert staff and not any(staff.values())  # everyone logged out at the end
