"""Run a ``callcost`` command from another checkout, for before/after runs side by side.

    python -m benchmarks.other_tree TREE COMMAND [ARGS...]

``TREE`` is a checkout of another commit (``git worktree add /tmp/base REV``). The
project installs as ``callcost.*`` from four folders (``pyproject.toml``'s
``package-dir``), and the editable install of this checkout would shadow any other copy,
so this lays the other checkout out as one ``callcost`` package of symbolic links under
``var/bench/trees/``, drops the editable finder and runs that tree's ``callcost.cli``.
The installed third-party packages are shared: only callcost's own code differs.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the repository folder of each subpackage (pyproject.toml, [tool.setuptools] package-dir)
SUBPACKAGES = {"streams": "streams", "agents": "agents", "web": "web"}


def package_dir(tree: Path) -> Path:
    """A folder holding ``callcost/`` laid out from ``tree``'s folders (made once)."""
    tree = tree.resolve()
    if not (tree / "callcost" / "cli.py").is_file():
        raise SystemExit(f"other_tree: {tree} is not a callcost checkout (no callcost/cli.py)")
    tag = hashlib.sha256(str(tree).encode()).hexdigest()[:12]
    out = ROOT / "var" / "bench" / "trees" / tag
    pkg = out / "callcost"
    pkg.mkdir(parents=True, exist_ok=True)
    for f in (tree / "callcost").iterdir():
        if f.suffix == ".py" or f.name == "py.typed":
            link = pkg / f.name
            if not link.is_symlink():
                link.symlink_to(f)
    for name, folder in SUBPACKAGES.items():
        link = pkg / name
        if not link.is_symlink():
            link.symlink_to(tree / folder, target_is_directory=True)
    return out


def command(tree: Path, *args: str) -> list[str]:
    """The argv that runs ``callcost ARGS`` from ``tree`` with this interpreter."""
    return [sys.executable, "-m", "benchmarks.other_tree", str(tree), *args]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    where = package_dir(Path(argv[0]))
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
    for name in [m for m in sys.modules if m == "callcost" or m.startswith("callcost.")]:
        del sys.modules[name]
    sys.path.insert(0, str(where))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(where), os.environ.get("PYTHONPATH", "")])
    from callcost.cli import main as callcost_main

    sys.argv = ["callcost", *argv[1:]]
    sys.exit(callcost_main())


if __name__ == "__main__":
    main(sys.argv[1:])
