"""Faults of the infrastructure (issue 6, items 2 and 3), on the real broker.

* **Broker restart mid-stream**: a broker of this test alone (``callcost.broker``, its own
  home under ``tmp_path``, port ``CALLCOST_FAULTS_BROKER_PORT``, default 39510, or the
  first free one up to 39518) is stopped
  and started again twice (same data, same port; one short outage, one longer than the
  worker's session timeout) while the ``two-centres`` vector is produced at a steady
  pace. The worker and the gateway subprocesses run throughout and reconnect by
  themselves.
* **Rebalance**: two workers in one consumer group on ``call-events`` with 4 partitions
  (the vector's two centres hash to partitions 0 and 2: checked below); one of them is
  stopped (SIGTERM) or killed (SIGKILL) mid-stream while the other takes over its
  partitions, and started again later.

After each: the checks of ``tests/support/worker_outputs.py`` on the topics (the last figures of
each centre equal ``expected.json`` at the last instant, ``as_of`` never backwards, the
alerts are the expected ones with no ``(id, state)`` twice, the DLQ holds the 40 bad
lines once each); for the broker restart, also the gateway's ``/api/figures`` and
``/api/alerts?state=all``. docs/reliability.md lists the runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcost import broker, broker_config
from callcost.topics_cmd import create_topics
from tests.support.brokers import message_count
from tests.support.gateway_process import get_json, start_gateway
from tests.support.ports import port_is_free
from tests.support.processes import log_tail, log_text, stop
from tests.support.progress import log
from tests.support.two_centres import CONFIG, NAME, lines
from tests.support.waiting import wait_for
from tests.support.worker import Workers, recovery_lines, recovery_options, wait_assigned
from tests.support.worker_outputs import Outputs, check_outputs
from tests.vectorcheck import alert_mismatches, expected, figure_mismatches

#: the dedicated broker of the broker-restart test: the first of these ports that is free
#: with the next one (its controller); other processes' connections may hold a few
_FIRST = int(os.environ.get("CALLCOST_FAULTS_BROKER_PORT", "39510"))
BROKER_PORTS = (_FIRST, *(p for p in range(39510, 39519) if p != _FIRST))
PARTITIONS = 4
CHUNK, PAUSE_S = 400, 0.4  # the vector's 17,974 lines in about 18 s, broker up
#: (share of the vector produced, seconds the broker stays away): the second outage is
#: longer than the worker's session timeout (6 s)
OUTAGES = ((0.3, 3.0), (0.65, 15.0))
REBALANCE_CHUNK = 200  # about 36 s: the stopped worker is back before the end


class PacedProducer:
    """Produces the vector in chunks at a steady pace, in a thread, with an idempotent
    producer (acks=all): a chunk sent while the broker is away waits in the producer and
    goes out once it is back, without duplicates."""

    def __init__(self, bootstrap: str, topic: str, chunk: int = CHUNK) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.chunk = chunk
        self.items = lines()
        self.produced = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from kafka import KafkaProducer

        try:
            p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                              enable_idempotence=True, delivery_timeout_ms=300_000,
                              max_in_flight_requests_per_connection=1)
            try:
                for i in range(0, len(self.items), self.chunk):
                    futures = [p.send(self.topic, key=k, value=v)
                               for k, v in self.items[i : i + self.chunk]]
                    p.flush()
                    for f in futures:
                        f.get(0)  # raises if one was not delivered
                    self.produced = min(i + self.chunk, len(self.items))
                    time.sleep(PAUSE_S)
            finally:
                p.close()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def wait_for(self, share: float, timeout_s: float = 120.0) -> None:
        """Until ``share`` of the vector is produced."""
        deadline = time.monotonic() + timeout_s
        while self.produced < share * len(self.items):
            if self.error is not None or not self._thread.is_alive():
                raise AssertionError(f"the producer stopped: {self.error!r}")
            assert time.monotonic() < deadline, f"{share:.0%} not produced in {timeout_s} s"
            time.sleep(0.1)

    def join(self, timeout_s: float = 180.0) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the producer did not finish"
        assert self.error is None, f"the producer failed: {self.error!r}"


def check_gateway(base: str, exp: dict, gproc: subprocess.Popen, timeout_s: float = 30) -> None:
    """The gateway serves expected.json's figures at the last instant and its alerts."""
    for cid, want in exp["centres"].items():
        last = want["last_instant"]
        at_last = [f for f in want["figures"] if f["as_of"] == last]

        def figures_there(cid: str = cid, last: int = last) -> bool:
            try:
                figs = get_json(f"{base}/api/figures?centre={cid}")["figures"]
            except OSError:
                return False
            return bool(figs) and all(f["as_of"] == last for f in figs)

        def alerts_there(cid: str = cid, n: int = len(want["alerts"])) -> bool:
            try:
                return len(get_json(f"{base}/api/alerts?centre={cid}&state=all")["alerts"]) >= n
            except OSError:
                return False

        wait_for(figures_there, timeout_s, f"the gateway's figures of {cid}", procs=[gproc])
        wait_for(alerts_there, timeout_s, f"the gateway's alerts of {cid}", procs=[gproc])
        figs = get_json(f"{base}/api/figures?centre={cid}")["figures"]
        assert figure_mismatches(figs, at_last) == [], cid
        alerts = get_json(f"{base}/api/alerts?centre={cid}&state=all")["alerts"]
        assert alert_mismatches(alerts, want["alerts"]) == [], cid


# --------------------------------------------------------------------------- broker restart


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[broker_config.BrokerConfig]:
    """A broker of this test alone: the session broker is shared and must not move."""
    deadline = time.monotonic() + 60  # a burst of other connections may hold them a while
    while (port := next((p for p in BROKER_PORTS if port_is_free(p) and port_is_free(p + 1)),
                         None)) is None:
        assert time.monotonic() < deadline, (
            f"none of the ports {BROKER_PORTS} is free with the next one (held by other "
            "processes' connections: `ss -tanp | grep 395`)")
        time.sleep(1.0)
    cfg = broker_config.BrokerConfig(home=tmp_path / "broker", port=port, controller_port=port + 1)
    took = broker.start(cfg, timeout_s=120, fresh=True)
    log(f"own broker at {cfg.bootstrap} in {took:.1f} s")
    try:
        yield cfg
    finally:
        broker.stop(cfg)


def restart(cfg: broker_config.BrokerConfig, outage_s: float, t0: float) -> tuple[str, float]:
    """Stop the broker, wait ``outage_s``, start it again (same home, same port); a line
    saying how it went and when (monotonic) the broker answered again."""
    t = time.monotonic()
    assert broker.stop(cfg), "the broker was not running"
    stopped = time.monotonic()
    time.sleep(outage_s)
    took = broker.start(cfg, timeout_s=120)
    back = time.monotonic()
    return (f"broker stopped at t={t - t0:.1f} s (stop took {stopped - t:.1f} s), away "
            f"{outage_s:.0f} s, answering again {took:.1f} s after its start: down "
            f"{back - stopped:.1f} s in all"), back


def wait_for_growth(bootstrap: str, topic: str, procs: list[subprocess.Popen],
                    since: float) -> float:
    """Seconds from ``since`` until the worker sends figures again."""
    before = message_count(bootstrap, topic)
    wait_for(lambda: message_count(bootstrap, topic) > before, 60,
             f"new messages on {topic} after the broker restart", procs=procs, interval_s=0.2)
    return time.monotonic() - since


def fault_lines(proc: subprocess.Popen) -> list[str]:
    """The worker's lines about its recovery and about failed Kafka calls."""
    keys = ("replayed offsets", "rebuilt", "restored ", "failed", "could not send",
            "went to another worker", "resumes at", "checkpoint (")
    return [ln.split("] ", 2)[-1].strip() for ln in log_text(proc).splitlines()
            if any(k in ln for k in keys) and "Unable" not in ln and "NodeNotReady" not in ln
            and "Heartbeat" not in ln and "fetch messages" not in ln]


def last_summary(proc: subprocess.Popen) -> str:
    found = [ln for ln in log_text(proc).splitlines() if " send_errors=" in ln]
    return found[-1].split("] ", 2)[-1].strip() if found else ""


@pytest.mark.kafka
def test_broker_restarts_mid_stream(own_broker: broker_config.BrokerConfig, tmp_path: Path) -> None:
    """Two broker restarts while the vector is produced (one short outage, one longer
    than the session timeout); the same worker and gateway processes throughout."""
    cfg = own_broker
    exp = expected(NAME)
    names = create_topics(cfg.bootstrap, PARTITIONS)
    workers = Workers(cfg.bootstrap, names, tmp_path, config=CONFIG,
                      options=recovery_options(names), label="test-recovery")
    gproc, base = start_gateway(cfg.bootstrap, names, tmp_path / "gateway.log")
    producer = PacedProducer(cfg.bootstrap, names["call-events"])
    try:
        wproc = workers.start()
        took = wait_assigned(wproc)
        log(f"worker owns its partitions {took:.1f} s after its start")
        t0 = time.monotonic()
        producer.start()
        for share, outage_s in OUTAGES:
            producer.wait_for(share)
            note, back = restart(cfg, outage_s, t0)
            log(f"{note}; produced {producer.produced}/{len(producer.items)}")
            for p in (wproc, gproc):
                assert p.poll() is None, f"{p.args!r} exited:\n{log_tail(p)}"
            again = wait_for_growth(cfg.bootstrap, names["cost-figures"], [wproc, gproc], back)
            log(f"    the worker sent figures again {again:.1f} s after the broker answered")
        producer.join()
        log(f"all {len(producer.items)} events produced at t={time.monotonic() - t0:.1f} s")
        out = Outputs(cfg.bootstrap, names)
        try:
            wait_for(lambda: out.finished(exp), 90, "the final figures", procs=[wproc, gproc],
                     interval_s=0.2)
            # stopped, the worker has sent all it ever will: the topics read to their end
            # offsets are final, and nothing sent twice can still be on its way
            assert workers.stop(wproc) == 0, log_tail(wproc)
            log(f"complete at t={time.monotonic() - t0:.1f} s")
            check_outputs(out, exp)
        finally:
            out.close()
        check_gateway(base, exp, gproc)
        log(f"the gateway serves the same at t={time.monotonic() - t0:.1f} s")
        for line in fault_lines(wproc):
            log(f"    worker: {line}")
        log(f"    worker: {last_summary(wproc)}")
        assert " send_errors=0 " in last_summary(wproc) + " ", "the worker lost output messages"
        assert gproc.poll() is None
    finally:
        stop(gproc, timeout_s=20)
        workers.close()


# --------------------------------------------------------------------------- rebalance

OWNED = re.compile(r"\]: restored .* from checkpoints at offset")


def centre_partitions() -> dict[str, int]:
    """The partition of each centre of the vector (the default partitioner: murmur2)."""
    from kafka.partitioner.default import murmur2

    exp = expected(NAME)
    return {c: (murmur2(c.encode()) & 0x7FFFFFFF) % PARTITIONS for c in exp["centres"]}


def owned_partitions(proc: subprocess.Popen, topic: str) -> set[int]:
    """Every events partition the worker has restored at some point (its log)."""
    pat = re.compile(re.escape(topic) + r"\[(\d+)\]: restored ")
    return {int(m.group(1)) for m in pat.finditer(log_text(proc))}


def test_centres_land_on_different_partitions() -> None:
    parts = centre_partitions()
    assert len(set(parts.values())) == len(parts), parts


def current_partitions(proc: subprocess.Popen, topic: str) -> set[int]:
    """The events partitions the worker owns now, from its log: those it restored, less
    those it said went to another worker afterwards."""
    owned: set[int] = set()
    restored = re.compile(re.escape(topic) + r"\[(\d+)\]: restored ")
    gone = re.compile(r"partitions \[([\d, ]*)\] went to another worker")
    for line in log_text(proc).splitlines():
        if m := restored.search(line):
            owned.add(int(m.group(1)))
        elif m := gone.search(line):
            owned -= {int(x) for x in m.group(1).split(",") if x.strip()}
    return owned


def rebalance_run(bootstrap: str, names: dict[str, str], workers: Workers,
                  how: str) -> None:
    """Two workers in one group while the vector is produced; the one that owns a
    centre's partition is stopped (``how``: "SIGTERM" or "SIGKILL") at 35% of the
    vector, the other takes over its partitions, then it is started again."""
    exp = expected(NAME)
    topic = names["call-events"]
    centres = centre_partitions()
    data = set(centres.values())
    log(f"centres on partitions {centres}; group {workers.group}")
    producer = PacedProducer(bootstrap, topic, REBALANCE_CHUNK)
    out = Outputs(bootstrap, names)
    try:
        dirs = [str(workers.tmp / "data-a"), str(workers.tmp / "data-b")]
        first = workers.start(CONFIG, "--data-dir", dirs[0])
        second = workers.start(CONFIG, "--data-dir", dirs[1])
        both = [first, second]
        for p in both:
            wait_assigned(p)
        t0 = time.monotonic()

        def split() -> bool:
            a, b = (current_partitions(p, topic) for p in both)
            return a | b == set(range(PARTITIONS)) and not a & b and bool(b)

        wait_for(split, 60, "the partitions split between the two workers", procs=both)
        owned = {i: current_partitions(p, topic) for i, p in enumerate(both)}
        log(f"t={time.monotonic() - t0:.1f} s, produced {producer.produced}: first worker "
            f"owns {sorted(owned[0])}, second {sorted(owned[1])}")
        producer.start()
        # the one to stop owns a centre (the second, unless the first has both); the
        # other takes over every partition, so each will have owned a centre
        victim, survivor = (second, first) if owned[1] & data else (first, second)
        which = "second" if victim is second else "first"
        producer.wait_for(0.35)
        took = time.monotonic()
        if how == "SIGKILL":
            workers.kill(victim)
        else:
            assert workers.stop(victim) == 0, log_tail(victim)
            assert "checkpoint (shutdown)" in log_text(victim), log_tail(victim)
        log(f"{how} to the {which} worker at t={took - t0:.1f} s, produced "
            f"{producer.produced}/{len(producer.items)}")
        wait_for(lambda: current_partitions(survivor, topic) == set(range(PARTITIONS)), 60,
                 "the other worker owning every partition", procs=[survivor])
        log(f"    the other worker owns every partition {time.monotonic() - took:.1f} s "
            "later")
        again = workers.start(CONFIG, "--data-dir", dirs[both.index(victim)])
        wait_assigned(again)
        wait_for(lambda: bool(current_partitions(again, topic))
                 and current_partitions(survivor, topic)
                 == set(range(PARTITIONS)) - current_partitions(again, topic),
                 60, "the partitions split again", procs=[survivor, again])
        log(f"restarted at t={time.monotonic() - t0:.1f} s, produced {producer.produced}: "
            f"the other owns {sorted(current_partitions(survivor, topic))}, restarted "
            f"one {sorted(current_partitions(again, topic))}")
        producer.join()
        wait_for(lambda: out.finished(exp), 90, "the final figures", procs=[survivor, again],
                 interval_s=0.2)
        # stopped, both have sent all they ever will: the topics read to their end
        # offsets are final, and nothing sent twice can still be on its way
        for p in (survivor, again):
            assert workers.stop(p) == 0, log_tail(p)
        log(f"complete at t={time.monotonic() - t0:.1f} s")
        check_outputs(out, exp)
        for p in both:  # each worker owned a centre at some point
            assert owned_partitions(p, topic) & data, log_tail(p)
        for name, p in (("other", survivor), (which, victim), ("restarted", again)):
            for line in recovery_lines(p):
                if " send_errors=" not in line:
                    log(f"    {name}: {line}")
        for p in (survivor, again):
            assert " send_errors=0 " in last_summary(p) + " ", log_tail(p)
    finally:
        out.close()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_rebalance_one_of_two_workers_stops_and_comes_back(
    how: str, kafka_bootstrap: str, kafka_topics: dict[str, str], workers: Workers
) -> None:
    rebalance_run(kafka_bootstrap, kafka_topics, workers, how)
