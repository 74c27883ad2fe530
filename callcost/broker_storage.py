"""The broker's storage: its data folder, formatted once with a cluster id that the home
keeps in ``cluster.id``."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

from callcost.broker_config import BrokerConfig
from callcost.broker_files import log_tail, write_atomic
from callcost.broker_jvm import classpath, jvm_base
from callcost.errors import BrokerError

#: the heap of the storage format tool, in MB
FORMAT_HEAP_MB = 256


def prepare_storage(cfg: BrokerConfig, *, fresh: bool) -> None:
    """Make the data folder; ``fresh`` wipes it first (topics, offsets, groups)."""
    if fresh and cfg.data_dir.exists():
        shutil.rmtree(cfg.data_dir)
    cfg.data_dir.mkdir(exist_ok=True)


def new_cluster_id() -> str:
    """A random cluster id as Kafka writes them (URL-safe base64 of 16 bytes), never one
    that starts with ``-``: the storage tool would read that as an option (as Kafka's own
    ``Uuid.randomUuid`` does, it draws again)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def format_storage(cfg: BrokerConfig, cds_flags: list[str]) -> None:
    """Format the data folder once; the cluster id is kept in ``home/cluster.id``.

    ``cds_flags``: the broker's class-data-sharing options, of which the tool maps an
    existing archive only."""
    if (cfg.data_dir / "meta.properties").exists():
        return
    id_file = cfg.home / "cluster.id"
    cluster_id = id_file.read_text().strip() if id_file.exists() else ""
    if not cluster_id or cluster_id.startswith("-"):  # not formatted yet: draw it anew
        cluster_id = new_cluster_id()
        write_atomic(id_file, cluster_id + "\n")
    out = cfg.home / "logs" / "format.out"
    cmd = [
        *jvm_base(cfg, FORMAT_HEAP_MB),
        *[f for f in cds_flags if f.startswith("-XX:SharedArchiveFile=")],
        *classpath(cfg),
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(cfg.properties),
        "--ignore-formatted",
    ]
    with out.open("wb") as f:
        rc = subprocess.run(
            cmd, cwd=cfg.home, stdin=subprocess.DEVNULL, stdout=f, stderr=f, check=False
        ).returncode
    if rc != 0:
        raise BrokerError(
            f"formatting the broker storage in {cfg.data_dir} failed (exit {rc}); "
            f"last lines of {out}:\n{log_tail(out)}"
        )
