"""Gateway fan-out (issue 7, target 3): one gateway, many websocket clients.

    .venv/bin/python -m benchmarks.bench_fanout [--smoke] [--clients 10000]
        [--client-procs 4] [--centres 50] [--measure-s 60] [--spread-s 0]
        [--bootstrap HOST:PORT] [--profile] [--runs N] [--baseline-tree DIR]

A real broker (``--bootstrap``, else the benchmarks' own on port 29602), fresh topics,
``callcost gateway`` as a subprocess, and ``--clients`` websocket clients in
``--client-procs`` processes, each subscribed to the figures of one centre (all its
scopes and windows; the centres get the same number of clients each).

No worker: a producer process feeds the figures topic directly with one figures
message per centre per second, ``as_of`` the whole second, all of them at the top of
the second (``--spread-s`` spreads them over that many seconds instead), and notes when
it handed each one to Kafka. The message is a real one: the engine's figures of a
simulated centre after 30 minutes of traffic (3 windows x 4 scopes, 36 figures),
renamed for each centre.

Prints the delivery latency (client receive time less the message's send time;
one clock), p50/p90/p99/max; the gateway's CPU per delivered frame (utime + stime from
/proc over the measurement window, divided by the frames the clients received in it);
the memory per client (the gateway's RSS after every client has subscribed less before
any connected, divided by the clients); and the gateway's conflations and slow-client
closes. ``--baseline-tree DIR`` (a checkout of another commit) runs the gateway of that
checkout too (benchmarks/other_tree.py), alternating with this one's in every run, and
prints both medians side by side. Exits 1 when no update was received. ``--smoke``: 5
centres, 20 clients, 5 s.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import live
from benchmarks.bench_latency import top_functions
from benchmarks.common import START_MS, machine
from benchmarks.other_tree import command as tree_command


def figures_template() -> dict[str, Any]:
    """The engine's figures message for one simulated centre after 30 minutes."""
    from callcost.streams.config import Settings
    from callcost.streams.engine import Engine
    from callcost.streams.simulation import Simulator

    sim = Simulator(3, ["tpl"], 30.0, START_MS)
    engine = Engine(Settings())
    last: dict[str, Any] | None = None
    for minute in range(1, 31):
        events = sim.events_until(START_MS + minute * 60_000)
        out = engine.ingest([(e["centre"].encode(), orjson.dumps(e)) for e in events])
        if out.figures:
            last = out.figures[-1]
    assert last is not None, "the engine published no figures"
    return last


def for_centre(template: dict[str, Any], centre: str) -> dict[str, Any]:
    msg = orjson.loads(orjson.dumps(template))
    msg["centre"] = centre
    for f in msg["figures"]:
        f["centre"] = centre
    return msg


def produce(args: argparse.Namespace) -> None:
    """The producer process: one figures message per centre per second."""
    from kafka import KafkaProducer

    template = figures_template()
    names = [f"f{i:03d}" for i in range(args.centres)]
    msgs = {c: for_centre(template, c) for c in names}
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks=1, linger_ms=0)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    sent_at: dict[str, dict[str, float]] = {c: {} for c in names}
    size = len(orjson.dumps(msgs[names[0]]))
    t_end = time.time() + args.duration
    second = int(time.time()) + 1
    gap = args.spread_s / len(names)
    while not stopping and second < t_end:
        time.sleep(max(0.0, second - time.time()))
        as_of = second * 1000
        for i, c in enumerate(names):
            if gap:
                time.sleep(max(0.0, second + i * gap - time.time()))
            msg = msgs[c]
            msg["as_of"] = as_of
            for f in msg["figures"]:
                f["as_of"] = as_of
            value = orjson.dumps(msg)
            sent_at[c][str(as_of)] = time.time()
            producer.send(args.topic, value=value, key=c.encode())
        producer.flush()
        second += max(1, int(args.spread_s))
    producer.close(timeout=10)
    Path(args.out).write_bytes(orjson.dumps({"sent_at": sent_at, "bytes": size,
                                             "figures": len(template["figures"])}))


def metric(port: int, name: str) -> float:
    """A counter or gauge of the gateway's /metrics (NaN when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
            text = r.read().decode()
    except OSError:
        return float("nan")
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text,
                                                        re.M))


def run_once(a: argparse.Namespace, bootstrap: str, workdir: Path,
             tree: Path | None = None) -> dict[str, Any]:
    topics = live.private_topics(bootstrap, "fanout", a.partitions)
    procs = live.Procs(workdir)
    try:
        port = live.free_port()
        config = live.gateway_config(workdir, a.clients)
        args = ("gateway", "--bootstrap", bootstrap, "--port", str(port),
                "--figures-topic", topics["cost-figures"], "--alerts-topic",
                topics["cost-alerts"], "--control-topic", topics["callcost-control"],
                *(["--config", str(config)] if config else []))
        if tree is None:
            gw = procs.spawn("gateway", live.callcost(*args), profile=a.profile)
        else:
            gw = procs.spawn("gateway", tree_command(tree, *args)[1:])
        live.wait_healthy(port, procs)
        duration = a.warmup_s + a.measure_s + 600  # stopped by the run
        procs.spawn("producer", [
            "-m", "benchmarks.bench_fanout", "--producer", "--bootstrap", bootstrap,
            "--topic", topics["cost-figures"], "--centres", str(a.centres),
            "--duration", str(duration), "--spread-s", str(a.spread_s),
            "--out", str(workdir / "produced.json"),
        ])
        time.sleep(3)
        rss0 = live.rss_bytes(gw.pid)
        t_c = time.monotonic()
        centres = [f"f{i:03d}" for i in range(a.centres)]
        outs = live.start_clients(procs, port, a.clients, a.client_procs, centres, workdir,
                                  timeout_s=600)
        connect_s = time.monotonic() - t_c
        time.sleep(1)
        rss1 = live.rss_bytes(gw.pid)
        time.sleep(a.warmup_s)
        procs.check()
        t_a, cpu0, load0 = time.time(), live.cpu_s(gw.pid), live.loadavg()
        time.sleep(a.measure_s)
        t_b, cpu1, load1 = time.time(), live.cpu_s(gw.pid), live.loadavg()
        time.sleep(2)
        conflated = metric(port, "callcost_gateway_conflated_total")
        slow = metric(port, "callcost_gateway_slow_client_closes_total")
        connections = metric(port, "callcost_gateway_connections")
        rows = live.stop_clients(procs, outs)
        producer = next(p for n, p in procs.procs if n == "producer")
        producer.send_signal(signal.SIGTERM)
        producer.wait(timeout=60)
    finally:
        procs.close()
        live.delete_topics(bootstrap, topics.values())
    produced = orjson.loads((workdir / "produced.json").read_bytes())
    sent_at = produced["sent_at"]
    lat, frames, unmatched = [], 0, 0
    for centre, updates in rows.items():
        sent = sent_at.get(centre, {})
        for as_of, recv in updates:
            if t_a <= recv <= t_b:
                frames += 1
            t = sent.get(str(int(as_of)))
            if t is None:
                unmatched += 1
            elif t_a <= t <= t_b:
                lat.append(recv - t)
    messages = sum(1 for d in sent_at.values() for t in d.values() if t_a <= t <= t_b)
    return {
        "latency": live.summary_ms(lat),
        "frames": frames,
        "frames_per_s": frames / (t_b - t_a),
        "expected": messages * a.clients // a.centres,
        "cpu_s": cpu1 - cpu0,
        "cpu_pct": 100 * (cpu1 - cpu0) / (t_b - t_a),
        "cpu_us_per_frame": 1e6 * (cpu1 - cpu0) / max(1, frames),
        "rss_before": rss0,
        "rss_after": rss1,
        "bytes_per_client": (rss1 - rss0) / a.clients,
        "connect_s": connect_s,
        "connections": connections,
        "conflated": conflated,
        "slow_closes": slow,
        "unmatched": unmatched,
        "message_bytes": produced["bytes"],
        "figures_per_message": produced["figures"],
        "load": f"{load0} -> {load1}",
        **({"profile": top_functions(workdir / "gateway.prof", 20)} if a.profile else {}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny and quick (CI)")
    p.add_argument("--bootstrap", default=None, help="a running broker (default: the "
                   f"benchmarks' own on port {live.BENCH_PORT}, started if need be)")
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--client-procs", type=int, default=4)
    p.add_argument("--centres", type=int, default=50)
    p.add_argument("--spread-s", type=float, default=0.0,
                   help="spread each round of messages over this long (0: all at once)")
    p.add_argument("--warmup-s", type=float, default=5.0)
    p.add_argument("--measure-s", type=float, default=60.0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--profile", action="store_true", help="the gateway under cProfile")
    p.add_argument("--workdir", default=None, help="keep the logs and records here")
    p.add_argument("--baseline-tree", type=Path, default=None, metavar="DIR",
                   help="also run the gateway of this checkout of another commit")
    p.add_argument("--producer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.producer:
        produce(a)
        return 0
    if a.smoke:
        a.clients, a.client_procs, a.centres, a.warmup_s, a.measure_s = 20, 1, 5, 2.0, 5.0
    bootstrap = live.ensure_broker(a.bootstrap)
    print(f"machine: {machine()}; load average {live.loadavg()}")
    print(f"{a.clients:,} clients in {a.client_procs} process(es), {a.centres} centres "
          f"({a.clients // a.centres} clients each), one figures message per centre per "
          f"second{f' spread over {a.spread_s:g} s' if a.spread_s else ', all at once'}; "
          f"warm-up {a.warmup_s:g} s, measured {a.measure_s:g} s")
    sides: list[tuple[str, Path | None]] = [("this", None)]
    if a.baseline_tree is not None:
        sides.append(("base", a.baseline_tree))
    by_side: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in sides}
    for i, (side, tree) in enumerate(
        pair for run in range(a.runs) for pair in (sides if run % 2 == 0 else sides[::-1])
    ):
        if a.workdir:
            workdir = Path(a.workdir) / f"run-{i + 1}-{side}"
            workdir.mkdir(parents=True, exist_ok=True)
            r = run_once(a, bootstrap, workdir, tree)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
                r = run_once(a, bootstrap, Path(tmp), tree)
        by_side[side].append(r)
        label = f" ({side} tree)" if len(sides) > 1 else ""
        print(f"run {i // len(sides) + 1}{label}: delivery {live.fmt_latency(r['latency'])}; "
              f"{r['frames']:,} frames in the window ({r['frames_per_s']:,.0f}/s, expected "
              f"{r['expected']:,}) of {r['message_bytes']:,} bytes ({r['figures_per_message']} "
              f"figures); gateway CPU {r['cpu_pct']:.0f}%, {r['cpu_us_per_frame']:.1f} µs "
              f"per frame; RSS {r['rss_before'] / 2**20:.0f} -> {r['rss_after'] / 2**20:.0f} "
              f"MiB, {r['bytes_per_client'] / 1024:.1f} KiB per client; {r['connections']:.0f} "
              f"connections made in {r['connect_s']:.1f} s; conflated {r['conflated']:.0f}, "
              f"slow-client closes {r['slow_closes']:.0f}, unmatched {r['unmatched']}; "
              f"load {r['load']}", flush=True)
        if "profile" in r:
            print(r["profile"])
    for side, results in by_side.items():
        if len(results) < 2:
            continue

        def med(key: str, sub: str | None = None, results: list = results) -> str:
            return live.median_range(results, key, sub)

        label = f"{side} tree, " if len(sides) > 1 else ""
        print(f"{label}median of {len(results)} (min-max): p50 {med('latency', 'p50')} ms, "
              f"p90 {med('latency', 'p90')} ms, p99 {med('latency', 'p99')} ms, max "
              f"{med('latency', 'max')} ms; CPU {med('cpu_us_per_frame')} µs per frame, "
              f"{med('cpu_pct')}%; {med('bytes_per_client')} bytes per client")
    if not all(r["latency"]["n"] for rs in by_side.values() for r in rs):
        print("FAILED: no figure reached a client", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
