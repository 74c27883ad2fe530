"""``callcost`` subcommands as subprocesses: start one with its log file, stop it
(SIGTERM, then SIGKILL after a timeout), read its log for failure messages."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def spawn(args: list[str], log_path: Path, *, env: Mapping[str, str] | None = None,
          append: bool = False) -> subprocess.Popen:
    """``python -m callcost.cli ARGS`` from the project root, stdout and stderr into
    ``log_path``; the process carries ``log_path`` (``proc.args[3]`` is the subcommand)."""
    cmd = [sys.executable, "-m", "callcost.cli", *args]
    with Path(log_path).open("ab" if append else "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=None if env is None else dict(env))
    proc.log_path = Path(log_path)  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> int:
    """SIGTERM and wait up to ``timeout_s``; SIGKILL if it is still there. Its exit code
    (negative: the signal that ended it; -9 when it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def kill(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGKILL and wait for the end."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout_s)


def name_of(proc: subprocess.Popen) -> str:
    """The subcommand of a process from :func:`spawn` ("worker", "gateway", ...)."""
    args = proc.args
    return str(args[3]) if isinstance(args, list | tuple) and len(args) > 3 else str(args)


def log_text(proc: subprocess.Popen) -> str:
    """Everything the process has logged so far."""
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def log_tail(proc: subprocess.Popen, lines: int = 40) -> str:
    """The last ``lines`` lines of its log, for a failure message."""
    return "\n".join(log_text(proc).splitlines()[-lines:])


def check_running(procs: Iterable[subprocess.Popen], doing: str = "") -> None:
    """Fail (with the log's tail) if one of ``procs`` has exited."""
    for proc in procs:
        if proc.poll() is not None:
            while_ = f" while waiting for {doing}" if doing else ""
            raise AssertionError(f"{name_of(proc)} exited with {proc.returncode}{while_}:\n"
                                 f"{log_tail(proc)}")


def run_cli(*args: str, env: Mapping[str, str] | None = None,
            timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -m callcost.cli ARGS`` to its end, output captured as text; ``env``
    replaces the environment when given."""
    return subprocess.run([sys.executable, "-m", "callcost.cli", *args], cwd=ROOT,
                          env=None if env is None else dict(env), capture_output=True,
                          text=True, timeout=timeout_s, check=False)
