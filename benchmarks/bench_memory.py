"""Engine state per centre: bytes held through a simulated day, at its peak and its end.

    .venv/bin/python benchmarks/bench_memory.py [--calls-per-day 5000] [--days 2] [--centres 1]
    .venv/bin/python benchmarks/bench_memory.py --smoke     # 6 simulated hours (< 30 s)

Feeds simulated traffic through the engine hour by hour (publishing off) and measures
with tracemalloc what the engine holds: everything allocated since it was made and still
alive (numpy buffers included: numpy reports them to tracemalloc), less the input, which
is made before tracing starts. It measures after every simulated hour of the last day and
reports the peak hour and the end, per centre, and what the parts of one centre hold.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import START_MS, machine
from callcost.streams.centre import CentreState
from callcost.streams.config import Settings
from callcost.streams.engine import Engine
from callcost.streams.simulation import Simulator


def array_bytes(st: CentreState) -> int:
    """The numpy buffers one centre holds; a trimmed array is a view that holds its base."""
    bases: dict[int, int] = {}
    for v in vars(st).values():
        if isinstance(v, np.ndarray):
            base = v.base if isinstance(v.base, np.ndarray) else v
            bases[id(base)] = base.nbytes
    return sum(bases.values())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls-per-day", type=float, default=5000)
    p.add_argument("--days", type=float, default=2.0)
    p.add_argument("--centres", type=int, default=1)
    p.add_argument("--top", type=int, default=0, help="the top allocation sites at the peak")
    p.add_argument("--smoke", action="store_true", help="6 simulated hours (< 30 s)")
    a = p.parse_args()
    if a.smoke:
        a.days = 0.25
    Engine.warm_up()
    sim = Simulator(seed=11, centres=a.centres, rate=a.calls_per_day / 1440, start_ms=START_MS)
    hours = []
    t = START_MS
    for _ in range(int(a.days * 24)):
        t += 3_600_000
        hours.append([(None, orjson.dumps(e)) for e in sim.events_until(t)])
    n_events = sum(len(h) for h in hours)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    engine = Engine(Settings(), check_key=False)
    held: list[tuple[int, int]] = []  # (hour, bytes) through the last simulated day
    top: list[tracemalloc.Statistic] = []
    for i, h in enumerate(hours):
        engine.ingest(h, publish=False)
        if i >= len(hours) - 24:
            gc.collect()
            held.append((i + 1, tracemalloc.get_traced_memory()[0] - base))
            if a.top and held[-1][1] == max(b for _, b in held):
                top = tracemalloc.take_snapshot().statistics("lineno")[: a.top]
    tracemalloc.stop()
    st = next(iter(engine.centres.values()))
    last = hours[-24:]
    offered = sum(1 for h in last for _, v in h if b'"call.offered"' in v)
    calls_per_day = offered * 24 / len(last) / a.centres
    peak_h, peak = max(held, key=lambda x: x[1])
    end_h, end = held[-1]
    n = a.centres
    print(f"machine: {machine()}")
    print(
        f"{n} centre(s), {a.days:g} simulated days, {n_events:,} events,"
        f" {calls_per_day:,.0f} calls a day a centre; windows 15m, 1h, today; default rules"
    )
    print(
        f"engine state, peak of the last day (hour {peak_h % 24} UTC):"
        f" {peak / n / 1e6:.3f} MB a centre ({peak / 1e6:.2f} MB in all)"
    )
    print(
        f"engine state at the end (hour {end_h % 24} UTC):"
        f" {end / n / 1e6:.3f} MB a centre ({end / 1e6:.2f} MB in all)"
    )
    print(
        "hourly (UTC): "
        + ", ".join(f"{h % 24}h {b / n / 1e6:.2f}" for h, b in held)
        + " MB a centre"
    )
    print(
        f"one centre at the end: {len(st.calls):,} calls kept"
        f" (call table {st.calls.nbytes() / 1e6:.2f} MB), {len(st.ats):,} booked atoms and"
        f" {len(st.sts):,} session points ({array_bytes(st) / 1e3:.0f} kB of numpy buffers),"
        f" {len(st.seen):,} ids remembered, {len(st.agents):,} agents, {len(st.keys)} keys"
    )

    if top:
        print(f"top {len(top)} allocation sites at the peak (the input is not traced):")
        for site in top:
            fr = site.traceback[0]
            where = f"{Path(fr.filename).parent.name}/{Path(fr.filename).name}:{fr.lineno}"
            print(f"  {site.size / n / 1e3:8.1f} kB  {site.count / n:8,.0f} blocks  {where}")


if __name__ == "__main__":
    main()
