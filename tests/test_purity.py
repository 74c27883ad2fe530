"""The pure core never imports I/O frameworks (websockets' protocol.py discipline)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "callcost.streams.events",
    "callcost.streams.config",
    "callcost.streams.kernels",
    "callcost.streams.engine",
    "callcost.streams.topics",
    "callcost.streams.alerts",
    "callcost.web.wire",
    "callcost.web.messages",
    "callcost.web.stores",
    "callcost.web.queries",
    "callcost.web.limits",
    "callcost.web.subscriptions",
    "callcost.web.session",
    "callcost.web.routes",
    "callcost.web.access",
    "callcost.web.control",
    "callcost.web.sinks",
]
FORBIDDEN = ["faust", "mode", "aiokafka", "kafka", "websockets", "aiohttp", "asyncio"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"


@pytest.mark.parametrize("module", PURE)
def test_pure_module_reads_no_clock(module: str) -> None:
    import importlib
    import inspect

    src = inspect.getsource(importlib.import_module(module))
    for call in ("time.time(", "time.monotonic(", "datetime.now(", "datetime.utcnow("):
        assert call not in src, f"{module} reads the clock with {call}"
