"""The broker's class-data-sharing archive: a dynamic archive of the classes the broker
loads, written by the first broker that stops gracefully (``broker/target/cds/``) and
mapped by every later start (about 1.5 s faster).

``CALLCOST_BROKER_CDS=0`` turns it off. An archive is keyed by the ``java`` and the jars;
one home at a time makes it (``broker-KEY.owner``), and the home notes the archive in
progress in ``cds-pending.json`` until its broker has exited.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from callcost.broker_config import BrokerConfig
from callcost.broker_files import write_atomic
from callcost.broker_jars import lib_dir
from callcost.broker_jvm import java
from callcost.broker_process import find_broker_pids


def _cds_dir(cfg: BrokerConfig) -> Path:
    return cfg.root / "broker" / "target" / "cds"


def _cds_key(cfg: BrokerConfig) -> str:
    h = hashlib.sha1()
    exe = Path(java()).resolve()
    h.update(f"{exe}:{exe.stat().st_mtime_ns}\n".encode())
    for jar in sorted(lib_dir(cfg.root).glob("*.jar")):
        st = jar.stat()
        h.update(f"{jar.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cds_pending(cfg: BrokerConfig) -> Path:
    return cfg.home / "cds-pending.json"


def cds_flags(cfg: BrokerConfig) -> list[str]:
    """JVM options that map the archive, or write it at exit when there is none yet (and
    no other home's broker is writing it); none when CDS is off."""
    if os.environ.get("CALLCOST_BROKER_CDS", "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    cds = _cds_dir(cfg)
    key = _cds_key(cfg)
    final = cds / f"broker-{key}.jsa"
    if final.exists():
        return [f"-XX:SharedArchiveFile={final}", "-Xshare:auto"]
    cds.mkdir(parents=True, exist_ok=True)
    owner = cds / f"broker-{key}.owner"
    with contextlib.suppress(OSError):
        other = Path(owner.read_text().strip())
        if other != cfg.home and find_broker_pids(other / "server.properties"):
            return []  # another broker is already making it
    home_hash = hashlib.sha1(str(cfg.home).encode()).hexdigest()[:8]
    tmp = cds / f"broker-{key}.{home_hash}.tmp"
    tmp.unlink(missing_ok=True)
    write_atomic(owner, str(cfg.home))
    pending = {"tmp": str(tmp), "final": str(final), "owner": str(owner)}
    write_atomic(_cds_pending(cfg), json.dumps(pending))
    return [f"-XX:ArchiveClassesAtExit={tmp}"]


def cds_finish(cfg: BrokerConfig, graceful: bool) -> None:
    """After the broker exited: keep the archive it wrote, if it exited cleanly."""
    try:
        pending = json.loads(_cds_pending(cfg).read_text())
    except (OSError, ValueError):
        return
    tmp, final, owner = Path(pending["tmp"]), Path(pending["final"]), Path(pending["owner"])
    with contextlib.suppress(OSError):
        if graceful and tmp.exists() and tmp.stat().st_size > 0:
            os.replace(tmp, final)
    tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        if owner.read_text().strip() == str(cfg.home):
            owner.unlink()
    _cds_pending(cfg).unlink(missing_ok=True)
