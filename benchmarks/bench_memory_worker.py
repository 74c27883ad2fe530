"""Memory of a worker holding many centres through a day, and the time to checkpoint them.

    .venv/bin/python benchmarks/bench_memory_worker.py [--centres 1000] [--calls-per-day 1000]
        [--hours 24] [--batch 8192] [--peak-hour 13] [--tracemalloc [--top 15]]
    .venv/bin/python benchmarks/bench_memory_worker.py --smoke      # 20 centres, 3 hours

One engine (the worker's :class:`~callcost.streams.engine.Engine`, default settings) is fed
a simulated day of ``--centres`` centres, streamed from a file (made once under var/bench/
by a child process, so the simulator's own memory is not in this process) in batches of
``--batch`` messages. All but the first 6 centres are on UTC, so their peaks coincide:
the worst case for one worker. Every simulated hour it records the process RSS, the
numpy and ``array`` buffers the centres hold and (with ``--tracemalloc``) the bytes
traced since the engine was made. At ``--peak-hour`` and at the end it checkpoints every
centre with :func:`callcost.streams.checkpoint.dump` (wall and CPU time, bytes). With
``--tracemalloc``, the top allocation sites at the peak are printed too. RSS is measured
best without ``--tracemalloc`` (tracing costs memory of its own), so run both.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import (
    ROOT,
    START_MS,
    load_average,
    machine,
    peak_rss_bytes,
    rss_bytes,
)
from callcost.replay import _lines
from callcost.streams import checkpoint
from callcost.streams.centre import CentreState
from callcost.streams.config import Settings
from callcost.streams.engine import Engine

HOUR_MS = 3_600_000


def buffer_bytes(st: CentreState) -> tuple[int, int]:
    """(numpy buffers, call-table ``array`` buffers) one centre holds.

    A trimmed array is a view of a longer buffer until the next commit replaces it: the
    whole buffer is what is held, so views count their base, once.
    """
    seen: dict[int, int] = {}
    for v in vars(st).values():
        if isinstance(v, np.ndarray):
            base = v.base if isinstance(v.base, np.ndarray) else v
            seen[id(base)] = base.nbytes
    calls = st.calls
    arr = sum(c.buffer_info()[1] * c.itemsize for c in calls._columns())
    return sum(seen.values()), arr


def make_file(centres: int, calls_per_day: float, hours: int) -> tuple[Path, float]:
    """The day's events as JSONL, made by a child process (cached under var/bench/)."""
    rate = round(calls_per_day / 1440, 3)
    code = (
        "import sys; from benchmarks.common import simulated_file;"
        f" print(simulated_file('worker', {centres}, {rate}, {hours / 24!r}))"
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip()), time.perf_counter() - t0


def checkpoint_all(engine: Engine) -> tuple[float, float, int]:
    """Dump every centre: (wall s, CPU s, bytes)."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for st in engine.centres.values():
        n += len(checkpoint.dump(st, {"offsets": {"0": 123}}))
    return time.perf_counter() - t0, time.process_time() - c0, n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--centres", type=int, default=1000)
    p.add_argument("--calls-per-day", type=float, default=1000)
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--peak-hour", type=int, default=13, help="checkpoint all centres here too")
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--smoke", action="store_true", help="20 centres, 3 hours (< 30 s)")
    a = p.parse_args()
    if a.smoke:
        a.centres, a.hours, a.peak_hour, a.batch = 20, 3, 2, 2000
    path, made_s = make_file(a.centres, a.calls_per_day, a.hours)
    Engine.warm_up()
    gc.collect()
    rss0 = rss_bytes()
    if a.tracemalloc:
        tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0] if a.tracemalloc else 0
    engine = Engine(Settings(), check_key=False)
    n_c = a.centres
    samples: list[dict[str, int]] = []
    ckpts: dict[str, tuple[float, float, int]] = {}
    top: list[tracemalloc.Statistic] = []
    t_run = time.perf_counter()
    n_events = 0

    def sample(hour: int) -> None:
        gc.collect()
        nb = [buffer_bytes(st) for st in engine.centres.values()]
        s = {
            "hour": hour,
            "rss": rss_bytes() - rss0,
            "traced": (tracemalloc.get_traced_memory()[0] - traced0) if a.tracemalloc else 0,
            "numpy": sum(x[0] for x in nb),
            "calls_arr": sum(x[1] for x in nb),
            "calls": sum(len(st.calls) for st in engine.centres.values()),
            "ids": sum(len(st.seen) for st in engine.centres.values()),
            "atoms": sum(len(st.ats) for st in engine.centres.values()),
        }
        samples.append(s)
        if hour in (a.peak_hour, a.hours):
            ckpts[f"hour {hour}"] = checkpoint_all(engine)
            if a.tracemalloc and hour == a.peak_hour:
                snap = tracemalloc.take_snapshot()
                top[:] = snap.statistics("lineno")[: a.top]

    next_hour = 1
    with open(path, "rb") as f:
        batch: list[tuple[None, bytes]] = []
        lines = _lines(f)
        first: CentreState | None = None
        for line in lines:
            batch.append((None, line))
            if len(batch) < a.batch:
                continue
            engine.ingest(batch, publish=False)
            n_events += len(batch)
            batch = []
            if first is None:
                first = next(iter(engine.centres.values()))
            while first.M is not None and START_MS + next_hour * HOUR_MS <= first.M:
                sample(next_hour)
                print(f"hour {next_hour}: {n_events:,} events", file=sys.stderr, flush=True)
                next_hour += 1
        engine.ingest(batch, publish=False)
        n_events += len(batch)
    while next_hour <= a.hours:
        sample(next_hour)
        next_hour += 1
    run_s = time.perf_counter() - t_run
    if a.tracemalloc:
        tracemalloc.stop()
    key = "traced" if a.tracemalloc else "rss"
    # the day's peak: the most traced bytes; without tracing, the most calls and ids kept
    peak = max(samples, key=lambda s: s["traced"] if a.tracemalloc else s["calls"] + s["ids"])
    end = samples[-1]
    print(f"machine: {machine()}; load average at the end: {load_average()}")
    print(
        f"{n_c:,} centres x {a.calls_per_day:,.0f} calls a day, {a.hours} h simulated:"
        f" {n_events:,} events in batches of {a.batch:,}, fed in {run_s:.0f} s"
        f" ({n_events / run_s:,.0f} events/s{', tracemalloc on' if a.tracemalloc else ''});"
        f" input made in {made_s:.0f} s"
    )
    print(f"RSS before the engine (interpreter, numpy, numba kernels): {rss0 / 1e6:.0f} MB")
    for name, s in (("peak", peak), ("end", end)):
        traced = f", traced {s['traced'] / 1e6:,.0f} MB = {s['traced'] / n_c / 1e6:.3f} MB" \
            if a.tracemalloc else ""  # fmt: skip
        print(
            f"{name} (hour {s['hour']:.0f}): RSS +{s['rss'] / 1e6:,.0f} MB ="
            f" {s['rss'] / n_c / 1e6:.3f} MB a centre{traced};"
            f" numpy {s['numpy'] / n_c / 1e3:.0f} kB + call columns"
            f" {s['calls_arr'] / n_c / 1e3:.0f} kB a centre;"
            f" {s['calls'] / n_c:,.0f} calls, {s['ids'] / n_c:,.0f} ids,"
            f" {s['atoms'] / n_c:,.0f} atoms a centre"
        )
    print(f"peak RSS of the process: {peak_rss_bytes() / 1e6:,.0f} MB")
    for name, (secs, cpu_s, nbytes) in ckpts.items():
        print(
            f"checkpoint of all {n_c:,} centres at {name}: {secs:.2f} s, CPU {cpu_s:.2f} s"
            f" ({cpu_s / n_c * 1e3:.2f} ms a centre), {nbytes / 1e6:.1f} MB"
            f" ({nbytes / n_c / 1e3:.1f} kB a centre)"
        )
    print("hourly: " + ", ".join(
        f"{s['hour']:.0f}h {s[key] / n_c / 1e6:.2f}" for s in samples
    ) + f" MB a centre ({key})")  # fmt: skip
    if top:
        total = sum(t.size for t in top)
        print(f"top {len(top)} allocation sites at hour {a.peak_hour} (bytes a centre):")
        for t in top:
            fr = t.traceback[0]
            name = f"{Path(fr.filename).parent.name}/{Path(fr.filename).name}:{fr.lineno}"
            print(f"  {t.size / n_c / 1e3:8.1f} kB  {t.count / n_c:9,.0f} blocks  {name}")
        print(f"  ({total / n_c / 1e3:.0f} kB a centre in these)")


if __name__ == "__main__":
    main()
