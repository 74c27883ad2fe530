"""Progress lines of the long tests (recovery, faults), timestamped, shown with ``-s``
and in a failure's captured output."""

from __future__ import annotations

import time


def log(msg: str) -> None:
    print(f"[recovery {time.strftime('%H:%M:%S')}] {msg}", flush=True)
