"""Every vector live: Kafka in, the worker and the gateway as subprocesses, figures out of
``/api/figures`` and alerts out of ``/api/alerts``, equal to ``expected.json`` at each
centre's last instant."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcost.produce import send
from tests.test_worker import log_tail, worker  # noqa: F401  (the worker fixture)
from tests.vectorcheck import NAMES, VECTORS, alert_mismatches, expected, figure_mismatches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(bootstrap: str, names: dict[str, str], log_path: Path) -> tuple:
    """``callcost gateway`` on a free port, on these topics: (process, base URL)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "callcost.cli", "gateway",
        "--bootstrap", bootstrap, "--port", str(port),
        "--figures-topic", names["cost-figures"],
        "--alerts-topic", names["cost-alerts"],
        "--control-topic", names["callcost-control"],
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = str(log_path)  # type: ignore[attr-defined]
    return proc, f"http://127.0.0.1:{port}"


def stop_gateway(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def gateway(kafka_bootstrap: str, kafka_topics: dict[str, str], tmp_path: Path) -> Iterator:
    proc, base = start_gateway(kafka_bootstrap, kafka_topics, tmp_path / "gateway.log")
    yield proc, base
    stop_gateway(proc)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("name", NAMES)
def test_vector_live(
    name: str, kafka_bootstrap: str, kafka_topics: dict[str, str], worker, gateway  # noqa: F811
) -> None:
    d = VECTORS / name
    with (d / "events.jsonl").open("rb") as f:
        send(kafka_bootstrap, kafka_topics["call-events"], f)
    exp = expected(name)
    wproc = worker(d / "callcost.toml")
    gproc, base = gateway
    deadline = time.monotonic() + 180
    for cid, want in exp["centres"].items():
        last = want["last_instant"]
        while True:
            for p in (wproc, gproc):
                if p.poll() is not None:
                    pytest.fail(f"{p.args[3]} exited with {p.returncode}:\n{log_tail(p)}")
            try:
                figs = get(f"{base}/api/figures?centre={cid}")["figures"]
            except OSError:
                figs = []
            if figs and all(f["as_of"] == last for f in figs):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{cid}: as_of never reached {last}; worker:\n{log_tail(wproc)}")
            time.sleep(0.3)
        at_last = [f for f in want["figures"] if f["as_of"] == last]
        assert at_last, "the vector lists figures at the last instant"
        assert figure_mismatches(figs, at_last) == []
        # the gateway reads alerts with a reader of their own: give it the time to catch up
        while True:
            alerts = get(f"{base}/api/alerts?centre={cid}&state=all")["alerts"]
            if len(alerts) >= len(want["alerts"]) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert alert_mismatches(alerts, want["alerts"]) == []
