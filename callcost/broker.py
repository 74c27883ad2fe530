"""The local Kafka broker: one combined KRaft node (broker and controller) on 127.0.0.1.

The API the ``callcost broker`` command (:mod:`callcost.broker_cli`), the tests and the
demo use:

- :class:`BrokerConfig` says where a broker lives (its *home*: data, logs, pid file,
  ``server.properties``) and on which ports;
- :func:`start` formats the storage once, launches ``java ... kafka.Kafka`` detached and
  returns only when a real client metadata request succeeds (:func:`probe`); it is
  idempotent;
- :func:`stop` stops it (SIGTERM, then SIGKILL), also when its pid file is gone;
- :func:`status` says whether it runs.

Start-up is kept short with a lean JVM and a class-data-sharing archive
(:mod:`callcost.broker_cds`); ``CALLCOST_BROKER_JAVA_OPTS`` adds JVM options.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time

from callcost.broker_cds import cds_finish, cds_flags
from callcost.broker_config import BrokerConfig
from callcost.broker_files import flock, write_atomic
from callcost.broker_jars import ensure_jars
from callcost.broker_jvm import classpath, jvm_base
from callcost.broker_probe import probe, wait_ready
from callcost.broker_process import broker_pids, check_ports, terminate
from callcost.broker_properties import running_port, server_properties
from callcost.broker_storage import format_storage, prepare_storage
from callcost.errors import BrokerError

__all__ = ["start", "status", "stop"]

#: how long a failed start waits for its broker to end on SIGTERM
ABORT_TIMEOUT_S = 10.0


def start(cfg: BrokerConfig, timeout_s: float = 90, *, fresh: bool = False) -> float:
    """Start the broker of ``cfg.home`` unless it already runs; return when a client's
    metadata request succeeds. Returns the seconds it took.

    ``fresh``: when the broker has to be started, wipe its storage first (topics,
    offsets, groups); a broker that already runs is left as it is."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    ensure_jars(cfg.root)
    cfg.home.mkdir(parents=True, exist_ok=True)
    with flock(cfg.lock_file, deadline, f"the broker home {cfg.home}"):
        running = broker_pids(cfg)
        if running:
            _adopt(cfg, running[0], deadline)
        else:
            _launch(cfg, deadline, fresh=fresh)
    return time.monotonic() - t0


def _adopt(cfg: BrokerConfig, pid: int, deadline: float) -> None:
    """Take the running broker ``pid`` of this home as the started one."""
    port = running_port(cfg)
    if port is not None and port != cfg.port:
        raise BrokerError(
            f"the broker of {cfg.home} already runs (pid {pid}) on port {port}, "
            f"not {cfg.port}: stop it first (callcost broker stop)"
        )
    write_atomic(cfg.pid_file, f"{pid}\n")
    wait_ready(cfg, pid, deadline, None)


def _launch(cfg: BrokerConfig, deadline: float, *, fresh: bool) -> None:
    """Write the properties, format the storage, start the JVM detached and wait for it."""
    cfg.pid_file.unlink(missing_ok=True)
    cds_finish(cfg, graceful=False)  # a stale archive in progress from a crashed run
    check_ports(cfg)
    (cfg.home / "logs").mkdir(exist_ok=True)
    prepare_storage(cfg, fresh=fresh)
    # with SASL users it holds their passwords: its owner alone reads it
    write_atomic(cfg.properties, server_properties(cfg), 0o600 if cfg.sasl_users else 0o644)
    flags = cds_flags(cfg)
    format_storage(cfg, flags)

    if cfg.log_file.exists():
        os.replace(cfg.log_file, cfg.log_file.with_name("broker.out.1"))
    extra = shlex.split(os.environ.get("CALLCOST_BROKER_JAVA_OPTS", ""))
    cmd = [
        *jvm_base(cfg, cfg.heap_mb),
        *flags,
        *extra,
        *classpath(cfg),
        "kafka.Kafka",
        str(cfg.properties),
    ]
    with cfg.log_file.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cfg.home,  # a JVM crash report lands here, not in the work tree
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    write_atomic(cfg.pid_file, f"{proc.pid}\n")
    try:
        wait_ready(cfg, proc.pid, deadline, proc)
    except BaseException:
        terminate([proc.pid], ABORT_TIMEOUT_S)
        cfg.pid_file.unlink(missing_ok=True)
        cds_finish(cfg, graceful=False)
        raise


def stop(cfg: BrokerConfig, timeout_s: float = 30) -> list[int]:
    """Stop every broker of ``cfg.home``: the pid file's and any other java process that
    runs this home's ``server.properties``. Returns the pids stopped (empty: none ran)."""
    deadline = time.monotonic() + timeout_s
    lock = (
        flock(cfg.lock_file, deadline, f"the broker home {cfg.home}")
        if cfg.home.is_dir()
        else contextlib.nullcontext()
    )
    with lock:
        pids = broker_pids(cfg)
        graceful = terminate(pids, max(1.0, deadline - time.monotonic())) if pids else True
        if cfg.home.is_dir():
            cfg.pid_file.unlink(missing_ok=True)
            if pids:
                cds_finish(cfg, graceful)
    return pids


def status(cfg: BrokerConfig, check: bool = True) -> dict[str, object]:
    """``running``, ``pid``, ``bootstrap``, ``home`` and (with ``check``) whether it
    ``answers`` a metadata request."""
    pids = broker_pids(cfg)
    port = (running_port(cfg) if pids else None) or cfg.port
    bootstrap = f"127.0.0.1:{port}"
    info: dict[str, object] = {
        "running": bool(pids),
        "pid": pids[0] if pids else None,
        "bootstrap": bootstrap,
        "home": str(cfg.home),
    }
    if check:
        info["answers"] = bool(pids) and probe(bootstrap, 3.0, cfg.client_kwargs())
    return info
