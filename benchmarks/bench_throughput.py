"""Throughput of one worker process from a real Kafka topic, to exact final figures.

    .venv/bin/python -m benchmarks.bench_throughput [--events 2000000] [--centres 50]
        [--runs 3] [--variants faust-record,worker-faust,worker-batch] [--bootstrap H:P]
        [--baseline-tree DIR] [--smoke]

A topic is pre-filled once with ``--events`` simulated events across ``--centres``
centres (keyed by centre, ``--partitions`` partitions) and kept on the benchmark broker
(``var/bench-broker``, port 29700, started when no ``--bootstrap`` is given). Then, in
each run, side by side on the same topic, each variant reads all of it:

- ``faust-record``: a plain Faust agent that decodes each event into a ``faust.Record``
  and counts it (benchmarks/faust_baseline.py): the baseline;
- ``worker-faust``: ``callcost worker --intake faust`` (events through Faust's stream);
- ``worker-batch``: ``callcost worker`` (the batch intake, the default);
- ``aiokafka-raw``: a bare aiokafka consumer that only counts the records
  (benchmarks/aiokafka_baseline.py): the ceiling the client library allows.

The first two read the first ``--baseline-events`` (200,000) of the same events from a
topic of their own (at a few thousand events/s the whole would take a quarter of an hour
a run); ``worker-batch`` and ``aiokafka-raw`` read that prefix too, side by side, then
all of them.

``--baseline-tree DIR`` (a checkout of another commit, e.g. ``git worktree add /tmp/base
REV``) adds ``base-worker-batch``: the same worker run from that checkout
(benchmarks/other_tree.py), in the same runs and rotation, for before/after figures
side by side.

A worker is timed from the moment it reads its first events (its log line ``first
events at``) to the Kafka timestamp of the figures message that made the last centre's
figures final; those final figures are checked against the same events folded in by the
engine in this process (every field, 1e-6), so a fast wrong answer fails. The baseline is
timed from its first event to its N-th. Each worker has fresh output topics and a fresh
consumer group; checkpoints every 5 s as by default. Medians over the runs, and the
worker/baseline ratio of each run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import DATA, ROOT, machine, simulated_file
from benchmarks.other_tree import command as tree_command

BENCH_PORT = 29700  # below the ephemeral ports (32768-60999)
VARIANTS = ("faust-record", "worker-faust", "worker-batch", "aiokafka-raw")
PY = sys.executable


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- data


def load_events(n: int, centres: int) -> list[tuple[bytes, bytes]]:
    # about 42,000 events a centre-day at 6 calls a minute, in half days
    days = max(0.5, math.ceil(n / (centres * 40_000) * 2) / 2)
    while True:
        path = simulated_file("throughput", centres, 6.0, days)
        with open(path, "rb") as f:
            lines = [line.rstrip(b"\n") for line in f]
        if len(lines) >= n:
            break
        days *= 2
    out = []
    for line in lines[:n]:
        centre = re.search(rb'"centre":"([^"]+)"', line)
        assert centre is not None
        out.append((centre.group(1), line))
    return out


def expected_finals(events: list[tuple[bytes, bytes]], tag: str) -> dict[str, Any]:
    """The last figures message of each centre, from the engine in this process."""
    cache = DATA / f"{tag}.expected.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from callcost.streams.config import Settings
    from callcost.streams.engine import Engine

    log(f"computing the expected final figures of {len(events):,} events in-process")
    Engine.warm_up()
    engine = Engine(Settings())
    last: dict[str, Any] = {}
    for i in range(0, len(events), 20_000):
        out = engine.ingest(events[i:i + 20_000])
        for m in out.figures:
            last[m["centre"]] = m
    cache.write_text(json.dumps(last))
    return last


def ensure_topic(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]],
                 partitions: int) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench")
    try:
        if topic in admin.list_topics():
            c = KafkaConsumer(bootstrap_servers=bootstrap)
            tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
            have = sum(c.end_offsets(tps).values())
            c.close()
            if have == len(events):
                log(f"topic {topic} already holds {have:,} events")
                return
            admin.delete_topics([topic])
            time.sleep(2)
        admin.create_topics([NewTopic(topic, partitions, 1,
                                      topic_configs={"retention.ms": "-1"})])
    finally:
        admin.close()
    log(f"producing {len(events):,} events to {topic} ({partitions} partitions)")
    t0 = time.perf_counter()
    # Kafka's console producer: some 20 times faster than a Python producer here
    from callcost import broker_jvm

    lines = b"".join(k + b"\t" + v + b"\n" for k, v in events)
    subprocess.run(
        [broker_jvm.java(), "-Xmx512m", "-cp", str(ROOT / "broker" / "lib" / "*"),
         "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap,
         "--topic", topic, "--property", "parse.key=true", "--property", "key.separator=\t",
         "--producer-property", "linger.ms=20", "--producer-property", "batch.size=524288",
         "--producer-property", "acks=1"],
        input=lines, check=True, capture_output=True)
    log(f"produced in {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------------- runs


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_baseline(bootstrap: str, topic: str, n: int, timeout_s: float,
                 module: str = "benchmarks.faust_baseline", *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [PY, "-m", module, "--bootstrap", bootstrap, "--topic", topic, "--events", str(n),
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    # Faust's worker sends stdout through its logging: the line may be on either
    found = re.findall(r'\{"events": .*?\}', proc.stdout + proc.stderr)
    if not found:
        raise RuntimeError(f"{module} failed: {proc.stderr[-2000:]}")
    doc = json.loads(found[-1])
    secs = max(1e-3, doc["last_at"] - doc["first_at"])  # one fetch may hold them all
    return {"events_s": n / secs, "seconds": secs}


def close_enough(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_enough(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close_enough(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def run_worker(bootstrap: str, topic: str, n: int, finals: dict[str, Any], intake: str,
               partitions: int, timeout_s: float, profile: str | None = None,
               tree: Path | None = None) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    from callcost.topics_cmd import create_topics

    prefix = f"tmp-bench-{uuid.uuid4().hex[:8]}-"
    names = create_topics(bootstrap, partitions, prefix=prefix)
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    logf = open(tmp / "worker.log", "w+")  # noqa: SIM115 (read back below)
    args = ["worker", "--bootstrap", bootstrap,
           "--events-topic", topic, "--figures-topic", names["cost-figures"],
           "--alerts-topic", names["cost-alerts"], "--dlq-topic", names["call-events-dlq"],
           "--checkpoints-topic", names["callcost-checkpoints"],
           "--group", f"{prefix}worker", "--data-dir", str(tmp / "data"),
           "--intake", intake]
    cmd = tree_command(tree, *args) if tree else [PY, "-m", "callcost.cli", *args]
    env = dict(os.environ)
    if profile:
        env["CALLCOST_PROFILE"] = profile  # the worker writes its cProfile there at exit
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env=env)
    want = {c: m["as_of"] for c, m in finals.items()}
    got: dict[str, Any] = {}
    done_ts: dict[str, int] = {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    fig = names["cost-figures"]
    consumer.assign([TopicPartition(fig, p) for p in range(partitions)])
    t0 = time.monotonic()
    try:
        while len(done_ts) < len(want):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}: {_tail(logf)}")
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"worker not done after {timeout_s} s: {_tail(logf)}")
            for recs in consumer.poll(timeout_ms=500, max_records=2000).values():
                for r in recs:
                    m = orjson.loads(r.value)
                    c = m["centre"]
                    if c not in done_ts and m["as_of"] == want.get(c):
                        done_ts[c] = r.timestamp
                        got[c] = m
        cpu = cpu_s(proc.pid)
    finally:
        consumer.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _delete_topics(bootstrap, list(names.values()))
    text = _tail(logf, 10**9)
    first = re.search(r"first events at (\d+\.\d+)", text)
    if first is None:
        raise RuntimeError("the worker never logged its first events")
    wrong = [c for c in want if not close_enough(got[c], finals[c])]
    if wrong:
        raise RuntimeError(f"final figures differ from the engine's for centres {wrong}")
    secs = max(1e-3, max(done_ts.values()) / 1000 - float(first.group(1)))
    return {"events_s": n / secs, "seconds": secs, "cpu_s": cpu}


def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench")
    try:
        admin.delete_topics(topics, timeout_ms=15000, raise_errors=False)
    finally:
        admin.close()


def _tail(f: Any, n: int = 3000) -> str:
    f.flush()
    f.seek(0)
    return str(f.read()[-n:])


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--centres", type=int, default=50)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--baseline-events", type=int, default=200_000,
                   help="events the slow variants read, a prefix of the same events "
                        "(default %(default)s; 0: all)")
    p.add_argument("--bootstrap", default=None,
                   help="a running broker (default: start var/bench-broker on 29700)")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="write each worker's cProfile to DIR/VARIANT-RUN.prof")
    p.add_argument("--baseline-tree", type=Path, default=None, metavar="DIR",
                   help="also run worker-batch from this checkout of another commit")
    p.add_argument("--smoke", action="store_true",
                   help="tiny: 20,000 events, 5 centres, 1 run (CI checks it still works)")
    a = p.parse_args(argv)
    if a.smoke:
        a.events, a.centres, a.runs, a.baseline_events = 20_000, 5, 1, 5_000
    variants = [v for v in a.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {bad}; choose from {VARIANTS}")

    bootstrap = a.bootstrap
    broker_cfg = None
    if bootstrap is None:
        from callcost import broker, broker_config

        broker_cfg = broker_config.BrokerConfig(home=ROOT / "var" / "bench-broker", port=BENCH_PORT,
                                         controller_port=BENCH_PORT + 1)
        broker.start(broker_cfg, timeout_s=180)
        bootstrap = broker_cfg.bootstrap
    events = load_events(a.events, a.centres)
    # The slow variants read a prefix of the same events (--baseline-events): at a few
    # thousand events/s, 2 million would take a quarter of an hour a run. worker-batch
    # reads the prefix too (the side-by-side ratio) and then the whole topic.
    m = min(a.events, a.baseline_events or a.events)
    sets = {"prefix": m}
    if a.events > m and "worker-batch" in variants:
        sets["full"] = a.events
    topics_, finals_ = {}, {}
    for name, n in sets.items():
        finals_[name] = expected_finals(events[:n], f"throughput-n{n}-c{a.centres}")
        topics_[name] = f"bench-events-n{n}-c{a.centres}-p{a.partitions}"
        ensure_topic(bootstrap, topics_[name], events[:n], a.partitions)

    if a.baseline_tree is not None and "worker-batch" in variants:
        variants.insert(variants.index("worker-batch") + 1, "base-worker-batch")
    plan = [(v, "prefix") for v in variants]
    if "full" in sets:
        plan += [(v, "full") for v in ("worker-batch", "base-worker-batch", "aiokafka-raw")
                 if v in variants]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in plan}
    for run in range(a.runs):
        order = plan[run % len(plan):] + plan[:run % len(plan)]
        for v, which in order:
            n = sets[which]
            timeout_s = max(120.0, n / 300)
            log(f"run {run + 1}/{a.runs}: {v} on {n:,} events")
            if v == "faust-record":
                r = run_baseline(bootstrap, topics_[which], n, timeout_s)
            elif v == "aiokafka-raw":
                r = run_baseline(bootstrap, topics_[which], n, timeout_s,
                                 "benchmarks.aiokafka_baseline",
                                 "--partitions", str(a.partitions))
            else:
                prof = None
                if a.profile:
                    Path(a.profile).mkdir(parents=True, exist_ok=True)
                    prof = str(Path(a.profile) / f"{v}-{which}-{run + 1}.prof")
                tree = a.baseline_tree if v.startswith("base-") else None
                r = run_worker(bootstrap, topics_[which], n, finals_[which],
                               v.split("-")[-1], a.partitions, timeout_s, prof, tree)
            log(f"  {r['events_s']:,.0f} events/s ({r['seconds']:.1f} s)")
            results[v, which].append(r)

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{a.centres} centres, {a.partitions} partitions, {a.runs} run(s), "
          f"{time.strftime('%Y-%m-%d')}")
    for (v, which), rs in results.items():
        rates = [r["events_s"] for r in rs]
        extra = ""
        cpus = [r["cpu_s"] for r in rs if "cpu_s" in r]
        if cpus:
            extra = f"; worker CPU {statistics.median(cpus):.1f} s"
        print(f"{v:13s} {sets[which]:>10,} events: median {statistics.median(rates):>9,.0f} "
              f"events/s (min {min(rates):,.0f}, max {max(rates):,.0f}){extra}")
    if "faust-record" in variants:
        base = results["faust-record", "prefix"]
        for v in variants:
            if v not in ("faust-record", "aiokafka-raw") and (v, "prefix") in results:
                ratios = [w["events_s"] / b["events_s"]
                          for w, b in zip(results[v, "prefix"], base, strict=True)]
                print(f"{v} / faust-record on the same {m:,} events, same run: median "
                      f"x{statistics.median(ratios):.2f} "
                      f"({', '.join(f'x{x:.2f}' for x in ratios)})")
    for which in ("prefix", "full"):
        if ("base-worker-batch", which) in results:
            ratios = [w["events_s"] / b["events_s"] for w, b in
                      zip(results["worker-batch", which], results["base-worker-batch", which],
                          strict=True)]
            print(f"worker-batch / base-worker-batch on {sets[which]:,} events, same run: "
                  f"median x{statistics.median(ratios):.3f} "
                  f"({', '.join(f'x{x:.3f}' for x in ratios)})")
        if ("aiokafka-raw", which) in results and ("worker-batch", which) in results:
            ratios = [w["events_s"] / c["events_s"] for w, c in
                      zip(results["worker-batch", which], results["aiokafka-raw", which],
                          strict=True)]
            print(f"worker-batch / aiokafka-raw on {sets[which]:,} events, same run: median "
                  f"{statistics.median(ratios):.0%} of what the client library allows")
    if broker_cfg is not None and os.environ.get("CALLCOST_BENCH_KEEP_BROKER") != "1":
        from callcost import broker, broker_config

        broker.stop(broker_cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
