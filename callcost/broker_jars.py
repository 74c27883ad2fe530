"""The Kafka broker's jars in ``broker/lib``, fetched from Maven Central by Maven through
``broker/pom.xml`` (:func:`ensure_jars`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from callcost.broker_config import repo_root
from callcost.broker_files import flock, tail_text
from callcost.errors import BrokerError

#: how long a second process waits while another one runs Maven
MAVEN_LOCK_TIMEOUT_S = 900


def lib_dir(root: Path) -> Path:
    """The folder of the broker's jars in the repository ``root``."""
    return root / "broker" / "lib"


def ensure_jars(root: Path | None = None) -> Path:
    """Make sure ``broker/lib`` holds the broker's jars; run Maven when it is missing
    or older than ``broker/pom.xml``. Returns the lib folder."""
    root = repo_root() if root is None else Path(root)
    pom = root / "broker" / "pom.xml"
    lib = lib_dir(root)
    if not pom.exists():
        raise BrokerError(f"{pom} is missing: cannot fetch the Kafka broker jars")
    if _jars_fresh(lib, pom):
        return lib
    lib.mkdir(parents=True, exist_ok=True)
    with flock(lib / ".lock", time.monotonic() + MAVEN_LOCK_TIMEOUT_S, "broker/lib"):
        if _jars_fresh(lib, pom):  # another process did it while we waited
            return lib
        why = "is missing" if not any(lib.glob("kafka_2.13-*.jar")) else "is older than pom.xml"
        print(
            f"callcost: broker/lib {why}; fetching the Kafka jars with Maven (mvn package)",
            file=sys.stderr,
            flush=True,
        )
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not installed: it fetches the Kafka broker jars")
        result = None
        if (Path.home() / ".m2" / "repository").is_dir():
            result = _run_quiet([mvn, "-o", "-q", "-B", "package"], cwd=pom.parent)
        if result is None or result.returncode != 0:
            result = _run_quiet([mvn, "-q", "-B", "package"], cwd=pom.parent)
        if result.returncode != 0:
            raise BrokerError(
                f"mvn package in {pom.parent} failed (exit {result.returncode}):\n"
                + tail_text(result.stdout)
            )
        if not any(lib.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"mvn package ran but {lib} holds no kafka_2.13 jar")
        (lib / ".stamp").touch()
    return lib


def _jars_fresh(lib: Path, pom: Path) -> bool:
    jars = list(lib.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        return False
    # The stamp is touched after each successful Maven run; without one (jars copied by
    # hand, or by an older checkout), the newest jar stands for it.
    stamp = lib / ".stamp"
    made = stamp.stat().st_mtime if stamp.exists() else max(j.stat().st_mtime for j in jars)
    return made >= pom.stat().st_mtime


def _run_quiet(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
