"""The progress bar of `callcost replay`: its format, its throttle, where it goes, its end."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys

from callcost.replay import BATCH, Progress, _duration, replay
from callcost.streams.config import Settings
from callcost.streams.engine import Engine
from tests.vectorcheck import VECTORS

EDGE = VECTORS / "edge"
FINAL = re.compile(r"^replay: ([\d,]+) events in \S+, [\d,]+ events/s$")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_bar_line_has_events_percent_rate_and_eta() -> None:
    clock = Clock()
    p = Progress(io.StringIO(), 1000, tty=True, clock=clock)
    line = p.line(12_345, 250, 10.0)
    assert line == (
        "replay  [#####...............]  25.0%  12,345 events  1,234 events/s  ETA 30.0s"
    )
    assert p.line(5, 1000, 200.0).endswith("100.0%  5 events  0 events/s  ETA 0.0s")
    assert "ETA --" in p.line(0, 0, 0.0)


def test_without_a_size_there_is_no_percent_nor_eta() -> None:
    p = Progress(io.StringIO(), None, tty=True, clock=Clock())
    assert p.line(8192, 123_456, 2.0) == "replay  8,192 events  4,096 events/s"


def test_durations() -> None:
    assert [_duration(s) for s in (0, 12.34, 59.9, 65, 3599, 3600, 7322)] == [
        "0.0s", "12.3s", "59.9s", "1m05s", "59m59s", "1h00m", "2h02m",
    ]  # fmt: skip


def test_tty_redraws_in_place_at_most_every_interval_and_ends_with_a_line() -> None:
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, 10_000, tty=True, clock=clock)
    assert p.interval_s == 0.25
    clock.t += 0.1
    p.update(100, 100)  # too soon: nothing drawn
    assert out.getvalue() == ""
    clock.t += 0.2
    p.update(300, 3000)
    first = out.getvalue()
    assert first.startswith("\rreplay  [######..............]  30.0%  300 events")
    assert "\n" not in first
    clock.t += 0.1
    p.update(400, 4000)  # 0.1 s after the last one: skipped
    assert out.getvalue() == first
    clock.t += 0.7
    p.finish(1_000)
    end = out.getvalue()[len(first) :]
    assert end.startswith("\rreplay: 1,000 events in 1.1s, 909 events/s")
    assert end.endswith("\n")
    # the final line blanks out what is left of the longer bar before it
    assert len(end) - 2 >= len(first) - 1


def test_not_a_tty_writes_whole_lines_once_a_second() -> None:
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, None, tty=False, clock=clock)
    for _ in range(10):
        clock.t += 0.3
        p.update(10, 10)
    p.finish(10)
    lines = out.getvalue().split("\n")
    assert lines[-1] == ""
    assert "\r" not in out.getvalue()
    assert len(lines) - 2 == 2  # updates at 1.2 s and 2.4 s (interval 1 s), then the final
    assert FINAL.match(lines[-2])


def test_replay_updates_after_each_batch_and_counts_every_line() -> None:
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, None, tty=False, interval_s=0.0, clock=clock)
    n = 2 * BATCH + 5
    doc = replay(iter([b"[]"] * n), Engine(Settings(), check_key=False), None, p)
    assert doc["rejected"] == n
    lines = out.getvalue().splitlines()
    assert [ln.split("  ")[1] for ln in lines[:-1]] == [
        f"{BATCH:,} events",
        f"{2 * BATCH:,} events",
    ]
    m = FINAL.match(lines[-1])
    assert m and m.group(1) == f"{n:,}"


def _replay_cmd(*extra: str) -> list[str]:
    return [
        sys.executable, "-m", "callcost.cli", "replay", str(EDGE / "events.jsonl"),
        "--config", str(EDGE / "callcost.toml"), *extra,
    ]  # fmt: skip


def test_progress_goes_to_stderr_and_stdout_stays_json() -> None:
    n = sum(1 for ln in (EDGE / "events.jsonl").read_bytes().splitlines() if ln.strip())
    proc = subprocess.run(_replay_cmd("--progress"), capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)  # nothing but the document on stdout
    assert doc["rejected"] == 3
    last = proc.stderr.splitlines()[-1]
    m = FINAL.match(last)
    assert m, proc.stderr
    assert m.group(1) == f"{n:,}"


def test_off_by_default_when_stderr_is_not_a_terminal_and_with_quiet() -> None:
    plain = subprocess.run(_replay_cmd(), capture_output=True, text=True, check=True)
    assert plain.stderr == ""
    json.loads(plain.stdout)
    quiet = subprocess.run(_replay_cmd("--quiet"), capture_output=True, text=True, check=True)
    assert quiet.stderr == ""


def test_on_by_default_when_stderr_is_a_terminal() -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            _replay_cmd(), stdout=subprocess.PIPE, stderr=slave, check=True, timeout=120
        )
        os.close(slave)
        slave = -1
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    json.loads(proc.stdout)
    text = err.decode()
    assert text.startswith("\rreplay: ")  # drawn in place
    assert FINAL.match(text.strip())
