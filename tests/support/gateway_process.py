"""``callcost gateway`` as a subprocess on a test's topics, and the JSON it serves."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import spawn


def start_gateway(bootstrap: str, names: dict[str, str], log_path: Path) -> tuple:
    """``callcost gateway`` on a free port, on these topics: (process, base URL)."""
    port = free_port()
    proc = spawn([
        "gateway",
        "--bootstrap", bootstrap, "--port", str(port),
        "--figures-topic", names["cost-figures"],
        "--alerts-topic", names["cost-alerts"],
        "--control-topic", names["callcost-control"],
    ], log_path)  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET ``url`` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return json.loads(r.read())


