"""The baseline of bench_throughput: a plain Faust agent that decodes each event into a
``faust.Record`` and counts it. Nothing else: no validation, no engine, no output.

    python -m benchmarks.faust_baseline --bootstrap HOST:PORT --topic T --events N

Prints one JSON line when it has counted N events: ``{"events", "first_at", "last_at"}``
(wall-clock seconds of the first and the N-th event), then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

import faust


class CallEvent(faust.Record, serializer="json"):
    """SPEC section 1's envelope and fields, as a Faust user would write it."""

    id: str
    type: str
    ts: int
    centre: str
    agent: str | None = None
    team: str | None = None
    call: str | None = None
    queue: str | None = None
    direction: str = "inbound"
    channel: str = "voice"
    outcome: str | None = None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--group", default=f"bench-faust-{uuid.uuid4().hex[:8]}")
    a = p.parse_args()

    app = faust.App(
        a.group,
        broker=f"kafka://{a.bootstrap}",
        datadir=tempfile.mkdtemp(prefix="faust-baseline-"),
        autodiscover=False,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(a.topic, key_type=bytes, value_type=CallEvent)
    state = {"n": 0, "first": 0.0}

    @app.agent(topic)
    async def count(stream: faust.StreamT[CallEvent]) -> None:
        async for ev in stream:
            if not state["n"]:
                state["first"] = time.time()
            if ev.centre:  # touch a field, as any real agent would
                state["n"] += 1
            if state["n"] == a.events:
                print(json.dumps({"events": state["n"], "first_at": state["first"],
                                  "last_at": time.time()}), flush=True)
                os._exit(0)  # the figure is out; no need for a clean Faust shutdown

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


if __name__ == "__main__":
    main()
