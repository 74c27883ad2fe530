"""End-to-end latency (issue 7, target 2): event in, figure on a websocket client.

    .venv/bin/python -m benchmarks.bench_latency [--smoke] [--rate 5000] [--clients 1000]
        [--centres 50] [--measure-s 60] [--batch-ms 100] [--batch-size 10000]
        [--bootstrap HOST:PORT] [--profile]

A real broker (``--bootstrap``, else the benchmarks' own on port 29602, started if need
be), fresh topics for the run, ``callcost worker`` and ``callcost gateway`` as
subprocesses, a producer process and ``--clients`` websocket clients in
``--client-procs`` processes, each subscribed to the figures of one centre (spread
evenly over the centres).

The producer sends simulated events (:class:`callcost.streams.simulation.Simulator`,
``--centres`` centres) at ``--rate`` events a second, paced in real time: each event's
``ts`` is set to the wall clock when it is sent, so the worker is in live mode and the
simulator only supplies the traffic's shape (which calls, agents, queues, outcomes).
The producer keeps each centre's watermark exactly as the engine does (latest ``ts``
less ``lateness_ms``, floored to the second) and, whenever an event moves it, notes the
wall time at which that event was handed to Kafka for every instant it makes final.

Each client records ``time.time()`` on receiving an update and its ``as_of``. A figures
message carries the latest instant at or below the watermark, so one message may make
several instants final at once: the latency of an update is its receive time less the
send time of the event that made *its* ``as_of`` final. Counted: the updates for
instants made final within the measurement window (after ``--warmup-s``). One clock
(one machine, ``time.time()``) for all of it.

Prints p50/p90/p99/max, the samples, events/s achieved, worker and gateway CPU (from
/proc over the window), and exits 1 when no update was received. ``--profile`` runs the
worker and the gateway under cProfile (the CPU figures are then inflated) and prints
where their time goes. ``--smoke``: 10 centres, 20 clients, 500 events/s, 5 s.
"""

from __future__ import annotations

import argparse
import pstats
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import live
from benchmarks.common import machine

LATENESS_MS = 5000  # the worker's default [stream] lateness_ms


# --------------------------------------------------------------------------- producer


def produce(args: argparse.Namespace) -> None:
    """The producer process: paced simulated events, and when each instant became final."""
    from kafka import KafkaProducer

    from callcost.streams.simulation import Simulator

    names = [f"b{i:02d}" for i in range(args.centres)]
    start_ms = int(time.time() * 1000)
    # the contact rate only shapes the traffic (agents per centre, mix); the pace is --rate
    sim = Simulator(args.seed, names, 30.0, start_ms)
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks=1, linger_ms=args.linger_ms)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    buffer: list[dict] = []
    pos = 0
    sim_ms = start_ms
    max_ts: dict[str, int] = {}
    target: dict[str, int] = {}
    final_at: dict[str, dict[int, float]] = defaultdict(dict)
    dumps, send, topic = orjson.dumps, producer.send, args.topic
    t0 = time.time()
    sent = 0
    per_s: list[int] = []
    while not stopping:
        now = time.time()
        if now - t0 >= args.duration:
            break
        due = int((now - t0) * args.rate) - sent
        if due > 0:
            now_ms = int(now * 1000)
            for _ in range(due):
                while pos >= len(buffer):
                    sim_ms += 1000
                    buffer, pos = sim.events_until(sim_ms), 0
                ev = buffer[pos]
                pos += 1
                centre = ev["centre"]
                ev["ts"] = now_ms
                if now_ms > max_ts.get(centre, 0):
                    max_ts[centre] = now_ms
                    t = (now_ms - LATENESS_MS) // 1000 * 1000
                    old = target.get(centre)
                    if old is None or t > old:
                        target[centre] = t
                        # every instant this event makes final (the first: only its own)
                        first = t if old is None else old + 1000
                        for instant in range(first, t + 1, 1000):
                            final_at[centre][instant] = now
                send(topic, value=dumps(ev), key=centre.encode())
            sent += due
        second = int(now - t0)
        while len(per_s) <= second:
            per_s.append(sent)
            # the latest instant made final per centre, for the run to know when the
            # worker has published everything up to a moment
            progress = {c: max(d.items()) for c, d in final_at.items() if d}
            Path(args.out + ".progress").write_bytes(orjson.dumps(progress))
        time.sleep(0.002)
    producer.flush(timeout=30)
    elapsed = time.time() - t0
    producer.close(timeout=10)
    Path(args.out).write_bytes(orjson.dumps({
        "sent": sent, "elapsed_s": elapsed, "t0": t0, "per_s": per_s,
        "final_at": {c: {str(k): v for k, v in d.items()} for c, d in final_at.items()},
    }))


# --------------------------------------------------------------------------- the run


def wait_for_line(path: Path, needle: str, procs: live.Procs, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check()
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"no {needle!r} in {path} within {timeout_s} s")


def read_final_at(workdir: Path) -> dict[str, tuple[int, float]]:
    """The producer's progress: per centre, the latest instant made final and when."""
    try:
        data = orjson.loads((workdir / "produced.json.progress").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return {c: (int(v[0]), float(v[1])) for c, v in data.items()}


class FiguresTap(threading.Thread):
    """Reads the figures topic beside the gateway: when the worker's producer created
    each figures message (the record's CreateTime), to split the latency in two."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.created: dict[tuple[str, int], float] = {}
        self.latest: dict[str, int] = {}
        self.stop = threading.Event()

    def done(self, goal: dict[str, tuple[int, float]]) -> bool:
        """Whether every centre's figures are published as far as ``goal``'s instant."""
        return all(self.latest.get(c, -1) >= instant for c, (instant, _) in goal.items())

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          fetch_max_wait_ms=50)
        parts = None
        while not parts and not self.stop.is_set():
            parts = c.partitions_for_topic(self.topic)
            time.sleep(0.2)
        c.assign([TopicPartition(self.topic, n) for n in sorted(parts or ())])
        while not self.stop.is_set():
            for records in c.poll(timeout_ms=200).values():
                for r in records:
                    head = orjson.loads(r.value)
                    key = (head["centre"], head["as_of"])
                    self.created.setdefault(key, r.timestamp / 1000)
                    if head["as_of"] is not None and head["as_of"] > self.latest.get(
                            head["centre"], -1):
                        self.latest[head["centre"]] = head["as_of"]
        c.close()


def top_functions(prof: Path, n: int = 12) -> str:
    if not prof.exists():
        return f"(no profile at {prof})"
    st = pstats.Stats(str(prof))
    total = st.total_tt  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # type: ignore[attr-defined]
    lines = [f"{prof.name}: {total:.1f} s profiled, by own time"]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows:
        lines.append(f"  {tt:7.2f} s {100 * tt / total:5.1f}%  cum {ct:7.2f} s  {nc:>9}  "
                     f"{Path(file).name}:{line} {func}")
    return "\n".join(lines)


def run_once(a: argparse.Namespace, bootstrap: str, workdir: Path) -> dict:
    topics = live.private_topics(bootstrap, "latency", a.partitions)
    procs = live.Procs(workdir)
    try:
        group = f"bench-latency-{workdir.name}"
        procs.spawn("worker", live.callcost(
            "worker", "--bootstrap", bootstrap, "--group", group,
            "--data-dir", str(workdir / "worker-data"),
            "--batch-ms", str(a.batch_ms), "--batch-size", str(a.batch_size),
            "--checkpoint-s", str(a.checkpoint_s),
            "--events-topic", topics["call-events"], "--figures-topic", topics["cost-figures"],
            "--alerts-topic", topics["cost-alerts"], "--dlq-topic", topics["call-events-dlq"],
            "--checkpoints-topic", topics["callcost-checkpoints"],
        ), profile=a.profile)
        port = live.free_port()
        gw = procs.spawn("gateway", live.callcost(
            "gateway", "--bootstrap", bootstrap, "--port", str(port),
            "--figures-topic", topics["cost-figures"], "--alerts-topic", topics["cost-alerts"],
            "--control-topic", topics["callcost-control"],
        ), profile=a.profile)
        worker = procs.procs[0][1]
        tap = FiguresTap(bootstrap, topics["cost-figures"])
        tap.start()
        live.wait_healthy(port, procs)
        centres = [f"b{i:02d}" for i in range(a.centres)]
        outs = live.start_clients(procs, port, a.clients, a.client_procs, centres, workdir)
        # the worker has joined its group once Faust says it is ready
        wait_for_line(workdir / "worker.log", "Ready", procs, 120)
        duration = a.warmup_s + a.measure_s + LATENESS_MS / 1000 + 3
        procs.spawn("producer", [
            "-m", "benchmarks.bench_latency", "--producer", "--bootstrap", bootstrap,
            "--topic", topics["call-events"], "--centres", str(a.centres),
            "--rate", str(a.rate), "--duration", str(duration), "--seed", str(a.seed),
            "--linger-ms", str(a.linger_ms), "--out", str(workdir / "produced.json"),
        ])
        time.sleep(a.warmup_s)
        procs.check()
        t_a, cpu_w0, cpu_g0 = time.time(), live.cpu_s(worker.pid), live.cpu_s(gw.pid)
        load0 = live.loadavg()
        time.sleep(a.measure_s)
        t_b, cpu_w1, cpu_g1 = time.time(), live.cpu_s(worker.pid), live.cpu_s(gw.pid)
        goal = read_final_at(workdir)  # the instants made final by the end of the window
        load1 = live.loadavg()
        # the instants made final in the window reach the clients once the worker has
        # published them: wait for that (a worker behind its input would otherwise
        # have its slowest instants cut off), then a little for the fan-out
        t_drain = time.monotonic()
        while not tap.done(goal):
            if time.monotonic() - t_drain > a.drain_s:
                print(f"the worker had not published every instant of the window "
                      f"{a.drain_s:g} s after it: the slowest are left out", file=sys.stderr)
                break
            procs.check()
            time.sleep(0.5)
        drain_s = time.monotonic() - t_drain
        time.sleep(2)
        rows = live.stop_clients(procs, outs)
        tap.stop.set()
        tap.join(timeout=10)
        producer = next(p for n, p in procs.procs if n == "producer")
        producer.wait(timeout=60)
    finally:
        procs.close()
        live.delete_topics(bootstrap, topics.values())
    produced = orjson.loads((workdir / "produced.json").read_bytes())
    final_at = {c: {int(k): v for k, v in d.items()} for c, d in produced["final_at"].items()}
    lat, unmatched, seen = [], 0, set()
    to_kafka, to_client = [], []
    for centre, updates in rows.items():
        fin = final_at.get(centre, {})
        for as_of, recv in updates:
            t = fin.get(int(as_of))
            if t is None:
                unmatched += 1
            elif t_a <= t <= t_b:
                lat.append(recv - t)
                seen.add((centre, as_of))
                created = tap.created.get((centre, int(as_of)))
                if created is not None:
                    to_client.append(recv - created)
    for (centre, as_of), created in tap.created.items():
        t = final_at.get(centre, {}).get(as_of)
        if t is not None and t_a <= t <= t_b:
            to_kafka.append(created - t)
    in_window = sum(1 for d in final_at.values() for t in d.values() if t_a <= t <= t_b)
    per_s = produced["per_s"]
    i0, i1 = int(t_a - produced["t0"]), int(t_b - produced["t0"])
    window_rate = (per_s[min(i1, len(per_s) - 1)] - per_s[min(i0, len(per_s) - 1)]) / max(
        1, min(i1, len(per_s) - 1) - min(i0, len(per_s) - 1))
    result = {
        "latency": live.summary_ms(lat),
        # final event sent -> figures message created by the worker's producer
        "worker_part": live.summary_ms(to_kafka),
        # figures message created -> update received by a client
        "gateway_part": live.summary_ms(to_client),
        "events_per_s": window_rate,
        "events_sent": produced["sent"],
        "worker_cpu_pct": 100 * (cpu_w1 - cpu_w0) / (t_b - t_a),
        "gateway_cpu_pct": 100 * (cpu_g1 - cpu_g0) / (t_b - t_a),
        "instants_final_in_window": in_window,
        "instants_delivered": len(seen),
        "unmatched_updates": unmatched,
        "load": f"{load0} -> {load1}",
        "drain_s": drain_s,
    }
    if a.profile:
        result["profile"] = "\n".join(
            top_functions(workdir / f"{n}.prof") for n in ("worker", "gateway"))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny and quick (CI)")
    p.add_argument("--bootstrap", default=None, help="a running broker (default: the "
                   f"benchmarks' own on port {live.BENCH_PORT}, started if need be)")
    p.add_argument("--rate", type=float, default=5000.0, help="events a second")
    p.add_argument("--centres", type=int, default=50)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--warmup-s", type=float, default=20.0)
    p.add_argument("--measure-s", type=float, default=60.0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--batch-ms", type=float, default=100.0, help="worker --batch-ms")
    p.add_argument("--batch-size", type=int, default=10_000, help="worker --batch-size")
    p.add_argument("--checkpoint-s", type=float, default=5.0, help="worker --checkpoint-s")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--drain-s", type=float, default=120.0, help="longest wait, after the "
                   "window, for the worker to publish the window's instants")
    p.add_argument("--linger-ms", type=float, default=5.0, help="the producer's linger.ms")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--workdir", default=None, help="keep the logs and records here")
    # the producer process
    p.add_argument("--producer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.producer:
        produce(a)
        return 0
    if a.smoke:
        a.rate, a.centres, a.clients, a.client_procs = 500.0, 10, 20, 1
        a.warmup_s, a.measure_s, a.drain_s = 5.0, 5.0, 30.0
    bootstrap = live.ensure_broker(a.bootstrap)
    print(f"machine: {machine()}; load average {live.loadavg()}")
    print(f"{a.rate:g} events/s over {a.centres} centres, {a.clients} clients in "
          f"{a.client_procs} process(es), worker --batch-ms {a.batch_ms:g} --batch-size "
          f"{a.batch_size} --checkpoint-s {a.checkpoint_s:g}, {a.partitions} partitions; "
          f"warm-up {a.warmup_s:g} s, measured {a.measure_s:g} s")
    results = []
    for i in range(a.runs):
        if a.workdir:
            workdir = Path(a.workdir) / f"run-{i + 1}"
            workdir.mkdir(parents=True, exist_ok=True)
            r = run_once(a, bootstrap, workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
                r = run_once(a, bootstrap, Path(tmp))
        results.append(r)
        s = r["latency"]
        print(f"run {i + 1}: {live.fmt_latency(s)}; {r['events_per_s']:,.0f} events/s "
              f"({r['events_sent']:,} sent); worker CPU {r['worker_cpu_pct']:.0f}%, "
              f"gateway CPU {r['gateway_cpu_pct']:.0f}%; instants made final in the "
              f"window {r['instants_final_in_window']:,}, delivered as an as_of "
              f"{r['instants_delivered']:,}; unmatched updates {r['unmatched_updates']}; "
              f"waited {r['drain_s']:.1f} s after the window; load {r['load']}", flush=True)
        print(f"  of which event sent -> figures message created (worker): "
              f"{live.fmt_latency(r['worker_part'])}")
        print(f"  of which figures message created -> received (Kafka, gateway, client): "
              f"{live.fmt_latency(r['gateway_part'])}")
        if "profile" in r:
            print(r["profile"])
    if len(results) > 1:
        def med(key: str, sub: str | None = None) -> str:
            return live.median_range(results, key, sub)

        print(f"median of {len(results)} (min-max): p50 {med('latency', 'p50')} ms, "
              f"p90 {med('latency', 'p90')} ms, p99 {med('latency', 'p99')} ms, max "
              f"{med('latency', 'max')} ms; events/s {med('events_per_s')}; worker CPU "
              f"{med('worker_cpu_pct')}%, gateway CPU {med('gateway_cpu_pct')}%")
    if not all(r["latency"]["n"] for r in results):
        print("FAILED: no figure reached a client", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
