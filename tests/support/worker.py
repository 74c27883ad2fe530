"""``callcost worker`` subprocesses on a test's topics: starting them (one consumer group
per :class:`Workers`), waiting until one owns its partitions, reading what it writes
while it runs, and its recovery log lines."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support.processes import check_running, kill, log_tail, log_text, spawn, stop
from tests.support.waiting import wait_for

#: the broker's smallest session timeout: a killed worker's partitions are free again
#: 6 s after its last heartbeat
SESSION_S = "6"
#: the worker's log line once it owns partitions (restore done)
ASSIGNED = "recovery of partitions"


def recovery_options(names: dict[str, str]) -> list[str]:
    """What the recovery and fault tests add: checkpoints on this test's topic every
    second, the shortest session timeout."""
    return ["--checkpoints-topic", names["callcost-checkpoints"],
            "--session-timeout-s", SESSION_S, "--checkpoint-s", "1"]


class Workers:
    """``callcost worker`` subprocesses on this test's topics, one consumer group; logs
    ``worker0.log``, ``worker1.log``, ... in ``tmp``."""

    def __init__(self, bootstrap: str, names: dict[str, str], tmp: Path, *,
                 config: Path | None = None, options: Sequence[str] = (),
                 label: str = "test-worker") -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.tmp = tmp
        self.config = config
        self.options = list(options)
        self.group = f"{label}-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen] = []

    def start(self, config: Path | None = None, *extra: str) -> subprocess.Popen:
        """Start one more worker (``config``: the default of these workers if None)."""
        config = config or self.config
        assert config is not None, "no config for the worker"
        args = [
            "worker",
            "--bootstrap", self.bootstrap,
            "--config", str(config),
            "--group", self.group,
            "--data-dir", str(self.tmp / "worker-data"),
            "--batch-ms", "50",
            "--events-topic", self.names["call-events"],
            "--figures-topic", self.names["cost-figures"],
            "--alerts-topic", self.names["cost-alerts"],
            "--dlq-topic", self.names["call-events-dlq"],
            *self.options,
            *extra,
        ]  # fmt: skip
        proc = spawn(args, self.tmp / f"worker{len(self.procs)}.log")
        proc.started = time.monotonic()  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, timeout_s: float = 60.0) -> int:
        """SIGTERM (SIGKILL after ``timeout_s``): its exit code, 0 for a clean stop."""
        return stop(proc, timeout_s)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        kill(proc)

    def close(self) -> None:
        """Stop every worker still running."""
        for proc in self.procs:
            stop(proc)


def wait_assigned(proc: subprocess.Popen, timeout_s: float = 60.0) -> float:
    """Seconds from start until the worker owns its partitions (restore done)."""
    wait_for(lambda: ASSIGNED in log_text(proc), timeout_s, "the partition assignment",
             procs=[proc], interval_s=0.2)
    return time.monotonic() - proc.started  # type: ignore[attr-defined]


def recovery_lines(proc: subprocess.Popen) -> list[str]:
    """The worker's log lines about checkpoints, restores and replays."""
    keys = ("restored", "replayed", "rebuilt", "checkpoint ignored", "not sent again",
            "checkpoint (")
    return [ln.split("] ", 2)[-1] for ln in log_text(proc).splitlines()
            if any(k in ln for k in keys)]


def consume_until(bootstrap: str, topic: str, done: Callable[[list[Any]], bool],
                  proc: subprocess.Popen, timeout_s: float = 120.0) -> list[Any]:
    """Read ``topic`` from the start until ``done(messages)``; fail on time-out or if the
    worker exits."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=500,
    )
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(got):
            check_running([proc], f"{topic} to be done")
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not done after {timeout_s:.0f} s, {len(got)} "
                                     f"messages; worker log:\n{log_tail(proc)}")
            got.extend(consumer)  # until 0.5 s without a message
    finally:
        consumer.close()
    return got
