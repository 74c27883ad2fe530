"""Whether a broker answers: a real client metadata request (:func:`probe`), and waiting
for a starting broker to answer (:func:`wait_ready`)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from callcost.broker_config import BrokerConfig
from callcost.broker_files import log_tail
from callcost.broker_process import alive
from callcost.errors import BrokerError

#: the longest one probe of a starting broker waits for its answer
PROBE_TIMEOUT_MAX_S = 5.0


def _tcp_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def probe(
    bootstrap: str, timeout_s: float = 3.0, client_kwargs: Mapping[str, Any] | None = None
) -> bool:
    """True when ``bootstrap`` answers a metadata request that lists a live broker.

    ``client_kwargs``: kafka-python security settings (see
    :meth:`BrokerConfig.client_kwargs`). Answers False at once when nothing listens on
    the (first) bootstrap address."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        if not _tcp_open(host.strip("[]") or "127.0.0.1", int(port)):
            return False
    except ValueError:
        pass  # not host:port; let the client judge it
    from kafka import KafkaAdminClient

    ms = max(500, int(timeout_s * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="callcost-broker-probe",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            reconnect_backoff_max_ms=500,
            **(client_kwargs or {}),
        )
    except Exception:
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def wait_ready(
    cfg: BrokerConfig, pid: int, deadline: float, proc: subprocess.Popen[bytes] | None
) -> None:
    """Return once the broker ``pid`` (``proc`` when we started it) answers; raise a
    :class:`BrokerError` with its log's last lines when it exits or the monotonic
    ``deadline`` passes."""
    while True:
        exited = proc.poll() if proc is not None else (None if alive(pid) else "?")
        if exited is not None:
            raise BrokerError(
                f"the broker of {cfg.home} (pid {pid}) exited with code {exited} while "
                f"starting; last lines of {cfg.log_file}:\n{log_tail(cfg.log_file)}"
            )
        left = deadline - time.monotonic()
        if probe(cfg.bootstrap, min(PROBE_TIMEOUT_MAX_S, max(0.5, left)), cfg.client_kwargs()):
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the broker of {cfg.home} (pid {pid}) did not answer on {cfg.bootstrap} in "
                f"time; last lines of {cfg.log_file}:\n{log_tail(cfg.log_file)}"
            )
        time.sleep(0.05)
