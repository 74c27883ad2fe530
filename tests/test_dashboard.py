"""``docs/grafana-dashboard.json``: an importable Grafana dashboard whose every metric
exists. A real worker (``--metrics-port``) and a real gateway are scraped; every name
in every panel expression must be one of theirs (a histogram's ``_bucket``, ``_sum``
and ``_count``, a counter's ``_total``)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway_process import start_gateway
from tests.support.processes import log_text, stop
from tests.support.waiting import wait_for
from tests.support.worker import Workers
from tests.vectorcheck import VECTORS

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
NAME = re.compile(r"\bcallcost_[a-z0-9_]+\b")
BOUND = re.compile(r"worker metrics at (http://[\d.]+:\d+/metrics)")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                             "_created")}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # a collapsed row holds its panels
    return out


def expressions(d: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(d) for t in p.get("targets", [])]


def exposed(url: str) -> set[str]:
    """Every name a query can use on ``url``'s metrics."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names


def test_dashboard_is_importable() -> None:
    d = dashboard()
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    assert d["title"] and d["uid"] and d["schemaVersion"] >= 30
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids))
    graphs = [p for p in panels(d) if p["type"] != "row"]
    assert len(graphs) >= 12
    for p in graphs:
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert NAME.search(t["expr"]), (p["title"], t["expr"])
    text = " ".join(expressions(d))
    for part in ("callcost_worker_", "callcost_gateway_"):
        assert part in text


def test_every_metric_of_the_dashboard_exists(
    kafka_bootstrap: str, kafka_topics: dict[str, str], tmp_path: Path
) -> None:
    names = kafka_topics
    workers = Workers(kafka_bootstrap, names, tmp_path, config=VECTORS / "edge" / "callcost.toml",
                      options=["--checkpoints-topic", names["callcost-checkpoints"],
                               "--metrics-port", "0"])
    gateway, base = start_gateway(kafka_bootstrap, names, tmp_path / "gateway.log")
    try:
        worker = workers.start()

        def worker_url() -> str | None:
            m = BOUND.search(log_text(worker))
            return m.group(1) if m else None

        url = wait_for(worker_url, 120, "the worker's metrics address", procs=[worker])

        def gateway_names() -> set[str] | None:
            try:
                return exposed(f"{base}/metrics")
            except OSError:
                return None

        have = exposed(url) | wait_for(gateway_names, 60, "the gateway's /metrics",
                                       procs=[gateway])
        used = {n for e in expressions(dashboard()) for n in NAME.findall(e)}
        assert used, "the dashboard names no metric"
        assert sorted(used - have) == []
        assert workers.stop(worker) == 0
    finally:
        stop(gateway)
        workers.close()
