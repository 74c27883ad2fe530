"""The broker's Java command lines: which ``java``, a lean JVM (serial GC, C1 only, a
small heap) and the class path of ``broker/lib``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from callcost.broker_config import BrokerConfig
from callcost.broker_jars import lib_dir
from callcost.errors import BrokerError


def java() -> str:
    """The ``java`` to run: ``JAVA_HOME``'s, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BrokerError("java is not installed (the broker needs Java 17 or later)")
    return found


def jvm_base(cfg: BrokerConfig, heap_mb: int) -> list[str]:
    """``java`` and the JVM options every broker tool runs with (logs in the home)."""
    return [
        java(),
        f"-Xms{min(256, heap_mb)}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
        f"-Dkafka.logs.dir={cfg.home / 'logs'}",
    ]


def classpath(cfg: BrokerConfig) -> list[str]:
    """The ``-cp`` option: every jar of ``broker/lib``."""
    return ["-cp", str(lib_dir(cfg.root) / "*")]
