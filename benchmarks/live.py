"""Helpers of the live benchmarks (bench_latency, bench_fanout): a broker, the worker and
the gateway as subprocesses, CPU and memory from /proc, and the websocket clients.

The clients run in processes of their own (``python -m benchmarks.live clients ...``):
each process opens ``--n`` connections to the gateway, subscribes each to the figures of
one centre (round robin over ``--centres``), prints ``ready N`` once all are subscribed,
and records, per update, the ``as_of`` it carries and ``time.time()`` on receipt. On
SIGTERM (or after ``--duration``) it writes ``{centre: [[as_of, recv_s], ...]}`` (one
entry per update per client) to ``--out`` and exits.

Everything runs on one machine, so the clocks of the producer, the gateway and the
clients are one clock (``time.time()``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
#: the benchmarks' own broker, when none is given (--bootstrap): helpers' range 39600-39619
BENCH_PORT = 29602  # below the ephemeral ports (32768-60999)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted ``values``, nearest rank."""
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1))
    return values[k]


def summary_ms(latencies_s: Iterable[float]) -> dict[str, float]:
    v = sorted(x * 1000 for x in latencies_s)
    return {
        "n": len(v),
        "p50": percentile(v, 50),
        "p90": percentile(v, 90),
        "p99": percentile(v, 99),
        "max": v[-1] if v else float("nan"),
    }


def fmt_latency(s: dict[str, float]) -> str:
    return (
        f"p50 {s['p50']:.1f} ms, p90 {s['p90']:.1f} ms, p99 {s['p99']:.1f} ms, "
        f"max {s['max']:.1f} ms ({int(s['n']):,} samples)"
    )


# --------------------------------------------------------------------------- /proc


def median_range(results: Sequence[dict], key: str, sub: str | None = None) -> str:
    """``median (min-max)`` of one figure over several runs' results."""
    import statistics

    vals = [r[key][sub] if sub else r[key] for r in results]
    return f"{statistics.median(vals):.1f} ({min(vals):.1f}-{max(vals):.1f})"


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_broker(bootstrap: str | None, port: int = BENCH_PORT) -> str:
    """``bootstrap`` as given, else the benchmarks' broker on ``port`` (started unless it
    runs; home var/bench-broker-PORT; left running for the next benchmark)."""
    if bootstrap:
        return bootstrap
    from callcost import broker, broker_config

    cfg = broker_config.BrokerConfig(home=ROOT / "var" / f"bench-broker-{port}", port=port)
    took = broker.start(cfg, timeout_s=180)
    print(f"broker {cfg.bootstrap} ready in {took:.1f} s", file=sys.stderr)
    return cfg.bootstrap


def private_topics(bootstrap: str, label: str, partitions: int = 4) -> dict[str, str]:
    """Fresh copies of the callcost topics for one run: ``{canonical: actual}``."""
    from callcost.topics_cmd import create_topics

    return create_topics(bootstrap, partitions, prefix=f"bench-{label}-{uuid.uuid4().hex[:8]}-")


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callcost-bench")
    try:
        admin.delete_topics(list(names), timeout_ms=15000, raise_errors=False)
    except Exception as exc:
        print(f"could not delete the run's topics: {exc}", file=sys.stderr)
    finally:
        admin.close()


class Procs:
    """Subprocesses of one run, logs in ``workdir``; :meth:`close` stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], *, stdout: int | None = None,
              profile: bool = False) -> subprocess.Popen[bytes]:
        cmd = [PY, *args]
        if profile:  # a CPU-time cProfile, written when it exits cleanly
            assert args[:2] == ["-m", "callcost.cli"], args
            cmd = [PY, "-m", "benchmarks.profiled", str(self.workdir / f"{name}.prof"),
                   *args[2:]]
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (kept with the process)
        proc = subprocess.Popen(
            cmd,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            cwd=ROOT,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None and proc.returncode != 0:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def close(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def callcost(*args: str) -> list[str]:
    return ["-m", "callcost.cli", *args]


def wait_healthy(port: int, procs: Procs, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the gateway on port {port} was not healthy within {timeout_s} s")


def gateway_config(workdir: Path, connections: int) -> Path | None:
    """A config that lets ``connections`` websocket clients in, when the gateway caps
    them (``[gateway] max_connections``) below that; else None."""
    try:
        from callcost.streams.config import GatewaySettings
    except ImportError:
        return None
    cap = getattr(GatewaySettings(), "max_connections", None)
    if cap is None or cap >= connections + 100:
        return None
    path = workdir / "gateway.toml"
    path.write_text(f"[gateway]\nmax_connections = {connections + 100}\n")
    return path


def start_clients(procs: Procs, port: int, n: int, processes: int, centres: Sequence[str],
                  outdir: Path, timeout_s: float = 300) -> list[Path]:
    """``n`` websocket clients in ``processes`` processes, spread over ``centres``;
    returns when every one is subscribed. Their records go to the returned files."""
    outs, started = [], []
    per = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    offset = 0
    for i, k in enumerate(per):
        # each process starts its round robin where the last one stopped
        mine = [centres[(offset + j) % len(centres)] for j in range(min(k, len(centres)))]
        offset += k
        out = outdir / f"clients-{i}.json"
        outs.append(out)
        started.append(procs.spawn(
            f"clients-{i}",
            ["-m", "benchmarks.live", "clients", "--url", f"ws://127.0.0.1:{port}/ws",
             "--n", str(k), "--centres", ",".join(mine), "--out", str(out)],
            stdout=subprocess.PIPE,
        ))
    deadline = time.monotonic() + timeout_s
    for proc in started:
        assert proc.stdout is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"clients not all subscribed within {timeout_s:g} s")
            line = proc.stdout.readline()
            if not line:
                procs.check()
                raise RuntimeError("a client process stopped before it was ready")
            if line.startswith(b"ready"):
                break
    return outs


def stop_clients(procs: Procs, outs: list[Path]) -> dict[str, list[list[float]]]:
    """SIGTERM the client processes, wait for their records, and merge them."""
    for name, proc in procs.procs:
        if name.startswith("clients-") and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in procs.procs:
        if name.startswith("clients-"):
            proc.wait(timeout=120)
    merged: dict[str, list[list[float]]] = {}
    for out in outs:
        if out.exists():
            for centre, rows in orjson.loads(out.read_bytes()).items():
                merged.setdefault(centre, []).extend(rows)
    return merged


# --------------------------------------------------------------------------- clients

_AS_OF = re.compile(rb'"as_of":(\d+)')


async def _client(url: str, centre: str, rows: list[tuple[int, float]], ready: asyncio.Event,
                  gate: asyncio.Semaphore, stats: dict[str, int]) -> None:
    from websockets.asyncio.client import connect

    async with gate:
        for attempt in range(20):
            try:
                ws = await connect(url, compression=None, max_size=None, open_timeout=60,
                                   ping_interval=None)
                break
            except Exception:
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            stats["failed"] += 1
            return
        await ws.send(orjson.dumps({"op": "subscribe", "channel": "figures", "centre": centre,
                                    "sub": "f"}).decode())
        await ws.recv(decode=False)  # the snapshot
    stats["subscribed"] += 1
    if stats["subscribed"] + stats["failed"] == stats["wanted"]:
        ready.set()
    now, search = time.time, _AS_OF.search
    try:
        while True:
            frame = await ws.recv(decode=False)
            t = now()
            m = search(frame, 0, 400)
            if m is not None:
                rows.append((int(m.group(1)), t))
    except Exception:
        stats["closed"] += 1


async def _clients(args: argparse.Namespace) -> None:
    centres = args.centres.split(",")
    stats = {"wanted": args.n, "subscribed": 0, "failed": 0, "closed": 0}
    ready = asyncio.Event()
    gate = asyncio.Semaphore(50)
    per_client: list[tuple[str, list[tuple[int, float]]]] = []
    tasks = []
    for i in range(args.n):
        rows: list[tuple[int, float]] = []
        centre = centres[i % len(centres)]
        per_client.append((centre, rows))
        tasks.append(asyncio.create_task(_client(args.url, centre, rows, ready, gate, stats)))
    await ready.wait()
    print(f"ready {stats['subscribed']} failed {stats['failed']}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.duration or None)
    out: dict[str, list[tuple[int, float]]] = {}
    for centre, rows in per_client:
        out.setdefault(centre, []).extend(rows)
    Path(args.out).write_bytes(orjson.dumps(out))
    print(f"done: {sum(len(r) for _, r in per_client)} updates, closed {stats['closed']}",
          file=sys.stderr, flush=True)
    os._exit(0)  # 10,000 connections need no orderly close


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.live")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clients", help="websocket clients subscribed to figures")
    c.add_argument("--url", required=True)
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--centres", required=True, help="comma-separated, round robin")
    c.add_argument("--out", required=True)
    c.add_argument("--duration", type=float, default=0.0, help="0: until SIGTERM")
    args = p.parse_args(argv)
    if args.cmd == "clients":
        asyncio.run(_clients(args))


if __name__ == "__main__":
    main()
