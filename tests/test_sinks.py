"""Webhook sinks (issue 4): the pure decisions, then a real gateway posting to a real
local HTTP server (port 0), and no duplicates across a restart on the real broker."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from callcost.streams.config import Settings, Sink, parse_settings
from callcost.web import control as c
from callcost.web import sinks as sk
from tests.support.brokers import produce
from tests.support.gateway_client import Running, ask, healthy, recv
from tests.support.messages import alert
from tests.support.waiting import wait_for

# 14:02 UTC on the day of the vectors
AT_1402 = int(datetime(2026, 1, 15, 14, 2, tzinfo=UTC).timestamp() * 1000)


def an_alert(**kw: Any) -> dict:
    value = kw.pop("value", None)
    a = alert(**kw)
    if value is not None:
        a["value"] = value
    return a


# --------------------------------------------------------------------------- words


def test_text_of_a_firing_and_a_resolved_alert() -> None:
    firing = an_alert(since=AT_1402, value=6.12)
    firing.update(handled=34)
    text = sk.alert_text(firing, Settings())
    assert text == (
        ":red_circle: prg queue billing cost per call $6.12 above band $2.70-$5.60 "
        "(15m, 34 calls) since 14:02"
    )
    resolved = an_alert(since=AT_1402, value=5.1, state="resolved", at=AT_1402 + 29 * 60_000)
    assert sk.alert_text(resolved, Settings()) == (
        ":white_check_mark: prg queue billing cost per call $5.10 back within band "
        "$2.70-$5.60 (15m, 25 calls) at 14:31, above since 14:02"
    )


def test_text_uses_the_centres_currency_and_time_zone() -> None:
    settings = parse_settings(
        "[centres.prg]\ncurrency = 'EUR'\ntimezone = 'Europe/Prague'\n"
        "[centres.brn]\ncurrency = 'CZK'\n"
    )
    below = an_alert(since=AT_1402, value=2.0)
    below.update(direction="below", scope="centre", key="prg", handled=None)
    assert sk.alert_text(below, settings) == (
        ":large_blue_circle: prg cost per call €2.00 below band €2.70-€5.60 (15m) since 15:02"
    )
    brn = an_alert(centre="brn", since=AT_1402, value=1234.5)
    assert "CZK" in sk.alert_text(brn, settings)
    assert "1,234.50 CZK above band 2.70 CZK-5.60 CZK" in sk.alert_text(brn, settings)


def test_payload_signature_and_headers() -> None:
    firing = an_alert()
    body = sk.payload(firing, Settings())
    assert json.loads(body) == {"text": sk.alert_text(firing, Settings()), "alert": firing}
    sink = Sink(url="http://x/", secret="s3cret")
    headers = sk.headers(sink, firing, body, 1_800_000_000_123)
    expected = hmac.new(b"s3cret", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Callcost-Signature"] == f"sha256={expected}"
    assert headers["X-Callcost-Timestamp"] == "1800000000"
    assert headers["Content-Type"] == "application/json"
    again = sk.headers(sink, firing, body, 1_800_000_999_000)
    assert again["X-Callcost-Delivery"] == headers["X-Callcost-Delivery"]
    resolved = sk.headers(sink, {**firing, "state": "resolved"}, body, 0)
    assert resolved["X-Callcost-Delivery"] != headers["X-Callcost-Delivery"]
    assert "X-Callcost-Signature" not in sk.headers(Sink(url="http://x/"), firing, body, 0)


def test_backoff_doubles_with_jitter_up_to_a_cap() -> None:
    assert [sk.backoff_s(n, 0.5, 1.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [sk.backoff_s(n, 0.5, 0.0) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert sk.backoff_s(30, 0.5, 1.0) == sk.MAX_BACKOFF_S


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "ok"),
        (204, "ok"),
        (301, "fail"),
        (400, "fail"),
        (404, "fail"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_outcome(status: int, outcome: str) -> None:
    assert sk.outcome(status) == outcome


@pytest.mark.parametrize("module", ["callcost.web.sinks", "callcost.web.control"])
def test_cores_are_pure(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncio', 'aiohttp', 'aiokafka', 'kafka', 'websockets', 'faust')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(module))
    assert "time.time(" not in source and "datetime.now(" not in source


# --------------------------------------------------------------------------- decisions

START = AT_1402 + 3_600_000


def dispatcher(*sinks: Sink, ready: bool = True) -> tuple[sk.Dispatcher, c.ControlStore]:
    control = c.ControlStore()
    return sk.Dispatcher(sinks, control, START, ready=ready), control


def snooze(control: c.ControlStore, until: int, key: str = "billing") -> None:
    record = c.snooze_record(
        {
            "centre": "prg",
            "rule": "queue-15m",
            "key": key,
            "by": "eva",
            "for_s": (until - START) // 1000,
        },
        START,
        cancel=False,
    )
    control.apply(record.key, record.encoded()[1])


def fire(at: int = START, **kw: Any) -> tuple[dict, dict]:
    since = at - 60_000
    return (
        an_alert(since=since, at=at, **kw),
        an_alert(since=since, at=at + 300_000, state="resolved", **kw),
    )


def test_filters_and_once() -> None:
    all_, prg_queue, brn, resolved_only = (
        Sink(url="http://a/", name="all"),
        Sink(url="http://b/", name="q", centre="prg", scope="queue", rule="queue-15m"),
        Sink(url="http://c/", name="brn", centre="brn"),
        Sink(url="http://d/", name="res", state="resolved"),
    )
    d, _ = dispatcher(all_, prg_queue, brn, resolved_only)
    firing, resolved = fire()
    assert [s.name for s, _ in d.offer(firing, START)] == ["all", "q"]
    assert d.offer(firing, START) == []  # queued already: a duplicate
    assert [s.name for s, _ in d.offer(resolved, START)] == ["all", "q", "res"]
    assert d.skipped[("all", "duplicate")] == 1


def test_sent_records_are_never_sent_again() -> None:
    sink = Sink(url="http://a/", name="ops")
    d, control = dispatcher(sink, ready=False)
    firing, resolved = fire()
    for record in (c.sent_record("ops", firing, START), c.sent_record("other", resolved, START)):
        control.apply(record.key, record.encoded()[1])
    assert d.offer(firing, START) == [] and d.offer(resolved, START) == []  # not ready
    assert d.release(START) == [(sink, resolved)]  # firing was sent, resolved not yet
    assert d.skipped[("ops", "duplicate")] == 1
    d.delivered(sink, resolved)
    assert control.sent("ops", resolved["id"], "resolved")


def test_stale_messages_are_not_sent_and_nor_their_resolution() -> None:
    sink = Sink(url="http://a/", name="ops", replay_horizon_s=600)
    d, _ = dispatcher(sink)
    old_firing, old_resolved = fire(at=START - 600_001)
    recent_firing, recent_resolved = fire(at=START - 600_000, key="sales")
    assert d.offer(old_firing, START) == []
    assert d.skipped[("ops", "stale")] == 1
    # the resolution may be recent, but the sink never heard of the firing
    late_resolution = {**old_resolved, "at": START + 1000}
    assert d.offer(late_resolution, START) == []
    assert d.skipped[("ops", "unannounced")] == 1
    assert d.offer(recent_firing, START) == [(sink, recent_firing)]
    assert d.offer(recent_resolved, START) == [(sink, recent_resolved)]


def test_snoozed_messages_wait_for_the_snooze_to_end() -> None:
    sink = Sink(url="http://a/", name="ops")
    d, control = dispatcher(sink)
    snooze(control, START + 60_000)
    firing, resolved = fire()
    sales, _ = fire(key="sales")
    assert d.offer(firing, START) == []
    assert d.offer(sales, START) == [(sink, sales)]  # another key: not snoozed
    assert d.skipped[("ops", "snoozed")] == 1 and d.deferred == 1
    assert d.tick(START + 59_999) == []
    assert d.tick(START + 60_000) == [(sink, firing)]  # still firing: told now
    assert d.deferred == 0 and d.tick(START + 70_000) == []
    # snoozed again: the resolution waits too, and follows the firing
    snooze(control, START + 120_000)
    assert d.offer(resolved, START + 100_000) == []
    assert d.tick(START + 120_000) == [(sink, resolved)]


def test_an_alert_over_within_its_snooze_is_never_told() -> None:
    sink = Sink(url="http://a/", name="ops")
    d, control = dispatcher(sink)
    snooze(control, START + 600_000)
    firing, resolved = fire()
    assert d.offer(firing, START) == [] and d.offer(resolved, START) == []
    assert d.tick(START + 600_000) == [] and d.deferred == 0
    assert d.skipped[("ops", "unannounced")] == 1


def test_a_snooze_that_begins_while_queued_holds_the_message() -> None:
    sink = Sink(url="http://a/", name="ops")
    d, control = dispatcher(sink)
    firing, _ = fire()
    assert d.offer(firing, START) == [(sink, firing)]
    snooze(control, START + 1000)
    assert not d.take(sink, firing, START)
    assert d.tick(START + 1000) == [(sink, firing)]
    assert d.take(sink, firing, START + 1000)


def test_dropped_and_given_up_messages_free_their_mark() -> None:
    sink = Sink(url="http://a/", name="ops")
    d, _ = dispatcher(sink)
    firing, resolved = fire()
    d.offer(firing, START)
    d.abandoned(sink, firing, "dropped")
    assert d.offer(resolved, START) == []  # its firing was never told
    assert d.skipped[("ops", "dropped")] == 1 and d.skipped[("ops", "unannounced")] == 1


# --------------------------------------------------------------------------- a webhook


class Webhook:
    """A real HTTP server on port 0 that records every POST and answers ``statuses`` in
    turn (then 200); with ``hang`` it answers nothing until closed."""

    def __init__(self, statuses: tuple[int, ...] = (), hang: bool = False) -> None:
        self.attempts: list[tuple[dict[str, str], bytes]] = []
        self.delivered: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        self.release = threading.Event()
        if not hang:
            self.release.set()
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with hook.lock:
                    hook.attempts.append((headers, body))
                    status = hook.statuses.pop(0) if hook.statuses else 200
                    if status == 200:
                        hook.delivered.append((headers, body))
                hook.release.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/B0"

    def messages(self) -> list[tuple[str, str]]:
        with self.lock:
            return [
                (json.loads(b)["alert"]["id"], json.loads(b)["alert"]["state"])
                for _, b in self.delivered
            ]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Webhook]:
    server = Webhook()
    try:
        yield server
    finally:
        server.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def live(key: str = "billing", **kw: Any) -> tuple[dict, dict]:
    """A firing and its resolution that happen now."""
    at = now_ms()
    return (
        an_alert(key=key, since=at - 60_000, at=at, **kw),
        an_alert(key=key, since=at - 60_000, at=at + 1, state="resolved", **kw),
    )


def running(*sinks: Sink, **options: Any) -> Running:
    return Running(settings=Settings(sinks=sinks), sink_tick_s=0.05, **options)


SKIPPED = 'callcost_gateway_sink_skipped_total{sink="ops",reason="%s"}'


def settled(gw: Running, delivered: int, sink: str = "ops") -> dict[str, float] | None:
    """The gateway's metrics once ``sink`` has delivered ``delivered`` messages and has
    none waiting to be sent, else None. The gateway decides each message as it comes
    (queued, or skipped with a counted reason), so with the skips accounted for too,
    nothing more will be sent."""
    m = gw.metrics()
    done = (m[f'callcost_gateway_sink_deliveries_total{{sink="{sink}"}}'] == delivered
            and m[f'callcost_gateway_sink_queued{{sink="{sink}"}}'] == 0)
    return m if done else None


def value(alert_: dict) -> bytes:
    return json.dumps(alert_).encode()


def test_delivery_with_a_verifiable_signature(hook: Webhook) -> None:
    gw = running(Sink(url=hook.url, name="ops", secret="s3cret"))
    try:
        firing, resolved = live(value=6.12)
        gw.alerts(value(firing))
        wait_for(lambda: len(hook.delivered) == 1, what="the firing delivery")
        gw.alerts(value(resolved))
        wait_for(lambda: len(hook.delivered) == 2, what="the resolved delivery")
        assert hook.messages() == [(firing["id"], "firing"), (firing["id"], "resolved")]
        headers, body = hook.delivered[0]
        assert json.loads(body) == {"text": sk.alert_text(firing, Settings()), "alert": firing}
        assert json.loads(body)["text"].startswith(
            ":red_circle: prg queue billing cost per call $6.12 above band $2.70-$5.60 (15m, "
        )
        # signed: the timestamp header, a dot, the raw body (a replay shows an old one)
        signed = headers["x-callcost-timestamp"].encode() + b"." + body
        mac = hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
        assert headers["x-callcost-signature"] == f"sha256={mac}"
        unstamped = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["x-callcost-signature"] != f"sha256={unstamped}"
        assert hmac.compare_digest(headers["x-callcost-signature"], "sha256=" + mac)
        assert abs(int(headers["x-callcost-timestamp"]) - time.time()) < 60
        assert headers["content-type"] == "application/json"
        wrong = hmac.new(b"other", signed, hashlib.sha256).hexdigest()
        assert headers["x-callcost-signature"] != f"sha256={wrong}"
        m = gw.metrics()
        assert m['callcost_gateway_sink_deliveries_total{sink="ops"}'] == 2
        assert m['callcost_gateway_sink_failures_total{sink="ops"}'] == 0
        assert m['callcost_gateway_control_writes_total{type="sent",result="ok"}'] == 2
    finally:
        gw.close()


def test_retry_after_failures_then_one_delivery() -> None:
    hook = Webhook(statuses=(500, 503))
    gw = running(Sink(url=hook.url, name="ops", backoff_s=0.05))
    try:
        firing, _ = live()
        gw.alerts(value(firing), value(firing))  # the second is a duplicate message
        wait_for(lambda: len(hook.delivered) == 1, what="the delivery after two failures")
        m = wait_for(lambda: settled(gw, delivered=1), what="the one message to be done")
        gw.close()  # stopped, it has sent all it ever will
        assert len(hook.attempts) == 3 and hook.messages() == [(firing["id"], "firing")]
        # every attempt carries the same delivery id, for receivers that dedup
        assert len({h["x-callcost-delivery"] for h, _ in hook.attempts}) == 1
        assert m['callcost_gateway_sink_failures_total{sink="ops"}'] == 2
        assert m['callcost_gateway_sink_retries_total{sink="ops"}'] == 2
        assert m['callcost_gateway_sink_deliveries_total{sink="ops"}'] == 1
    finally:
        gw.close()
        hook.close()


def test_give_up_after_max_attempts_or_a_client_error() -> None:
    hook = Webhook(statuses=(500, 500, 404))
    gw = running(Sink(url=hook.url, name="ops", backoff_s=0.01, max_attempts=2))
    try:
        first, _ = live("a")
        second, _ = live("b")
        gw.alerts(value(first), value(second))
        gave_up = 'callcost_gateway_sink_skipped_total{sink="ops",reason="gave_up"}'
        wait_for(lambda: gw.metrics()[gave_up] == 2, what="two messages given up")
        m = gw.metrics()
        assert len(hook.attempts) == 3  # 500, 500: given up; 404: not tried again
        assert m['callcost_gateway_sink_failures_total{sink="ops"}'] == 3
        assert m['callcost_gateway_sink_deliveries_total{sink="ops"}'] == 0
        assert gw.get_json("/healthz")["sinks"]["ops"]["last_error"] == "HTTP 404"
    finally:
        gw.close()
        hook.close()


def test_a_slow_endpoint_delays_neither_websockets_nor_other_sinks(hook: Webhook) -> None:
    stuck = Webhook(hang=True)
    gw = running(
        Sink(url=stuck.url, name="stuck", timeout_s=20, queue_size=3),
        Sink(url=hook.url, name="fine"),
    )
    try:
        with gw.ws() as ws:
            ask(ws, {"op": "subscribe", "channel": "alerts"})
            alerts = [live(f"q{n}")[0] for n in range(10)]
            started = time.monotonic()
            gw.alerts(*(value(a) for a in alerts))
            assert time.monotonic() - started < 1.0
            got = [recv(ws, timeout=2) for _ in alerts]
            assert [m["key"] for m in got] == [a["key"] for a in alerts]
            assert time.monotonic() - started < 2.0
            wait_for(lambda: len(hook.delivered) == 10, timeout_s=10, what="the other sink")
            assert len(stuck.attempts) == 1  # still waiting for its first answer
            m = gw.metrics()
            # 10 queued at once, 3 fit: 7 dropped, oldest first
            assert m['callcost_gateway_sink_skipped_total{sink="stuck",reason="dropped"}'] == 7
            assert m['callcost_gateway_sink_queued{sink="stuck"}'] == 2  # and 1 in flight
            assert ask(ws, {"op": "ping"}) == {"type": "pong"}
    finally:
        gw.close()
        stuck.close()


def test_snoozed_sinks_stay_quiet_then_hear_what_still_fires(hook: Webhook) -> None:
    clock = [now_ms()]
    gw = running(Sink(url=hook.url, name="ops"), clock=lambda: clock[0])
    try:
        with gw.ws() as ws:
            ask(ws, {"op": "subscribe", "channel": "alerts"})
            reply = ask(
                ws,
                {
                    "op": "snooze",
                    "centre": "prg",
                    "rule": "queue-15m",
                    "key": "billing",
                    "for_s": 60,
                    "by": "eva",
                },
            )
            assert reply["type"] == "snooze"
            assert recv(ws)["type"] == "snoozed"
            billing, _ = live("billing")
            short, short_resolved = live("sales")
            snooze2 = ask(
                ws,
                {
                    "op": "snooze",
                    "centre": "prg",
                    "rule": "queue-15m",
                    "key": "sales",
                    "for_s": 60,
                    "by": "eva",
                },
            )
            assert snooze2["type"] == "snooze" and recv(ws)["type"] == "snoozed"
            gw.alerts(value(billing), value(short), value(short_resolved))
            # the state is still tracked and shown
            assert [recv(ws)["key"] for _ in range(3)] == ["billing", "sales", "sales"]
            assert [a["key"] for a in gw.get_json("/api/alerts")["alerts"]] == ["billing"]
            # each message is decided as it comes: all three wait or are skipped, none
            # is queued, so none can be sent
            m = settled(gw, delivered=0)
            assert m and m[SKIPPED % "snoozed"] == 2 and m[SKIPPED % "unannounced"] == 1
            assert hook.delivered == []
            clock[0] += 60_000  # both snoozes end: billing still fires, sales is over
            wait_for(lambda: len(hook.delivered) == 1, what="the delivery after the snooze")
            m = wait_for(lambda: settled(gw, delivered=1), what="the delivery to be done")
            gw.close()  # stopped, it has sent all it ever will
            assert hook.messages() == [(billing["id"], "firing")]
            assert m[SKIPPED % "snoozed"] == 2
            assert m[SKIPPED % "unannounced"] == 1
    finally:
        gw.close()


# --------------------------------------------------------------------------- Kafka

SENT_RECORDS = 'callcost_gateway_control_writes_total{type="sent",result="ok"}'


@pytest.mark.kafka
def test_no_duplicates_across_a_restart(
    kafka_bootstrap: str, kafka_topics: dict, hook: Webhook
) -> None:
    options = {
        "figures_topic": kafka_topics["cost-figures"],
        "alerts_topic": kafka_topics["cost-alerts"],
        "control_topic": kafka_topics["callcost-control"],
    }
    sink = Sink(url=hook.url, name="ops", backoff_s=0.05, replay_horizon_s=600)
    firing, resolved = live("billing")
    gw = running(sink, bootstrap=kafka_bootstrap, **options)
    try:
        wait_for(lambda: healthy(gw), timeout_s=60, what="the gateway to catch up")
        produce(kafka_bootstrap, options["alerts_topic"], [("prg", value(firing))])
        wait_for(lambda: len(hook.delivered) == 1, what="the firing delivery")
        wait_for(lambda: gw.metrics().get(SENT_RECORDS) == 1, what="the delivery record")
    finally:
        gw.close()

    # while the gateway is down: the resolution of what was sent, a firing within the
    # replay horizon, and one long before it
    recent, _ = live("sales")
    recent["at"] -= 300_000
    ancient, _ = live("team")
    ancient["at"] -= 700_000
    produce(
        kafka_bootstrap,
        options["alerts_topic"],
        [("prg", value(a)) for a in (resolved, ancient, recent)],
    )
    gw = running(sink, bootstrap=kafka_bootstrap, **options)
    try:
        wait_for(lambda: healthy(gw), timeout_s=60, what="the restarted gateway to catch up")
        wait_for(lambda: len(hook.delivered) >= 3, what="the deliveries after the restart")
        # the four messages are all accounted for (two delivered, a duplicate, a stale
        # one) and none waits: then the gateway is stopped and has sent all it will
        m = wait_for(lambda: (m := settled(gw, delivered=2)) and m.get(SENT_RECORDS) == 2
                     and m[SKIPPED % "duplicate"] + m[SKIPPED % "stale"] == 2 and m,
                     what="the deliveries and their records")
        gw.close()
        assert hook.messages() == [
            (firing["id"], "firing"),
            (firing["id"], "resolved"),
            (recent["id"], "firing"),
        ]
        assert m[SKIPPED % "duplicate"] == 1
        assert m[SKIPPED % "stale"] == 1
    finally:
        gw.close()

    # a third start sends nothing at all
    gw = running(sink, bootstrap=kafka_bootstrap, **options)
    try:
        wait_for(lambda: healthy(gw), timeout_s=60, what="the third gateway to catch up")
        # caught up, it has decided every message at once: the three sent before are
        # duplicates, and nothing is queued; stopped, it has sent all it ever will
        wait_for(lambda: (m := settled(gw, delivered=0)) and m[SKIPPED % "duplicate"] == 3,
                 what="the three duplicates")
        gw.close()
        assert len(hook.attempts) == 3
    finally:
        gw.close()


# --------------------------------------------------------------------------- issue 12


def test_names_from_the_data_arrive_inert(hook: Webhook) -> None:
    """Item 7: ``&``, ``<``, ``>`` of names reach Slack/Teams escaped."""
    gw = running(Sink(url=hook.url, name="ops"))
    try:
        firing, _ = live("<!channel> & <https://evil|sso>")
        gw.alerts(value(firing))
        wait_for(lambda: len(hook.delivered) == 1, what="the delivery")
        message = json.loads(hook.delivered[0][1])
        assert "prg queue &lt;!channel&gt; &amp; &lt;https://evil|sso&gt; cost per call" in (
            message["text"]
        )
        assert "<" not in message["text"] and ">" not in message["text"]
        assert message["alert"] == firing  # the alert itself is unchanged
    finally:
        gw.close()


def test_healthz_never_shows_a_sinks_url() -> None:
    """Item 8: an error quoting the URL (a credential) is shown with the sink's name."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gw = running(
        Sink(url=f"http://127.0.0.1:{closed}/services/T0/B0/SECRETPATH1", name="closed",
             max_attempts=1),
        Sink(url="http://127.0.0.1:99999/services/T0/B0/SECRETPATH2", name="bad",
             max_attempts=1),
    )
    try:
        firing, _ = live()
        gw.alerts(value(firing))
        sinks = wait_for(
            lambda: (s := gw.get_json("/healthz")["sinks"])["closed"]["last_error"]
            and s["bad"]["last_error"] and s,
            what="both sinks to fail",
        )
        assert "<sink bad>" in sinks["bad"]["last_error"]
        for path in ("/healthz", "/metrics"):
            _, _, body = gw.get(path)
            assert b"SECRETPATH" not in body and b"services/T0" not in body
    finally:
        gw.close()


def test_scrub_replaces_every_form_of_the_url() -> None:
    sink = Sink(url="https://u:pw@hooks.example/services/T0/B0/XYZ", name="ops")
    text = (
        "E: https://u:pw@hooks.example/services/T0/B0/XYZ u:pw@hooks.example/services/"
        "T0/B0/XYZ /services/T0/B0/XYZ"
    )
    scrubbed = sk.scrub(text, sink)
    assert "XYZ" not in scrubbed and "pw" not in scrubbed and "<sink ops>" in scrubbed
    assert sk.scrub("HTTP 500", sink) == "HTTP 500"
    spaced = Sink(url="http://h/a b/K", name="ops")
    assert "K" not in sk.scrub("at http://h/a%20b/K", spaced, ("http://h/a%20b/K",))


def test_an_endless_answer_does_not_hold_the_delivery() -> None:
    """Low: only the status of an answer matters; an endless body is not read."""
    sent = [0]

    class Endless(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while sent[0] < 1 << 31:
                    self.wfile.write(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    gw = running(Sink(url=url, name="ops", timeout_s=5, max_attempts=1))
    try:
        firing, _ = live()
        gw.alerts(value(firing))
        m = wait_for(lambda: settled(gw, delivered=1), timeout_s=4, what="the delivery")
        assert m['callcost_gateway_sink_failures_total{sink="ops"}'] == 0
        assert sent[0] < 1 << 31  # the gateway stopped reading long before
    finally:
        gw.close()
        server.shutdown()
        server.server_close()
