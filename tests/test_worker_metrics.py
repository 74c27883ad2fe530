"""``callcost worker --metrics-port``: the worker's Prometheus metrics, scraped from a real
worker subprocess on the real broker and read with Prometheus' own text parser.

The ``edge`` vector (43 lines, 3 of them bad) goes through the worker; its metrics
must say exactly that: 43 events in, by outcome; 3 dead letters, one per reason; lag 0
on every partition once it is read; one centre; latencies and checkpoints observed.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from callcost.produce import send
from tests.support.processes import log_text
from tests.support.waiting import wait_for
from tests.support.worker import Workers
from tests.vectorcheck import VECTORS, expected

EDGE = VECTORS / "edge"
BOUND = re.compile(r"worker metrics at (http://[\d.]+:\d+/metrics)")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_url(proc: subprocess.Popen) -> str | None:
    m = BOUND.search(log_text(proc))
    return m.group(1) if m else None


def scrape(url: str) -> Samples:
    """Every sample of the endpoint: ``(name, sorted labels) -> value``."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


def value(samples: Samples, name: str) -> float:
    return samples[(name, ())]


def test_worker_metrics_count_the_vector(
    kafka_bootstrap: str, kafka_topics: dict[str, str], tmp_path: Path
) -> None:
    names = kafka_topics
    lines = (EDGE / "events.jsonl").read_bytes().splitlines()
    workers = Workers(kafka_bootstrap, names, tmp_path, config=EDGE / "callcost.toml",
                      options=["--checkpoints-topic", names["callcost-checkpoints"],
                               "--checkpoint-s", "1", "--metrics-port", "0"])
    try:
        proc = workers.start()
        url = wait_for(lambda: metrics_url(proc), 120, "the metrics address", procs=[proc])
        before = scrape(url)
        assert by_label(before, "callcost_worker_events_total", "outcome") == {
            "accepted": 0, "duplicate": 0, "rejected": 0}
        with (EDGE / "events.jsonl").open("rb") as f:
            assert send(kafka_bootstrap, names["call-events"], f) == len(lines) == 43

        exp = expected("edge")

        def settled() -> Samples | None:
            s = scrape(url)
            lag = by_label(s, "callcost_worker_consumer_lag_messages", "partition")
            events = by_label(s, "callcost_worker_events_total", "outcome")
            dlq = by_label(s, "callcost_worker_dlq_messages_total", "reason")
            done = (sum(events.values()) == len(lines) and sum(dlq.values()) == exp["rejected"]
                    and len(lag) == 4 and not any(lag.values())
                    and by_label(s, "callcost_worker_checkpoint_age_seconds", "partition"))
            return s if done else None

        s = wait_for(settled, 120, "the vector in the worker's metrics", procs=[proc],
                     interval_s=0.5)
        events = by_label(s, "callcost_worker_events_total", "outcome")
        assert events["rejected"] == exp["rejected"] == 3
        assert events["accepted"] + events["duplicate"] == len(lines) - 3
        assert by_label(s, "callcost_worker_dlq_messages_total", "reason") == {
            "invalid_json": 1, "invalid_value": 1, "missing_field": 1}
        assert value(s, "callcost_worker_centres") == 1
        assert value(s, "callcost_worker_partitions") == 4
        assert value(s, "callcost_worker_replaying_partitions") == 0
        assert value(s, "callcost_worker_send_errors_total") == 0
        sent = by_label(s, "callcost_worker_messages_sent_total", "kind")
        assert sent["dlq"] == 3 and sent["figures"] >= 1
        assert sent["alerts"] == len(exp["centres"]["edge"]["alerts"])
        assert value(s, "callcost_worker_batch_duration_seconds_count") >= 1
        assert value(s, "callcost_worker_publish_duration_seconds_count") >= 1
        assert value(s, "callcost_worker_publish_duration_seconds_sum") >= 0
        sizes = by_label(s, "callcost_worker_checkpoint_size_bytes", "partition")
        ages = by_label(s, "callcost_worker_checkpoint_age_seconds", "partition")
        assert set(sizes) == set(ages) and max(sizes.values()) > 1000
        assert all(0 <= a < 60 for a in ages.values())
        assert workers.stop(proc) == 0
    finally:
        workers.close()
