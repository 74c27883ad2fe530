"""Waiting for a condition, with a timeout and a message that says what did not happen."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.support.processes import check_running, log_tail, name_of


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "", *,
             procs: Sequence[subprocess.Popen] = (), interval_s: float = 0.1) -> Any:
    """Call ``predicate`` until it returns something true, and return that. Fails after
    ``timeout_s`` (with the last value), or as soon as one of ``procs`` exits (with the
    tail of its log)."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_running(procs, what)
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = f"; log of {name_of(procs[-1])}:\n{log_tail(procs[-1])}" if procs else ""
            raise AssertionError(f"not done after {timeout_s:.0f} s: {what or predicate} "
                                 f"(last: {value!r}){logs}")
        time.sleep(interval_s)
