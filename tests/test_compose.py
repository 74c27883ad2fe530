"""docker-compose.yml cannot run here (no Docker engine): check it with a parser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from callcost.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == {"kafka", "topics", "worker", "gateway", "simulator"}


def test_kafka_is_a_41_kraft_single_node(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    for key, value in env.items():
        if key.endswith(("REPLICATION_FACTOR", "MIN_ISR")):
            assert value == 1, key
    assert kafka["healthcheck"]["test"][1].startswith("/opt/kafka/bin/")


@pytest.mark.parametrize("name", ["topics", "worker", "gateway", "simulator"])
def test_app_services_run_real_commands(compose: dict, name: str, monkeypatch) -> None:
    svc = compose["services"][name]
    assert svc["environment"]["CALLCOST_BOOTSTRAP"] == "kafka:9092"
    config = svc["environment"]["CALLCOST_CONFIG"]
    assert config.startswith("/app/")
    assert (ROOT / config.removeprefix("/app/")).is_file()
    argv = svc["command"]
    assert argv[0] in COMMANDS
    monkeypatch.setattr("sys.argv", ["callcost", *argv])
    args = build_parser().parse_args(argv)  # exits on an unknown option
    assert args.command == argv[0]
    if name == "topics":
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
    else:
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_gateway_listens_on_all_interfaces_in_its_container(compose: dict) -> None:
    gw = compose["services"]["gateway"]
    argv = gw["command"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    port = argv[argv.index("--port") + 1]
    assert gw["ports"] == [f"{port}:{port}"]


def test_dockerfile_copies_what_the_package_needs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+)", text, flags=re.M))
    for folder in ("callcost", "streams", "agents", "web", "demo", "pyproject.toml"):
        assert folder in copied
        assert (ROOT / folder).exists()
    assert re.search(r"^FROM python:3\.11", text, flags=re.M)
