"""The broker's ``server.properties``: one combined KRaft node on 127.0.0.1, with the
SASL (PLAIN, JAAS) and TLS (PEM) settings of its client listener.

The client listener is named after its protocol (PLAINTEXT, SASL_PLAINTEXT, SSL or
SASL_SSL); the KRaft controller listener stays PLAINTEXT on 127.0.0.1.
"""

from __future__ import annotations

import contextlib

from callcost.broker_config import BROKER_USER, BrokerConfig
from callcost.broker_files import write_atomic


def sasl_properties(cfg: BrokerConfig) -> dict[str, str]:
    """The SASL_PLAINTEXT listener's PLAIN users, in the listener's JAAS configuration:
    ``username``/``password`` is what the broker itself logs in as, each ``user_NAME``
    a user it accepts (https://kafka.apache.org/documentation/#security_sasl_plain)."""
    users = {BROKER_USER: cfg.broker_password(), **cfg.sasl_users}
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{BROKER_USER}" password="{users[BROKER_USER]}" '
        + " ".join(f'user_{name}="{password}"' for name, password in users.items())
        + ";"
    )
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"listener.name.{cfg.security_protocol.lower()}.plain.sasl.jaas.config": jaas,
    }


def ssl_properties(cfg: BrokerConfig) -> dict[str, str]:
    """PEM key and certificate store, in one file of the home that only its owner reads
    (https://kafka.apache.org/documentation/#security_ssl, KIP-651)."""
    assert cfg.ssl_keyfile and cfg.ssl_certfile and cfg.ssl_cafile
    keystore = cfg.home / "keystore.pem"
    write_atomic(keystore, cfg.ssl_keyfile.read_text() + cfg.ssl_certfile.read_text(), 0o600)
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(cfg.ssl_cafile),
        "ssl.client.auth": "none",
    }


def server_properties(cfg: BrokerConfig) -> str:
    """The text of ``cfg.properties`` (with TLS, it also writes the PEM keystore)."""
    name = cfg.security_protocol  # the client listener's name is its protocol's
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cfg.controller_port}",
        "listeners": f"{name}://127.0.0.1:{cfg.port},CONTROLLER://127.0.0.1:{cfg.controller_port}",
        "advertised.listeners": f"{name}://127.0.0.1:{cfg.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": name,
        "listener.security.protocol.map": f"{name}:{name},CONTROLLER:PLAINTEXT",
        "log.dirs": str(cfg.data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        # Internal topics: one replica, and few partitions (the default 50 makes the first
        # consumer group wait while 50 partitions are created).
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "4",
        # A small machine: the cleaner's default 128 MB buffer is most of the heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    if cfg.sasl_users:
        props.update(sasl_properties(cfg))
    if cfg.ssl_certfile:
        props.update(ssl_properties(cfg))
    head = f"# Written by `callcost broker start` for {cfg.home}; rewritten at every start.\n"
    return head + "".join(f"{k}={v}\n" for k, v in props.items())


def running_port(cfg: BrokerConfig) -> int | None:
    """The client port in the home's ``server.properties`` (what a running broker uses)."""
    try:
        text = cfg.properties.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("advertised.listeners="):
            with contextlib.suppress(ValueError):
                return int(line.rsplit(":", 1)[1])
    return None
