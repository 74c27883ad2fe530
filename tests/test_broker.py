"""The local broker and the topics, against a real Kafka (no mocks).

Most tests use the session test broker. The stop, orphan and failure tests use short-lived
brokers of their own (ports 29192-29199, below the ephemeral ports; homes under tmp_path).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from callcost import broker, broker_config, broker_process
from callcost.errors import BrokerError
from callcost.streams import topics
from tests.support.brokers import fresh_topics, session_broker_config
from tests.support.processes import run_cli

pytestmark = pytest.mark.kafka


@pytest.fixture
def admin(kafka_bootstrap: str):
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-broker")
    yield client
    client.close()


# --------------------------------------------------------------------------- session broker


def test_start_is_idempotent(kafka_bootstrap: str) -> None:
    cfg = session_broker_config()
    before = broker.status(cfg)
    assert before["running"] and before["answers"]
    took = broker.start(cfg)
    assert took < 3.0, f"second start took {took:.1f} s"
    after = broker.status(cfg)
    assert after["pid"] == before["pid"]
    assert cfg.pid_file.read_text().strip() == str(before["pid"])


def test_status_command_prints_one_json_line(kafka_bootstrap: str) -> None:
    cfg = session_broker_config()
    out = run_cli("broker", "status", "--home", str(cfg.home), "--port", str(cfg.port))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert info["running"] is True
    assert info["answers"] is True
    assert info["bootstrap"] == kafka_bootstrap
    assert info["home"] == str(cfg.home)
    assert isinstance(info["pid"], int)


def test_metadata_lists_one_live_broker_and_the_topics(admin: KafkaAdminClient) -> None:
    cluster = admin.describe_cluster()
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    assert cluster["controller_id"] == 1
    assert set(topics.TOPIC_CONFIGS) <= set(admin.list_topics())


def test_topics_have_their_configs_and_partitions(admin: KafkaAdminClient) -> None:
    names = list(topics.TOPIC_CONFIGS)
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    )["topic"]
    for name in names:
        got = {k: v["value"] for k, v in described[name].items()}
        for key, want in topics.TOPIC_CONFIGS[name].items():
            assert got.get(key) == want, f"{name} {key}: {got.get(key)} != {want}"
    assert topics.TOPIC_CONFIGS[topics.FIGURES]["cleanup.policy"] == "compact"
    assert topics.TOPIC_CONFIGS[topics.CONTROL]["cleanup.policy"] == "compact"
    for t in admin.describe_topics(names):
        assert len(t["partitions"]) == 4, t["name"]


def test_topics_command_is_idempotent(kafka_bootstrap: str, admin: KafkaAdminClient) -> None:
    # Existing topics are fine, and are not changed (here: not re-partitioned).
    out = run_cli("topics", "--bootstrap", kafka_bootstrap, "--partitions", "2")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == len(topics.TOPIC_CONFIGS)
    for t in admin.describe_topics([topics.CALL_EVENTS]):
        assert len(t["partitions"]) == 4


def test_fresh_topics_are_private_copies(
    kafka_bootstrap: str, admin: KafkaAdminClient, kafka_topics: dict[str, str]
) -> None:
    other = fresh_topics(kafka_bootstrap, partitions=2)
    assert set(kafka_topics) == set(other) == set(topics.TOPIC_CONFIGS)
    assert not set(kafka_topics.values()) & set(other.values())
    assert not set(other.values()) & set(topics.TOPIC_CONFIGS)
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, other[topics.FIGURES])]
    )["topic"][other[topics.FIGURES]]
    assert described["cleanup.policy"]["value"] == "compact"
    for t in admin.describe_topics([other[topics.CALL_EVENTS]]):
        assert len(t["partitions"]) == 2
    admin.delete_topics(list(other.values()))


# --------------------------------------------------------------------------- own brokers


def _own(tmp_path: Path, port: int) -> broker_config.BrokerConfig:
    return broker_config.BrokerConfig(home=tmp_path / "broker", port=port, controller_port=port + 1)


def _gone(pid: int) -> bool:
    return not broker_process.alive(pid)


def test_stop_and_orphaned_broker(tmp_path: Path) -> None:
    cfg = _own(tmp_path, 29192)
    try:
        # Started by another process that then exits, as `callcost broker start` does.
        out = run_cli(
            "broker",
            "start",
            "--home",
            str(cfg.home),
            "--port",
            "29192",
            "--controller-port",
            "29193",
        )
        assert out.returncode == 0, out.stderr
        pid = int(cfg.pid_file.read_text())
        assert broker.status(cfg)["running"] is True

        assert broker.stop(cfg) == [pid]
        assert _gone(pid)
        assert not cfg.pid_file.exists()
        assert broker.status(cfg) == {
            "running": False,
            "pid": None,
            "bootstrap": "127.0.0.1:29192",
            "home": str(cfg.home),
            "answers": False,
        }
        t0 = time.monotonic()
        assert broker.stop(cfg) == []  # a second stop is a no-op
        assert time.monotonic() - t0 < 2

        # Restart (storage already formatted), then lose the pid file, as when a test
        # run is killed: status and stop still find the broker by its command line.
        broker.start(cfg)
        pid2 = int(cfg.pid_file.read_text())
        assert pid2 != pid
        cfg.pid_file.unlink()
        assert broker.status(cfg, check=False)["pid"] == pid2
        assert broker.start(cfg) < 3.0  # adopts it rather than starting a second one
        assert int(cfg.pid_file.read_text()) == pid2
        cfg.pid_file.unlink()
        assert broker.stop(cfg) == [pid2]
        assert _gone(pid2)
        assert broker.status(cfg, check=False)["running"] is False
    finally:
        broker.stop(cfg)


def test_port_taken_by_another_process_is_named(tmp_path: Path) -> None:
    cfg = _own(tmp_path, 29194)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 29194))
        squatter.listen()
        with pytest.raises(BrokerError) as err:
            broker.start(cfg, timeout_s=30)
    msg = str(err.value)
    assert "127.0.0.1:29194 is already taken" in msg
    assert f"pid {os.getpid()}" in msg
    assert broker.status(cfg, check=False)["running"] is False


def test_broker_that_dies_reports_its_log(tmp_path: Path, monkeypatch) -> None:
    cfg = _own(tmp_path, 29196)
    monkeypatch.setenv("CALLCOST_BROKER_JAVA_OPTS", "-XX:+NoSuchCallcostOption")
    try:
        with pytest.raises(BrokerError) as err:
            broker.start(cfg, timeout_s=60)
        msg = str(err.value)
        assert "exited with code" in msg
        assert "NoSuchCallcostOption" in msg
        assert not cfg.pid_file.exists()
    finally:
        broker.stop(cfg)


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-storage reads an id starting with '-' as an option (1 draw in 64 did)."""
    from callcost import broker_storage

    draws = iter([b"\xfb" + bytes(15), b"\x00" * 16])  # the first encodes to '-w...'
    monkeypatch.setattr(broker_storage.os, "urandom", lambda n: next(draws))
    assert broker_storage.new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
