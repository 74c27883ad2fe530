"""``callcost replay EVENTS.jsonl``: the engine offline, without Kafka.

For backfills, audits and what-if runs on historical logs: the same pure engine as the
worker, fed from a file, printing one JSON document::

    {"rejected": N, "centres": {ID: {"last_instant": MS, "figures": [...], "alerts": [...]}}}
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
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
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    for line in f:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def replay(
    lines: Iterator[bytes],
    engine: Engine,
    at: list[int] | None,
    progress: IO[str] | None = None,
    total_bytes: int | None = None,
) -> dict[str, Any]:
    rejected = 0
    alerts: dict[str, list[dict[str, Any]]] = {}
    snapshots: dict[str, list[dict[str, Any]]] = {}
    batch: list[tuple[None, bytes]] = []
    seen_bytes = 0
    start = time.monotonic()
    last_report = start
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
            now = time.monotonic()
            if progress is not None and now - last_report >= 1.0:
                last_report = now
                rate = n / (now - start)
                pct = f" {100 * seen_bytes / total_bytes:5.1f}%" if total_bytes else ""
                print(f"\rreplay:{pct} {n:,} events, {rate:,.0f}/s", end="", file=progress)
    if batch:
        flush()
    if progress is not None and n >= BATCH:
        print(f"\rreplay: {n:,} events in {time.monotonic() - start:.1f} s", file=progress)
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


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    at = sorted(set(args.at or []))
    engine = Engine(settings, check_key=False, snapshot_at=at)
    engine.warm_up()
    progress = None if args.quiet else sys.stderr
    if args.events == "-":
        doc = replay(_lines(sys.stdin.buffer), engine, at, progress)
    else:
        with open(args.events, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            doc = replay(_lines(f), engine, at, progress, size)
    sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")
    return 0
