"""Engine state per centre: bytes held after a simulated day, steady state.

    .venv/bin/python benchmarks/bench_memory.py [--calls-per-day 5000] [--days 2] [--centres 1]

Feeds simulated traffic through the engine hour by hour (publishing off), then measures
with tracemalloc what the engine holds: everything allocated while it ran and still
alive, less the input. Reports bytes per centre, and what the parts hold.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import START_MS, machine
from callcost.streams.config import Settings
from callcost.streams.engine import Engine
from callcost.streams.simulation import Simulator


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls-per-day", type=float, default=5000)
    p.add_argument("--days", type=float, default=2.0)
    p.add_argument("--centres", type=int, default=1)
    a = p.parse_args()
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
    for h in hours:
        engine.ingest(h, publish=False)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    st = next(iter(engine.centres.values()))
    calls_per_day = sum(1 for h in hours[-24:] for _, v in h if b'"call.offered"' in v) / a.centres
    print(f"machine: {machine()}")
    print(
        f"{a.centres} centre(s), {a.days:g} simulated days, {n_events:,} events,"
        f" {calls_per_day:,.0f} calls a day a centre; windows 15m, 1h, today; default rules"
    )
    print(f"engine state: {held / 1e6:.2f} MB in all, {held / a.centres / 1e6:.3f} MB a centre")
    arrays = sum(
        x.nbytes
        for x in (st.ats, st.acb, st.avi, st.aamt, st.sts, st.scls, st.sdel, st.C, st.Ct)
    )
    print(
        f"one centre: {len(st.calls):,} calls kept (call table {st.calls.nbytes() / 1e6:.2f} MB),"
        f" {len(st.ats):,} booked atoms and {len(st.sts):,} session points"
        f" ({arrays / 1e3:.0f} kB of arrays), {len(st.seen):,} ids remembered,"
        f" {len(st.agents):,} agents, {len(st.keys)} keys"
    )


if __name__ == "__main__":
    main()
