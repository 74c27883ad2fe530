"""The pages' test stack: a worker and a gateway as subprocesses on topics of their own,
fed the ``sim-2h`` vector up to a chosen instant (the browser tests and docs/screenshots.py)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.processes import check_running, kill, spawn, stop
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
VECTOR = ROOT / "tests" / "vectors" / "sim-2h"

CENTRE = "prg"
LATENESS_MS = 5000
#: an instant of the vector where the 15m tiles are ok, below and too few, and three
#: alerts fire (expected.json lists the figures at it)
CUT = 1768471200000
TZ = "Europe/Prague"  # the vector's time zone (tests/vectors/sim-2h/callcost.toml)


class Stack:
    """Topics of its own on a running broker, ``callcost worker`` and ``callcost
    gateway`` as subprocesses (logs in ``workdir``), and the ``sim-2h`` vector."""

    def __init__(self, bootstrap: str, topics: dict[str, str], workdir: Path, port: int) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.workdir = workdir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.worker: subprocess.Popen | None = None
        self.gateway: subprocess.Popen | None = None
        self.gateway_starts = 0
        self.events = [
            line for line in (VECTOR / "events.jsonl").read_bytes().splitlines() if line.strip()
        ]
        self.last_instant = json.loads((VECTOR / "expected.json").read_text())["centres"][CENTRE][
            "last_instant"
        ]
        self._producer: Any = None
        self.sent = 0  # lines of the vector produced so far

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        return spawn(args, self.workdir / f"{name}.log", append=True)  # one log across restarts

    def start_worker(self) -> None:
        t = self.topics
        self.worker = self._spawn("worker", [
            "worker", "--bootstrap", self.bootstrap, "--config", str(VECTOR / "callcost.toml"),
            "--group", f"test-pages-{uuid.uuid4().hex[:8]}",
            "--data-dir", str(self.workdir / "worker-data"), "--batch-ms", "50",
            "--events-topic", t["call-events"], "--figures-topic", t["cost-figures"],
            "--alerts-topic", t["cost-alerts"], "--dlq-topic", t["call-events-dlq"],
            "--checkpoints-topic", t["callcost-checkpoints"],
        ])  # fmt: skip

    def start_gateway(self) -> None:
        """Start the gateway on ``port`` and wait until it has read its topics."""
        t = self.topics
        self.gateway_starts += 1
        self.gateway = self._spawn("gateway", [
            "gateway", "--bootstrap", self.bootstrap, "--port", str(self.port),
            "--config", str(VECTOR / "callcost.toml"),
            "--figures-topic", t["cost-figures"], "--alerts-topic", t["cost-alerts"],
            "--control-topic", t["callcost-control"],
        ])  # fmt: skip
        wait_for(self._healthy, 30, "the gateway's /healthz")

    def _healthy(self) -> bool:
        self.check_alive()
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def kill_gateway(self) -> None:
        """SIGKILL: the gateway dies without closing its websockets."""
        assert self.gateway is not None
        kill(self.gateway)
        self.gateway = None

    def check_alive(self) -> None:
        check_running(p for p in (self.worker, self.gateway) if p is not None)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
        for proc in (self.gateway, self.worker):
            if proc is not None:
                stop(proc, timeout_s=20)

    # ------------------------------------------------------------------ Kafka

    def produce(self, lines: list[bytes]) -> None:
        from kafka import KafkaProducer

        from callcost.produce import messages

        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", linger_ms=5
            )
        futures = [
            self._producer.send(self.topics["call-events"], key=k, value=v)
            for k, v in messages(lines)
        ]
        self._producer.flush()
        for f in futures:
            f.get(timeout=30)

    def _first_ts(self) -> int:
        for line in self.events:
            try:
                ts = json.loads(line).get("ts")
            except (ValueError, AttributeError):
                continue
            if isinstance(ts, int):
                return ts
        raise ValueError("no event")

    def cut(self, instant: int) -> int:
        """How many lines of the vector take the watermark to ``instant``: the first line
        whose ``ts`` reaches ``instant`` + 5 s (``lateness_ms``) is the last. (Exactly to
        ``instant`` when that line's ``ts`` is within the next second, as for CUT.)"""
        top = 0
        for i, line in enumerate(self.events):
            try:
                ts = json.loads(line).get("ts")
            except (ValueError, AttributeError):
                continue
            if isinstance(ts, int) and ts > top:
                top = ts
                if top >= instant + LATENESS_MS:
                    return i + 1
        raise ValueError(f"the vector never reaches {instant}")

    def produce_vector(
        self, until: int | None = None, chunks: int = 1, pause_s: float = 0.0
    ) -> int:
        """Produce the vector from where the last call stopped up to the instant ``until``
        (default: the end), in ``chunks`` parts ``pause_s`` apart, so that open pages see
        a series of updates; the first part of a run waits for the first figures. Returns
        when the gateway serves the instant reached, which it returns."""
        end = len(self.events) if until is None else self.cut(until)
        if self.sent == 0:  # the first minute at once: the worker's first figures
            first = self.cut(self._first_ts() // 1000 * 1000 + 60_000)
            self.produce(self.events[:first])
            self.sent = first
            wait_for(lambda: self.figures(), 60, "the first figures")
        lines = self.events[self.sent : end]
        size = max(1, -(-len(lines) // chunks))
        for i in range(0, len(lines), size):
            if i and pause_s:
                time.sleep(pause_s)
            self.produce(lines[i : i + size])
        self.sent = max(self.sent, end)
        instant = self.last_instant if until is None else until
        self.wait_for_as_of(instant)
        return instant

    def wait_for_as_of(self, as_of: int, timeout: float = 60) -> None:
        def there() -> bool:
            self.check_alive()
            figs = self.figures()
            return bool(figs) and all(f["as_of"] == as_of for f in figs)

        wait_for(there, timeout, f"as_of {as_of} in /api/figures")

    # ------------------------------------------------------------------ HTTP

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=5) as r:
            return json.loads(r.read())

    def figures(self, **query: str) -> list[dict]:
        q = "&".join(f"{k}={v}" for k, v in {"centre": CENTRE, **query}.items())
        try:
            return self.get(f"/api/figures?{q}")["figures"]
        except OSError:
            return []


def view_url(st: Stack, name: str, query: str = "") -> str:
    """The gateway's route for a view (/wallboard, ...) when it has one, else the file."""
    try:
        with urllib.request.urlopen(f"{st.base}/{name}", timeout=5) as r:
            path = f"/{name}" if r.status == 200 else f"/static/{name}.html"
    except urllib.error.HTTPError:
        path = f"/static/{name}.html"
    return st.base + path + (f"?{query}" if query else "")
