"""The live benchmarks run, in their ``--smoke`` mode, on the test broker.

They assert only that the benchmark produced its figures and that they are sane (counts
above zero, percentiles in order, no update for an instant that was never produced);
never a timing: speed is measured by hand (BENCHMARKS.md), not in the test suite.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callcost.errors import EventError
from callcost.streams.config import Settings
from callcost.streams.events import Event, parse
from tests.reference import Reference, figure_diffs

ROOT = Path(__file__).resolve().parent.parent


def run_bench(module: str, bootstrap: str, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--bootstrap", bootstrap,
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted(tmp_path.glob("run-1/*.log")))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{logs}"
    return proc.stdout


def latency_figures(line: str) -> tuple[list[float], int]:
    m = re.search(r"p50 ([\d.]+) ms, p90 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms "
                  r"\(([\d,]+) samples\)", line)
    assert m, line
    return [float(m.group(i)) for i in range(1, 5)], int(m.group(5).replace(",", ""))


def test_bench_latency_smoke(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = run_bench("benchmarks.bench_latency", kafka_bootstrap, tmp_path)
    run = next(line for line in out.splitlines() if line.startswith("run 1:"))
    (p50, p90, p99, top), samples = latency_figures(run)
    assert samples > 0
    assert 0 < p50 <= p90 <= p99 <= top, run
    sent = int(re.search(r"\(([\d,]+) sent\)", run).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert sent > 1000, run  # 500 events/s for well over 2 s
    assert "unmatched updates 0" in run, run
    final, delivered = (int(x.replace(",", "")) for x in re.search(
        r"window ([\d,]+), delivered as an as_of ([\d,]+)", run).groups())  # type: ignore[union-attr]
    assert 0 < delivered <= final, run
    cpu = re.search(r"worker CPU (\d+)%, gateway CPU (\d+)%", run)
    assert cpu and int(cpu.group(1)) > 0, run


def test_bench_fanout_smoke(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = run_bench("benchmarks.bench_fanout", kafka_bootstrap, tmp_path)
    run = next(line for line in out.splitlines() if line.startswith("run 1:"))
    (p50, p90, p99, top), samples = latency_figures(run)
    assert samples > 0
    assert 0 < p50 <= p90 <= p99 <= top, run
    frames = re.search(r"([\d,]+) frames in the window \(\d+/s, expected ([\d,]+)\) of "
                       r"([\d,]+) bytes \((\d+) figures\)", run)
    assert frames, run
    got, expected, size, figures = (int(g.replace(",", "")) for g in frames.groups())
    assert got > 0 and expected > 0 and size > 1000 and figures > 0, run
    assert "20 connections" in run, run  # every smoke client connected
    assert "unmatched 0" in run, run
    assert re.search(r"[\d.]+ µs per frame", run), run


# ---------------------------------------------------------------- offline benchmarks
# (no broker): kernels, replay, memory. Inputs go to a tmp dir (CALLCOST_BENCH_DATA).


def smoke(script: str, tmp_path: Path) -> str:
    """Run ``benchmarks/SCRIPT --smoke`` with its generated inputs under ``tmp_path``."""
    env = {**os.environ, "CALLCOST_BENCH_DATA": str(tmp_path / "bench")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("machine: ")
    return proc.stdout


def number(pattern: str, text: str) -> float:
    """The first group of ``pattern`` in ``text``, as a finite number (commas allowed)."""
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in:\n{text}"
    x = float(m.group(1).replace(",", ""))
    assert math.isfinite(x)
    return x


def test_bench_kernel_smoke(tmp_path: Path) -> None:
    out = smoke("bench_kernel.py", tmp_path)
    assert number(r"([\d,]+) booked events in any order", out) == 20_000
    for part in ("compress", "sweep", "kernels together"):
        assert number(rf"{part}: .*?([\d.]+) ns per booked event", out) > 0
    assert number(r"speed-up x([\d,]+)", out) > 0


def test_bench_replay_smoke(tmp_path: Path) -> None:
    out = smoke("bench_replay.py", tmp_path)
    events = number(r"([\d,]+) events, 1 centre", out)
    instants = number(r"([\d,]+) instants evaluated", out)
    assert events > 100
    assert 0 < instants <= 43_200  # half a day of instants at most
    assert number(r"replay: median ([\d.]+) s of 1", out) > 0
    assert number(r"([\d,]+) events/s", out) > 0


def test_bench_memory_smoke(tmp_path: Path) -> None:
    out = smoke("bench_memory.py", tmp_path)
    assert number(r"([\d,]+) events", out) > 100
    peak = number(r"peak of the last day .*?: ([\d.]+) MB a centre", out)
    end = number(r"at the end .*?: ([\d.]+) MB a centre", out)
    assert 0 < end <= peak < 100
    assert len(re.findall(r"\d+h [\d.]+", out.split("hourly")[1])) == 6  # 6 hours sampled
    assert number(r"([\d,]+) calls kept", out) > 0
    assert number(r"([\d,]+) ids remembered", out) > 0


def test_bench_memory_worker_smoke(tmp_path: Path) -> None:
    out = smoke("bench_memory_worker.py", tmp_path)
    assert out.splitlines()[1].startswith("20 centres x 1,000 calls a day, 3 h simulated")
    assert number(r"([\d,]+) events in batches", out) > 1000
    for part in ("peak", "end"):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{part} (hour"))
        assert number(r"numpy (\d+) kB", line) > 0
        assert number(r"call columns (\d+) kB", line) > 0
        assert number(r"([\d,]+) calls,", line) > 0
        assert number(r"= ([\d.]+) MB a centre", line) >= 0  # RSS may not move for 20 centres
    assert number(r"peak RSS of the process: ([\d,]+) MB", out) > 10
    ckpts = [ln for ln in out.splitlines() if ln.startswith("checkpoint of all 20 centres")]
    assert len(ckpts) == 2  # at --peak-hour and at the end
    for ln in ckpts:
        assert number(r"\(([\d.]+) kB a centre\)", ln) > 1  # a checkpoint is not empty
    assert len(re.findall(r"\d+h [\d.]+", out.split("hourly: ")[1])) == 3


def test_bench_replay_10m_smoke(tmp_path: Path) -> None:
    out = smoke("bench_replay_10m.py", tmp_path)
    assert number(r"file: \S+: ([\d,]+) events", out) == 2000
    # the real command ran to the end and said so on stderr (its final progress line)
    assert number(r"run 1: wall ([\d.]+) s", out) > 0
    assert number(r"loop ([\d,]+) events/s", out) > 0
    assert number(r"peak RSS ([\d,]+) MB", out) > 10
    assert "RSS over the last run" in out


@pytest.mark.parametrize(
    "script",
    ["bench_kernel.py", "bench_replay.py", "bench_memory.py", "bench_memory_worker.py",
     "bench_replay_10m.py"],
)  # fmt: skip
def test_every_benchmark_documents_its_smoke_mode(script: str) -> None:
    text = (ROOT / "benchmarks" / script).read_text()
    assert f"benchmarks/{script} --smoke" in text


def reference_mismatches(data: Path, n: int, centres: int) -> list[str]:
    """The benchmark's expected final figures of its first ``n`` events (made by the engine
    in its process, kept under ``data``) against tests/reference.py on the same events."""
    (events_file,) = data.glob(f"throughput-c{centres}-*.jsonl")
    (finals_file,) = data.glob(f"throughput-n{n}-c{centres}.expected.json")
    finals: dict[str, Any] = json.loads(finals_file.read_text())
    events: list[Event] = []
    with events_file.open("rb") as f:
        for _, line in zip(range(n), f, strict=False):
            with contextlib.suppress(EventError):  # a simulated stream has none
                events.append(parse(None, line.rstrip(b"\n"), check_key=False))
    ref = Reference(events, Settings())
    assert sorted(finals) == ref.centres and len(ref.centres) == centres
    bad = []
    for centre, message in finals.items():
        T = message["as_of"]
        assert ref.last_instant(centre) == T, centre
        got = {(f["scope"], f["key"], f["window"]): f for f in message["figures"]}
        want = ref.figures(centre, T, sorted({w for _, _, w in got}))
        assert got and want
        for k in sorted(set(got) | set(want)):
            bad += [f"{centre} {k}: reference vs benchmark {d}"
                    for d in figure_diffs(want.get(k), got.get(k), k[0])]
    return bad


def test_bench_throughput_smoke(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every variant runs on the test broker, and each worker's final figures equal the
    expected ones, which the test checks against tests/reference.py: the benchmark refuses
    a run whose figures differ from the engine's in its process, so a wrong engine would
    pass it alone. Its inputs and expected figures go to a tmp dir, made afresh."""
    data = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_throughput", "--smoke",
         "--bootstrap", kafka_bootstrap],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "CALLCOST_BENCH_DATA": str(data)},
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    for n in (5_000, 20_000):  # the prefix the slow variants read, and the whole
        assert reference_mismatches(data, n, 5) == [], n
    rates = {}
    for m in re.finditer(r"^(\S+) +([\d,]+) events: median +([\d,]+) events/s",
                         proc.stdout, re.M):
        rates[m.group(1), int(m.group(2).replace(",", ""))] = int(m.group(3).replace(",", ""))
    assert {v for v, _n in rates} == {"faust-record", "worker-faust", "worker-batch",
                                       "aiokafka-raw"}, proc.stdout
    assert all(r > 0 for r in rates.values()), rates
    assert ("worker-batch", 20_000) in rates and ("worker-batch", 5_000) in rates
    assert "worker-batch / faust-record on the same 5,000 events" in proc.stdout
