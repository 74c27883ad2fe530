"""The broker's file handling: atomic writes, an exclusive lock file, and log tails."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from callcost.errors import BrokerError

LOG_TAIL_LINES = 30


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file, with ``mode`` in any case."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)  # also when it existed with another mode
    os.replace(tmp, path)


@contextlib.contextmanager
def flock(path: Path, deadline: float, what: str) -> Iterator[None]:
    """An exclusive lock on ``path`` so that two processes do not start one broker twice
    (or fetch the jars twice); waits until the monotonic ``deadline``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"{what} is locked by another process ({path})") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def tail_text(text: str, n: int = LOG_TAIL_LINES) -> str:
    """The last ``n`` non-blank lines of ``text``."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def log_tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    """The last ``n`` log lines of a broker log (its configuration dump left out)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    # Kafka prints its configuration indented, one key a line: keep the log lines.
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("\t")]
    return "\n".join(lines[-n:]) or f"({path} is empty)"
