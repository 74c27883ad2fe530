"""Shared helpers for the benchmarks: data generation and timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from callcost.streams.simulation import Simulator

ROOT = Path(__file__).resolve().parent.parent
#: where generated inputs are kept; CALLCOST_BENCH_DATA moves it (the smoke tests use a tmp dir)
DATA = Path(os.environ.get("CALLCOST_BENCH_DATA") or ROOT / "var" / "bench")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def simulated_file(name: str, centres: int, rate: float, days: float, seed: int = 1) -> Path:
    """Simulated traffic as JSONL, made once and kept under var/bench/."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{name}-c{centres}-r{rate}-d{days}-s{seed}.jsonl"
    if path.exists():
        return path
    sim = Simulator(seed=seed, centres=centres, rate=rate, start_ms=START_MS)
    tmp = path.with_suffix(".tmp")
    end = START_MS + int(days * 86_400_000)
    with open(tmp, "wb") as f:
        t = START_MS
        while t < end:
            t = min(end, t + 3_600_000)
            for ev in sim.events_until(t):
                f.write(orjson.dumps(ev) + b"\n")
    tmp.rename(path)
    return path


def rss_bytes() -> int:
    """The process's resident set size now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports ru_maxrss in kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def median_time(fn: Callable[[], object], runs: int = 5) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times
