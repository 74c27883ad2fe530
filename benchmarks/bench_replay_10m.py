"""`callcost replay` on a file of about 10 million events: events/s and peak memory.

    .venv/bin/python benchmarks/bench_replay_10m.py [--runs 3] [--events 10000000]
        [--profile-events 1000000]
    .venv/bin/python benchmarks/bench_replay_10m.py --smoke     # a small file, one run

The file is the first ``--events`` (10,000,000) events of simulated traffic of ``--centres``
(100) centres at ``--calls-per-day`` (5,000) calls a day each for ``--days`` (4.75) days
(11.5 million events, 1.69 GB, made once under var/bench/ by ``common.simulated_file``,
in 7 min on a loaded machine; the cut, 1.47 GB, is made once beside it).

Each run is the real command in a child process, as a user runs it::

    python -m callcost.cli replay FILE --progress > /dev/null

measured from outside: wall time (start-up, JIT cache load and the JSON output included),
the replay loop's own events/s (from the command's final progress line), the child's CPU
time (user + system: on a shared machine the steadier figure of the work), its peak RSS
(``wait4``) and its RSS sampled every 0.5 s, to show that memory stays bounded while the
file streams through. ``--profile-events N`` then runs the first N events
in-process under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ROOT, load_average, machine, simulated_file
from callcost.replay import _lines, replay
from callcost.streams.config import Settings
from callcost.streams.engine import Engine

FINAL = re.compile(r"replay: ([\d,]+) events in (\S+), ([\d,]+) events/s")


def first_lines(path: Path, n: int) -> Path:
    """The first ``n`` lines of ``path`` as a file of their own, made once beside it."""
    out = path.with_name(f"{path.stem}-first{n}.jsonl")
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    with open(path, "rb") as f, open(tmp, "wb") as g:
        for line in itertools.islice(f, n):
            g.write(line)
    tmp.rename(out)
    return out


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


@dataclass
class Run:
    wall_s: float
    events: int
    loop_rate: int  # events/s of the replay loop, from the command's final progress line
    cpu_s: float  # the child's user + system time: the work, whatever the machine's load
    peak_rss: int
    samples: list[tuple[float, int]]  # (s since start, RSS bytes)


def run_command(path: Path) -> Run:
    """One run of ``callcost replay FILE --progress`` in a child process."""
    cmd = [sys.executable, "-m", "callcost.cli", "replay", str(path), "--progress"]
    with tempfile.TemporaryFile("w+") as err, open(os.devnull, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        samples: list[tuple[float, int]] = []
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            samples.append((time.perf_counter() - t0, rss_of(proc.pid)))
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}):\n{text[-2000:]}")
    finals = list(FINAL.finditer(text))
    if not finals:
        raise SystemExit(f"no final progress line on stderr:\n{text[-2000:]}")
    m = finals[-1]
    return Run(
        wall_s=wall,
        events=int(m.group(1).replace(",", "")),
        loop_rate=int(m.group(3).replace(",", "")),
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss=usage.ru_maxrss * 1024,  # Linux: kB
        samples=[s for s in samples if s[1]],
    )


def profile(path: Path, n_events: int, top: int) -> None:
    Engine.warm_up()
    engine = Engine(Settings(), check_key=False)
    with open(path, "rb") as f:
        lines = itertools.islice(_lines(f), n_events)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        replay(lines, engine, None)
        prof.disable()
        dt = time.perf_counter() - t0
    print(f"profile: the first {n_events:,} events in-process under cProfile, {dt:.1f} s")
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{Path(file).name}:{line}({fn})"))
    print(f"  top {top} by own time (% of {total:.1f} s profiled):")
    for tt, ct, nc, name in sorted(rows, reverse=True)[:top]:
        print(
            f"    {100 * tt / total:5.1f}%  own {tt:7.2f} s  cum {ct:7.2f} s"
            f"  {nc:>10,} calls  {name}"
        )


def summarise(runs: list[Run], n_lines: int) -> None:
    wall = statistics.median(r.wall_s for r in runs)
    loop = statistics.median(r.loop_rate for r in runs)
    peak = statistics.median(r.peak_rss for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    print(
        f"replay: median of {len(runs)}: wall {wall:.1f} s ="
        f" {n_lines / wall:,.0f} events/s end to end;"
        f" replay loop {loop:,.0f} events/s; CPU {cpu:.1f} s ="
        f" {n_lines / cpu:,.0f} events per CPU-second; peak RSS {peak / 1e6:.0f} MB"
    )
    samples = runs[-1].samples
    if samples:
        last_t = samples[-1][0]
        marks = []
        for q in (0.1, 0.25, 0.5, 0.75, 1.0):
            _t, rss = min(samples, key=lambda s: abs(s[0] - q * last_t))
            marks.append(f"{int(100 * q)}% {rss / 1e6:.0f} MB")
        print("RSS over the last run (by time): " + ", ".join(marks))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--centres", type=int, default=100)
    p.add_argument("--calls-per-day", type=float, default=5000)
    p.add_argument("--days", type=float, default=4.75)
    p.add_argument("--events", type=int, default=10_000_000, help="the first N events of it")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--profile-events", type=int, default=0, help="then profile the first N")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--smoke", action="store_true", help="a small file and one run (< 30 s)")
    a = p.parse_args()
    if a.smoke:
        a.centres, a.days, a.runs, a.events = 3, 0.1, 1, 2000
        a.profile_events = min(a.profile_events, 5000) if a.profile_events else 0
    rate = round(a.calls_per_day / 1440, 3)
    t0 = time.perf_counter()
    path = first_lines(simulated_file("replay10m", a.centres, rate, a.days), a.events)
    made_s = time.perf_counter() - t0
    size = path.stat().st_size
    n_lines = count_lines(path)
    print(f"machine: {machine()}; load average before: {load_average()}")
    print(
        f"file: {path.name}: {n_lines:,} events, {size / 1e9:.2f} GB,"
        f" the first of {a.centres} centres x {rate * 1440:,.0f} calls a day x {a.days:g} days"
        + f"; made or found in {made_s:.1f} s"
    )
    runs = []
    for i in range(a.runs):
        r = run_command(path)
        runs.append(r)
        assert r.events == n_lines, (r.events, n_lines)
        print(
            f"  run {i + 1}: wall {r.wall_s:.1f} s, loop {r.loop_rate:,} events/s,"
            f" CPU {r.cpu_s:.1f} s = {n_lines / r.cpu_s:,.0f} events per CPU-second,"
            f" peak RSS {r.peak_rss / 1e6:.0f} MB, load average {load_average()}"
        )
    if runs:
        summarise(runs, n_lines)
    if a.profile_events:
        profile(path, a.profile_events, a.top)


if __name__ == "__main__":
    main()
