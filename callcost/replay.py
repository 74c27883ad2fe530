"""``callcost replay EVENTS.jsonl``: the engine offline, without Kafka.

For backfills, audits and what-if runs on historical logs: the same pure engine as the
worker, fed from a file, printing one JSON document::

    {"rejected": N, "centres": {ID: {"last_instant": MS, "figures": [...], "alerts": [...]}}}
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson

from callcost.streams.config import load_settings
from callcost.streams.engine import Engine

BATCH = 8192


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", help="JSONL file of events, one message value per line; - for stdin")
    p.add_argument("--config", help="TOML configuration (default: $CALLCOST_CONFIG or built-in)")
    p.add_argument(
        "--at",
        type=int,
        nargs="+",
        action="extend",
        metavar="MS",
        help="instants (ms) to report figures at (default: each centre's last instant)",
    )
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress",
        action="store_true",
        help="a progress bar on stderr even when stderr is not a terminal (default: only on one)",
    )
    shown.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


class Progress:
    """A one-line progress bar on a text stream (stderr): events read, %, events/s, ETA.

    Plain text, no library. On a terminal the line is redrawn in place (``\\r``) at most
    every ``interval_s`` (0.25 s); on anything else (``--progress`` into a file or pipe)
    each update is a line of its own, at most once a second. ``%`` and ``ETA`` come from
    the bytes read of ``total_bytes`` and are left out when the size is unknown (a pipe).
    :meth:`finish` ends with one line of the totals.
    """

    BAR = 20

    def __init__(
        self,
        out: IO[str],
        total_bytes: int | None,
        *,
        tty: bool,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.total_bytes = total_bytes if total_bytes else None
        self.tty = tty
        self.interval_s = interval_s if interval_s is not None else (0.25 if tty else 1.0)
        self.clock = clock
        self.start = clock()
        self.last = self.start
        self.width = 0  # of the last line drawn in place, to blank it out

    def update(self, events: int, done_bytes: int) -> None:
        now = self.clock()
        if now - self.last < self.interval_s:
            return
        self.last = now
        self._write(self.line(events, done_bytes, now - self.start))

    def line(self, events: int, done_bytes: int, elapsed_s: float) -> str:
        rate = events / elapsed_s if elapsed_s > 0 else 0.0
        parts = ["replay"]
        if self.total_bytes:
            frac = min(1.0, done_bytes / self.total_bytes)
            fill = int(frac * self.BAR)
            parts.append(f"[{'#' * fill}{'.' * (self.BAR - fill)}] {100 * frac:5.1f}%")
        parts.append(f"{events:,} events")
        parts.append(f"{rate:,.0f} events/s")
        if self.total_bytes:
            if done_bytes > 0 and elapsed_s > 0:
                left_s = (self.total_bytes - done_bytes) / (done_bytes / elapsed_s)
                parts.append(f"ETA {_duration(max(0.0, left_s))}")
            else:
                parts.append("ETA --")
        return "  ".join(parts)

    def finish(self, events: int) -> None:
        elapsed_s = self.clock() - self.start
        rate = events / elapsed_s if elapsed_s > 0 else 0.0
        self._write(
            f"replay: {events:,} events in {_duration(elapsed_s)}, {rate:,.0f} events/s",
            final=True,
        )

    def _write(self, text: str, final: bool = False) -> None:
        if self.tty:
            pad = " " * max(0, self.width - len(text))
            self.width = 0 if final else len(text)
            self.out.write(f"\r{text}{pad}" + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


def _duration(s: float) -> str:
    """12.3s, 4m05s, 1h02m."""
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s + 0.5), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    """The non-blank lines of ``f``, streamed, without their line ends."""
    for line in f:
        line = line.rstrip(b"\r\n")
        if line and not line.isspace():  # as line.strip(), without a copy of each line
            yield line


def replay(
    lines: Iterator[bytes],
    engine: Engine,
    at: list[int] | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    rejected = 0
    alerts: dict[str, list[dict[str, Any]]] = {}
    snapshots: dict[str, list[dict[str, Any]]] = {}
    batch: list[tuple[None, bytes]] = []
    seen_bytes = 0
    n = 0

    def flush() -> None:
        nonlocal rejected
        out = engine.ingest(batch, publish=False)
        rejected += len(out.rejects)
        for a in out.alerts:
            alerts.setdefault(a["centre"], []).append(a)
        for s in out.snapshots:
            snapshots.setdefault(s["centre"], []).extend(s["figures"])
        batch.clear()

    for line in lines:
        batch.append((None, line))
        seen_bytes += len(line) + 1
        n += 1
        if len(batch) >= BATCH:
            flush()
            if progress is not None:
                progress.update(n, seen_bytes)
    if batch:
        flush()
    if progress is not None:
        progress.finish(n)
    centres: dict[str, Any] = {}
    for cid, st in sorted(engine.centres.items()):
        if st.M is None:
            continue
        if at:
            figures = [f for f in snapshots.get(cid, []) if f["as_of"] <= st.M]
        else:
            figures = st.figures_at_M(all_windows=False)
        centres[cid] = {"last_instant": st.M, "figures": figures, "alerts": alerts.get(cid, [])}
    return {"rejected": rejected, "centres": centres}


def _size(f: IO[bytes]) -> int | None:
    """The size of a regular file (stdin redirected from one too); None for a pipe."""
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) and st.st_size > 0 else None


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    at = sorted(set(args.at or []))
    engine = Engine(settings, check_key=False, snapshot_at=at)
    engine.warm_up()
    tty = sys.stderr.isatty()
    show = not args.quiet and (args.progress or tty)
    if args.events == "-":
        f = sys.stdin.buffer
        progress = Progress(sys.stderr, _size(f), tty=tty) if show else None
        doc = replay(_lines(f), engine, at, progress)
    else:
        with open(args.events, "rb") as f:
            progress = Progress(sys.stderr, _size(f), tty=tty) if show else None
            doc = replay(_lines(f), engine, at, progress)
    sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")
    return 0
