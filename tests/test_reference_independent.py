"""tests/reference.py computes every figure and alert itself: it never imports the engine.

The reference may share with the code under test only what does not compute a figure:
the parsing of settings and events and the vocabulary (names and the window syntax).
Everything else it imports is the standard library. Checked on the source with ``ast``,
every import included (function-local ones, ``importlib``, ``__import__``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REFERENCE = Path(__file__).with_name("reference.py")

#: what a reference may share with the code under test: parsing and names, no arithmetic
SHARED = frozenset({
    "callcost.streams.config",  # settings: rates, rules, windows of a TOML file
    "callcost.streams.events",  # one valid event from one message
    "callcost.streams.vocabulary",  # scopes, channels, states and the window syntax
})  # fmt: skip


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import anywhere in ``source``; dynamic imports as
    ``<dynamic: NAME>``."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: a relative import"
            out.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call):
            f = node.func
            name = getattr(f, "id", None) or getattr(f, "attr", "")
            if name in ("__import__", "import_module"):
                out.append((node.lineno, f"<dynamic: {name}>"))
    return out


def forbidden(source: str) -> list[str]:
    bad = []
    for line, module in imported_modules(source):
        top = module.split(".")[0]
        if module in SHARED or module == "__future__" or top in sys.stdlib_module_names:
            continue
        bad.append(f"reference.py:{line}: imports {module}")
    return bad


def test_the_reference_imports_only_the_standard_library_and_the_parsers() -> None:
    assert forbidden(REFERENCE.read_text()) == []


def test_the_reference_shares_the_parsers_it_says() -> None:
    used = {m for _, m in imported_modules(REFERENCE.read_text())}
    assert used & SHARED, "the reference parses with the product's parsers (its docstring)"


def test_the_guard_sees_every_kind_of_import() -> None:
    sneaky = (
        "from callcost.streams.config import Settings\n"
        "import numpy as np\n"
        "def figures():\n"
        "    from callcost.streams.engine import Engine\n"
        "    import callcost.streams.kernels\n"
        "    importlib.import_module('callcost.streams.calls')\n"
        "    return __import__('callcost.streams.alerts')\n"
    )
    assert forbidden(sneaky) == [
        f"reference.py:{n}: imports {m}" for n, m in sorted([
            (2, "numpy"), (4, "callcost.streams.engine"), (5, "callcost.streams.kernels"),
            (6, "<dynamic: import_module>"), (7, "<dynamic: __import__>"),
        ])
    ]  # fmt: skip
