"""`callcost replay` speed: a simulated week of one centre, every instant evaluated.

    .venv/bin/python benchmarks/bench_replay.py [--calls-per-day 830] [--days 7] [--runs 5]
    .venv/bin/python benchmarks/bench_replay.py --smoke     # half a day, one run (< 30 s)

The engine runs in-process, after the kernels are compiled (warm-up excluded), with
4 windows (15m, 1h, 8h, today) and the 4 scopes; median of ``--runs``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import machine, simulated_file
from callcost.replay import _lines, replay
from callcost.streams.config import Settings, StreamSettings
from callcost.streams.engine import Engine


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls-per-day", type=float, default=830)
    p.add_argument("--days", type=float, default=7)
    p.add_argument("--centres", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="half a day, one run (< 30 s)")
    a = p.parse_args()
    if a.smoke:
        a.days, a.runs = 0.5, 1
    path = simulated_file("replay", a.centres, round(a.calls_per_day / 1440, 3), a.days)
    with open(path, "rb") as f:
        lines = list(_lines(f))
    settings = Settings(stream=StreamSettings(windows=("15m", "1h", "8h", "today")))
    Engine.warm_up()
    times = []
    for _ in range(a.runs):
        engine = Engine(settings, check_key=False)
        t0 = time.perf_counter()
        doc = replay(iter(lines), engine, None)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    instants = sum((st.M - st.min_ts) // 1000 for st in engine.centres.values() if st.M)
    alerts = sum(len(c["alerts"]) for c in doc["centres"].values())
    print(f"machine: {machine()}")
    print(
        f"{len(lines):,} events, {a.centres} centre(s), {a.days:g} days, {instants:,} instants"
        f" evaluated, 4 windows, 4 scopes, {alerts} alerts"
    )
    print(
        f"replay: median {med:.3f} s of {a.runs} (min {min(times):.3f}, max {max(times):.3f});"
        f" {len(lines) / med:,.0f} events/s"
    )


if __name__ == "__main__":
    main()
