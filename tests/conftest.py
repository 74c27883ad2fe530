"""Shared fixtures.

``kafka_bootstrap`` starts the dedicated test broker (home ``var/test-broker``, port
``CALLCOST_TEST_BROKER_PORT``, default 29092) once per session, creates the callcost
topics on it, and stops it at the end. It never skips: a missing broker is started.
``CALLCOST_TEST_BROKER_KEEP=1`` leaves it running afterwards (faster reruns).

Every test that uses it is marked ``kafka`` automatically, so ``-m 'not kafka'`` runs
the rest without Java.

The fixtures several modules use are here (``worker``, ``workers``, ``gw``); the helpers
they are built from are in ``tests/support/``. ``tests/support/no_skips.py`` makes any
skip fail the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from callcost import broker
from callcost.topics_cmd import create_topics
from tests.support import two_centres
from tests.support.brokers import (
    delete_tmp_topics,
    delete_topics,
    fresh_topics,
    session_broker_config,
    unique_prefix,
)
from tests.support.gateway_client import Running
from tests.support.worker import Workers, recovery_options

pytest_plugins = ["tests.support.no_skips"]


def _other_sessions(sessions: Path) -> list[int]:
    """Pids of other live test sessions that use the same test broker."""
    others = []
    for f in sessions.glob("*"):
        if f.name.isdigit() and int(f.name) != os.getpid():
            if Path(f"/proc/{f.name}").exists():
                others.append(int(f.name))
            else:
                f.unlink(missing_ok=True)
    return others


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    cfg = session_broker_config()
    # Several test runs may share the broker (same checkout, same port): each registers
    # here, and the last one out stops it.
    sessions = cfg.home / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    me = sessions / str(os.getpid())
    me.touch()
    try:
        # fresh: a broker not already running starts on empty storage, so that no
        # offsets, groups or topics of an earlier session leak into this one.
        took = broker.start(cfg, timeout_s=180, fresh=True)
        print(f"\ntest broker ready at {cfg.bootstrap} in {took:.1f} s", file=sys.stderr)
        create_topics(cfg.bootstrap, partitions=4)
        if not _other_sessions(sessions):
            delete_tmp_topics(cfg.bootstrap)  # leftovers of a killed run
        yield cfg.bootstrap
    finally:
        me.unlink(missing_ok=True)
        keep = os.environ.get("CALLCOST_TEST_BROKER_KEEP", "") in ("1", "true", "yes")
        if not keep and not _other_sessions(sessions):
            broker.stop(cfg)


@pytest.fixture
def unique_topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic-name prefix of this test alone, e.g. ``tmp-test-foo-1a2b3c4d-``."""
    return unique_prefix(request.node.name)


@pytest.fixture
def kafka_topics(kafka_bootstrap: str, unique_topic_prefix: str) -> Iterator[dict[str, str]]:
    """This test's own copies of the callcost topics: ``{canonical name: actual name}``.
    Deleted afterwards."""
    names = fresh_topics(kafka_bootstrap, 4, prefix=unique_topic_prefix)
    yield names
    try:
        delete_topics(kafka_bootstrap, names.values())
    except Exception as exc:  # cleanup only; the session start removes leftovers too
        print(f"could not delete test topics {sorted(names.values())}: {exc}", file=sys.stderr)


@pytest.fixture
def worker(
    kafka_bootstrap: str, kafka_topics: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[Path], subprocess.Popen]]:
    """Start ``callcost worker`` on this test's topics: yields a function that starts
    one with a config file; each still running at the end is stopped."""
    w = Workers(kafka_bootstrap, kafka_topics, tmp_path)
    yield w.start
    w.close()


@pytest.fixture
def workers(
    kafka_bootstrap: str, kafka_topics: dict[str, str], tmp_path: Path
) -> Iterator[Workers]:
    """Workers in one consumer group on this test's topics, checkpointing every second
    into this test's checkpoint topic, on the ``two-centres`` config unless told."""
    w = Workers(kafka_bootstrap, kafka_topics, tmp_path, config=two_centres.CONFIG,
                options=recovery_options(kafka_topics), label="test-recovery")
    yield w
    w.close()


@pytest.fixture
def gw() -> Iterator[Running]:
    """The gateway in-process, without Kafka, on a free port."""
    running = Running()
    try:
        yield running
    finally:
        running.close()


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python loads its protocol schemas with importlib.resources' legacy API.
    for line in (
        "ignore:read_text is deprecated:DeprecationWarning",
        "ignore:open_text is deprecated:DeprecationWarning",
    ):
        config.addinivalue_line("filterwarnings", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)
