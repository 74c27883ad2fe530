"""The broker's JVM processes, seen through psutil: which java runs a home's broker, who
holds a port, and stopping them (SIGTERM, then SIGKILL).

A zombie counts as gone everywhere: one that is our own child is reaped; one that is not
(its parent has not reaped it yet) no longer runs a broker.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path

import psutil

from callcost.broker_config import BrokerConfig
from callcost.errors import BrokerError

#: how long stopping waits after SIGKILL before it gives up
KILL_TIMEOUT_S = 10.0
_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it is gone or hidden)."""
    try:
        return list(psutil.Process(pid).cmdline())
    except psutil.Error:
        return []


def running(proc: psutil.Process) -> bool:
    """True while ``proc`` runs; a zombie counts as gone (and is reaped when it is ours)."""
    try:
        proc.wait(timeout=0)  # returns (and reaps) once our own child has exited
        return False
    except psutil.TimeoutExpired:
        pass
    try:
        return proc.status() not in _GONE
    except psutil.NoSuchProcess:
        return False


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; reaped when it is ours)."""
    try:
        return running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def is_broker_cmd(args: list[str], properties: Path) -> bool:
    """True when ``args`` is a java ``kafka.Kafka`` run of this ``server.properties``."""
    return (
        bool(args)
        and "java" in os.path.basename(args[0])
        and "kafka.Kafka" in args
        and str(properties) in args
    )


def find_broker_pids(properties: Path) -> list[int]:
    """Every live java broker whose command line names this ``server.properties``."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info.get("cmdline") or []
        if proc.pid != me and is_broker_cmd(args, properties) and running(proc):
            found.append(proc.pid)
    return sorted(found)


def read_pid(cfg: BrokerConfig) -> int | None:
    """The pid in the home's pid file, if there is one."""
    try:
        return int(cfg.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def broker_pids(cfg: BrokerConfig) -> list[int]:
    """The pid file's broker (when it is still this home's broker) and any other one."""
    pids = set(find_broker_pids(cfg.properties))
    pid = read_pid(cfg)
    if pid and alive(pid) and is_broker_cmd(cmdline(pid), cfg.properties):
        pids.add(pid)
    return sorted(pids)


def port_in_use(port: int) -> bool:
    """True when a listener holds ``127.0.0.1:port`` (bound as the JVM binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def port_owner(port: int) -> tuple[int, list[str]] | None:
    """(pid, command line) of the process listening on ``port``, when we can see it."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for conn in conns:
        listening = conn.status == psutil.CONN_LISTEN and conn.laddr
        if listening and conn.laddr.port == port and conn.pid:
            return conn.pid, cmdline(conn.pid)
    return None


def check_ports(cfg: BrokerConfig) -> None:
    """Raise a :class:`BrokerError` naming the program that holds one of ``cfg``'s ports."""
    for port, what in ((cfg.port, "port"), (cfg.controller_port, "controller port")):
        if not port_in_use(port):
            continue
        owner = port_owner(port)
        who = "another process"
        if owner:
            pid, args = owner
            kind = "another Kafka broker" if "kafka.Kafka" in args else "another process"
            who = f"{kind} (pid {pid}: {' '.join(args)[:300]})"
        env = "CALLCOST_BROKER_PORT" if what == "port" else "CALLCOST_BROKER_CONTROLLER_PORT"
        raise BrokerError(
            f"cannot start the broker of {cfg.home}: its {what} 127.0.0.1:{port} is already "
            f"taken by {who}; stop that or choose another {what} (--{what.replace(' ', '-')} "
            f"or {env})"
        )


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to ``timeout_s`` for ``procs`` to end; returns those still running."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in procs if running(p)]
    while left:
        slice_s = min(0.25, deadline - time.monotonic())
        if slice_s <= 0:
            break
        _, still = psutil.wait_procs(left, timeout=slice_s)
        left = [p for p in still if running(p)]  # a zombie that is not ours is gone too
    return left


def terminate(pids: list[int], timeout_s: float) -> bool:
    """SIGTERM, wait, then SIGKILL. True when every process ended on SIGTERM."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            proc.terminate()
            procs.append(proc)
    left = _wait_gone(procs, timeout_s)
    if not left:
        return True
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    still = _wait_gone(left, KILL_TIMEOUT_S)
    if still:
        raise BrokerError(f"broker process(es) {[p.pid for p in still]} survived SIGKILL")
    return False
