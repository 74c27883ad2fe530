"""Every vector live: Kafka in, the worker and the gateway as subprocesses, figures out of
``/api/figures`` and alerts out of ``/api/alerts``, equal to ``expected.json`` at each
centre's last instant."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcost.produce import send
from tests.support.gateway_process import get_json, start_gateway
from tests.support.processes import check_running, log_tail, stop
from tests.vectorcheck import NAMES, VECTORS, alert_mismatches, expected, figure_mismatches


@pytest.fixture
def gateway(kafka_bootstrap: str, kafka_topics: dict[str, str], tmp_path: Path) -> Iterator:
    proc, base = start_gateway(kafka_bootstrap, kafka_topics, tmp_path / "gateway.log")
    yield proc, base
    stop(proc, timeout_s=20)


@pytest.mark.parametrize("name", NAMES)
def test_vector_live(
    name: str, kafka_bootstrap: str, kafka_topics: dict[str, str], worker, gateway
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
            check_running((wproc, gproc))
            try:
                figs = get_json(f"{base}/api/figures?centre={cid}")["figures"]
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
            alerts = get_json(f"{base}/api/alerts?centre={cid}&state=all")["alerts"]
            if len(alerts) >= len(want["alerts"]) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert alert_mismatches(alerts, want["alerts"]) == []
