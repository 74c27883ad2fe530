"""The pure core never imports I/O frameworks (websockets' protocol.py discipline)."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import callcost.streams

#: every module of the pure core, found rather than listed
STREAMS = sorted(
    f"callcost.streams.{m.name}" for m in pkgutil.iter_modules(callcost.streams.__path__)
)
PURE = [
    *STREAMS,
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


#: what the core may import of callcost besides itself: the exception tree
CORE_MAY_IMPORT = ("callcost.streams", "callcost.errors")


def _imported(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports, function-local and TYPE_CHECKING ones included."""
    package = module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            found.append((node.lineno, base))
            # ``from callcost import web`` imports callcost.web
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("module", STREAMS)
def test_core_imports_no_shell(module: str) -> None:
    """streams/ never imports callcost.agents, callcost.web nor a command of callcost/."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    bad = [
        f"line {line}: {name}"
        for line, name in _imported(Path(spec.origin), module)
        if name.startswith("callcost.")
        and not any(name == ok or name.startswith(ok + ".") for ok in CORE_MAY_IMPORT)
    ]
    assert bad == [], f"{module} imports a shell: {bad}"


def test_streams_modules_are_found() -> None:
    assert {"callcost.streams.engine", "callcost.streams.config"} <= set(STREAMS)
    assert len(STREAMS) == len(list(Path(callcost.streams.__path__[0]).glob("[!_]*.py")))
