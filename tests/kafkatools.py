"""Helpers for tests that talk to the real test broker (see ``conftest.kafka_bootstrap``).

``fresh_topics`` gives one test its own copies of the callcost topics, so that tests do
not see each other's messages. Their names start with ``TMP_PREFIX``; the session
fixture deletes such leftovers, and ``delete_topics`` removes them after a test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable

from callcost import broker, broker_config
from callcost.topics_cmd import create_topics

#: Every private test topic starts with this.
TMP_PREFIX = "tmp-"

DEFAULT_TEST_PORT = 39092


def session_broker_config() -> broker.BrokerConfig:
    """The session test broker: port ``CALLCOST_TEST_BROKER_PORT`` (default 39092),
    controller on the next port, home ``var/test-broker`` (``var/test-broker-PORT`` for
    another port, so that two runs on two ports do not share a home)."""
    port = int(os.environ.get("CALLCOST_TEST_BROKER_PORT", str(DEFAULT_TEST_PORT)))
    name = "test-broker" if port == DEFAULT_TEST_PORT else f"test-broker-{port}"
    home = broker_config.repo_root() / "var" / name
    return broker.BrokerConfig(home=home, port=port, controller_port=port + 1)


def unique_prefix(label: str = "") -> str:
    """A prefix no other test uses, e.g. ``tmp-mytest-1a2b3c4d-``."""
    slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")[:40]
    middle = f"{slug}-" if slug else ""
    return f"{TMP_PREFIX}{middle}{uuid.uuid4().hex[:8]}-"


def fresh_topics(
    bootstrap: str, partitions: int = 4, *, prefix: str | None = None
) -> dict[str, str]:
    """Create private copies of every callcost topic (same configs) and return
    ``{canonical name: actual name}``, e.g. ``{"call-events": "tmp-1a2b3c4d-call-events"}``."""
    return create_topics(bootstrap, partitions, prefix=prefix or unique_prefix())


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics, ignoring those already gone."""
    from kafka import KafkaAdminClient

    names = list(names)
    if not names:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callcost-tests")
    try:
        admin.delete_topics(names, timeout_ms=15000, raise_errors=False)
    finally:
        admin.close()


def delete_tmp_topics(bootstrap: str) -> None:
    """Delete every private test topic left over from an earlier run."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callcost-tests")
    try:
        names = [t for t in admin.list_topics() if t.startswith(TMP_PREFIX)]
        if names:
            admin.delete_topics(names, timeout_ms=15000, raise_errors=False)
    finally:
        admin.close()
