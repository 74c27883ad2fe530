"""``/metrics`` scraped over HTTP from a real gateway and read with Prometheus' own text
parser: every metric the gateway has always exposed is there, with its type and help
text, and the counters move with traffic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callcost.streams.config import Settings, Sink
from tests.support.gateway_client import Running, ask
from tests.support.messages import T0, alert, figures_value
from tests.support.waiting import wait_for

#: (name as scraped, type, help): what the hand-written renderer wrote before
#: prometheus_client, in its order
METRICS = [
    ("callcost_gateway_connections", "gauge", "Open websocket connections."),
    ("callcost_gateway_connections_total", "counter", "Websocket connections accepted."),
    ("callcost_gateway_subscriptions", "gauge", "Subscriptions of the open connections."),
    (
        "callcost_gateway_pending_messages",
        "gauge",
        "Messages waiting in the outboxes of the open connections.",
    ),
    ("callcost_gateway_messages_sent_total", "counter", "Websocket messages sent, by type."),
    ("callcost_gateway_figures_consumed_total", "counter", "Figures messages read from Kafka."),
    ("callcost_gateway_alerts_consumed_total", "counter", "Alert messages read from Kafka."),
    (
        "callcost_gateway_bad_messages_total",
        "counter",
        "Kafka messages skipped because they could not be decoded, by topic and reason.",
    ),
    (
        "callcost_gateway_request_errors_total",
        "counter",
        "Websocket requests answered with an error, by code.",
    ),
    (
        "callcost_gateway_conflated_total",
        "counter",
        "Figures updates replaced by a newer one before a slow client read them.",
    ),
    (
        "callcost_gateway_slow_client_closes_total",
        "counter",
        "Connections closed (1013) because too many messages waited for them.",
    ),
    (
        "callcost_gateway_send_timeouts_total",
        "counter",
        "Connections closed (1013) because one message waited send_timeout_s for the client.",
    ),
    (
        "callcost_gateway_rate_limit_closes_total",
        "counter",
        "Connections closed (1008) for sending on after request_burst refused requests.",
    ),
    (
        "callcost_gateway_connections_refused_total",
        "counter",
        "Connections refused: too_many_connections (handshake answered 503), per_ip (closed "
        "at once).",
    ),
    (
        "callcost_gateway_reads_paused_total",
        "counter",
        "Times a connection was not read while its unread pongs filled the write buffer.",
    ),
    (
        "callcost_gateway_auth_refused_total",
        "counter",
        "Requests refused by access control, by kind (http, websocket handshake) and reason "
        "(unauthorized: 401, forbidden: 403 for the role, origin: 403 for the Origin).",
    ),
    (
        "callcost_gateway_http_requests_total",
        "counter",
        "HTTP requests other than websocket handshakes, by route and status.",
    ),
    (
        "callcost_gateway_reader_caught_up",
        "gauge",
        "1 once the topic's reader reached the end offsets it saw at start.",
    ),
    ("callcost_gateway_centres", "gauge", "Centres with figures."),
    ("callcost_gateway_figures", "gauge", "Figures held."),
    ("callcost_gateway_alerts_firing", "gauge", "Alerts firing now."),
    (
        "callcost_gateway_control_consumed_total",
        "counter",
        "Control records (acks, snoozes, deliveries) read from Kafka.",
    ),
    (
        "callcost_gateway_control_writes_total",
        "counter",
        "Control records written, by type and result.",
    ),
    ("callcost_gateway_acks", "gauge", "Acknowledgements held."),
    ("callcost_gateway_snoozes_active", "gauge", "Snoozes active now."),
    ("callcost_gateway_sink_deliveries_total", "counter", "Alert messages delivered (2xx)."),
    ("callcost_gateway_sink_failures_total", "counter", "Delivery attempts that failed."),
    (
        "callcost_gateway_sink_retries_total",
        "counter",
        "Delivery attempts made again after a failure.",
    ),
    (
        "callcost_gateway_sink_record_errors_total",
        "counter",
        "Deliveries whose record could not be written to the control topic.",
    ),
    ("callcost_gateway_sink_queued", "gauge", "Alert messages waiting to be delivered."),
    (
        "callcost_gateway_sink_skipped_total",
        "counter",
        "Alert messages a sink takes but was not sent, by reason: duplicate (sent already), "
        "stale (older than the replay horizon at start), snoozed (waited for a snooze), "
        "unannounced (resolved of a firing never sent), dropped (queue full), gave_up (every "
        "attempt failed).",
    ),
]


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    """A webhook endpoint that takes every post (204)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gateway(hook: str) -> Iterator[Running]:
    """A gateway without Kafka, with one webhook sink (so the per-sink metrics have a
    sample), whose clock stands just after the alerts the test sends."""
    running = Running(
        settings=Settings(sinks=(Sink(url=hook, name="ops"),)),
        clock=lambda: T0 + 120_000,
        sink_tick_s=0.05,
    )
    try:
        yield running
    finally:
        running.close()


def scrape(gw: Running) -> dict[str, tuple[str, str, dict[tuple, float]]]:
    """name as scraped -> (type, help, {labels: value}), by the Prometheus parser."""
    code, headers, body = gw.get("/metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        name = family.name + ("_total" if family.type == "counter" else "")
        samples = {
            tuple(sorted(s.labels.items())): s.value
            for s in family.samples
            if s.name == name  # not _created
        }
        out[name] = (family.type, family.documentation, samples)
    return out


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped[name][2][tuple(sorted(labels.items()))]


def test_every_metric_is_there_with_its_type_and_help(gateway: Running) -> None:
    scraped = scrape(gateway)
    assert list(scraped) == [name for name, _, _ in METRICS]
    for name, kind, help_text in METRICS:
        assert scraped[name][:2] == (kind, help_text), name
    # the label sets that are there from the start, zero
    assert value(scraped, "callcost_gateway_request_errors_total", code="unknown_op") == 0
    assert value(scraped, "callcost_gateway_sink_deliveries_total", sink="ops") == 0
    assert value(scraped, "callcost_gateway_sink_skipped_total", sink="ops", reason="stale") == 0
    assert value(
        scraped, "callcost_gateway_auth_refused_total", kind="http", reason="origin"
    ) == 0
    assert value(
        scraped, "callcost_gateway_control_writes_total", type="ack", result="ok"
    ) == 0


def test_counters_move_with_traffic(gateway: Running) -> None:
    before = scrape(gateway)
    gateway.figures(figures_value("prg", T0), b"{bad")
    firing = alert()
    gateway.alerts(json.dumps(firing).encode())
    with gateway.ws() as ws:
        assert ask(ws, {"op": "subscribe", "channel": "figures", "centre": "prg"})["seq"] == 0
        assert ask(ws, {"op": "nope"})["error"] == "unknown_op"
        reply = ask(ws, {"op": "ack", "id": firing["id"], "by": "ana"})
        assert reply["type"] == "acked"
        during = scrape(gateway)
        assert value(during, "callcost_gateway_connections") == 1
        assert value(during, "callcost_gateway_subscriptions") == 1
    sent = {"type": "sent", "result": "ok"}
    wait_for(  # the delivery's record is written after the delivery is counted
        lambda: value(scrape(gateway), "callcost_gateway_control_writes_total", **sent) == 1,
        what="the record of the sink's delivery",
    )
    after = scrape(gateway)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - before[name][2].get(
            tuple(sorted(labels.items())), 0.0
        )

    assert moved("callcost_gateway_connections_total") == 1
    assert moved("callcost_gateway_figures_consumed_total") == 1
    assert moved("callcost_gateway_alerts_consumed_total") == 1
    assert moved("callcost_gateway_bad_messages_total", topic="cost-figures",
                 reason="invalid_json") == 1  # fmt: skip
    assert moved("callcost_gateway_request_errors_total", code="unknown_op") == 1
    assert moved("callcost_gateway_messages_sent_total", type="snapshot") == 1
    assert moved("callcost_gateway_messages_sent_total", type="acked") == 1
    assert moved("callcost_gateway_control_writes_total", type="ack", result="ok") == 1
    assert moved("callcost_gateway_sink_deliveries_total", sink="ops") == 1
    assert moved("callcost_gateway_http_requests_total", route="/metrics", status="200") >= 3
    assert value(after, "callcost_gateway_figures") == 15
    assert value(after, "callcost_gateway_centres") == 1
    assert value(after, "callcost_gateway_alerts_firing") == 1
    assert value(after, "callcost_gateway_acks") == 1
    assert value(after, "callcost_gateway_connections") == 0
    assert value(after, "callcost_gateway_sink_queued", sink="ops") == 0


def test_two_gateways_in_one_process_count_apart(gateway: Running) -> None:
    """Each gateway has its own registry: one's traffic is not the other's."""
    other = Running()
    try:
        gateway.figures(figures_value("prg", T0))
        assert value(scrape(gateway), "callcost_gateway_figures_consumed_total") == 1
        assert value(scrape(other), "callcost_gateway_figures_consumed_total") == 0
    finally:
        other.close()
