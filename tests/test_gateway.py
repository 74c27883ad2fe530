"""The gateway on a real server (port 0): real websocket clients, real HTTP requests.

The server runs in its own event loop thread, so the tests use ordinary blocking
clients (``websockets.sync.client``, ``http.client``). Most tests feed the stores through
the gateway's own ingest entry points (the code path of the Kafka readers); the test
marked ``kafka`` feeds them from a real broker.
"""

from __future__ import annotations

import json
import socket

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.brokers import produce
from tests.support.gateway_client import Running, ask, healthy, recv, send
from tests.support.messages import T0, alert, big_figures, centre_figures, figures_value
from tests.support.ports import free_port
from tests.support.tools import chromium
from tests.support.waiting import wait_for

# --------------------------------------------------------------------------- HTTP


def test_api_figures(gw: Running) -> None:
    assert gw.get_json("/api/figures") == {"figures": []}
    gw.figures(figures_value("prg", T0), figures_value("brn", T0 + 1000))
    everything = gw.get_json("/api/figures")["figures"]
    assert len(everything) == 30
    assert [f["centre"] for f in everything] == ["brn"] * 15 + ["prg"] * 15
    prg = gw.get_json("/api/figures?centre=prg")["figures"]
    assert prg == centre_figures("prg", T0)
    queues = gw.get_json("/api/figures?centre=prg&scope=queue&window=1h")["figures"]
    assert [(f["key"], f["window"]) for f in queues] == [("billing", "1h"), ("sales", "1h")]
    # an older message for a centre changes nothing
    gw.figures(figures_value("prg", T0 - 1000, total=1.0))
    assert gw.get_json("/api/figures?centre=prg")["figures"] == prg
    gw.figures(figures_value("prg", T0 + 5000, total=80.0))
    totals = {f["total"] for f in gw.get_json("/api/figures?centre=prg&scope=centre")["figures"]}
    assert totals == {80.0}


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/figures?scope=team", "unknown_scope"),
        ("/api/figures?centre=a%20b", "invalid_value"),
        ("/api/figures?window=2d", "invalid_value"),
        ("/api/figures?center=prg", "unknown_parameter"),
        ("/api/alerts?state=open", "invalid_value"),
    ],
)
def test_api_bad_parameters(gw: Running, path: str, code: str) -> None:
    body = gw.get_json(path, status=400)
    assert body["error"] == code and body["message"]


def test_api_alerts(gw: Running) -> None:
    a1 = alert(key="billing", since=T0, at=T0 + 60000)
    b1 = alert(centre="brn", key="q", since=T0 - 30000, at=T0 + 30000)
    r1 = alert(key="billing", since=T0, at=T0 + 120000, state="resolved")
    gw.alerts(*(json.dumps(a).encode() for a in (a1, b1)))
    # firing alerts carry their ack and snooze (none here); in the history, firing
    # messages carry their ack
    now = [{**a, "ack": None, "snooze": None} for a in (a1, b1)]
    assert gw.get_json("/api/alerts") == {"alerts": now}  # default: firing
    gw.alerts(json.dumps(r1).encode(), json.dumps(a1).encode())  # a duplicate too
    assert gw.get_json("/api/alerts?state=firing") == {"alerts": now[1:]}
    a1_, b1_ = {**a1, "ack": None}, {**b1, "ack": None}
    assert gw.get_json("/api/alerts?state=all") == {"alerts": [b1_, a1_, r1]}
    assert gw.get_json("/api/alerts?state=all&centre=prg") == {"alerts": [a1_, r1]}
    assert gw.get_json("/api/alerts?centre=prg") == {"alerts": []}


def test_healthz_without_kafka_is_ok(gw: Running) -> None:
    gw.figures(figures_value("prg", T0))
    body = gw.get_json("/healthz")
    assert body["status"] == "ok" and body["caught_up"] is True
    assert body["readers"] == {} and body["centres"] == 1 and body["figures"] == 15


def test_healthz_is_503_until_the_readers_catch_up() -> None:
    """With no broker at the address, the readers retry and the gateway still serves."""
    running = Running(f"127.0.0.1:{free_port()}")
    try:
        body = running.get_json("/healthz", status=503)
        assert body["status"] == "starting" and body["caught_up"] is False
        assert set(body["readers"]) == {"cost-figures", "cost-alerts", "callcost-control"}
        assert not any(r["caught_up"] for r in body["readers"].values())
        wait_for(
            lambda: all(r["error"] for r in running.get_json("/healthz", 503)["readers"].values()),
            what="the readers to report their connection error",
        )
        assert running.get_json("/api/figures") == {"figures": []}
        m = running.metrics()
        assert m['callcost_gateway_reader_caught_up{topic="cost-figures"}'] == 0
    finally:
        running.close()


def test_static_files(gw: Running) -> None:
    status, headers, body = gw.get("/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="/static/live.js">' in body
    status, headers, body = gw.get("/static/live.js")
    assert status == 200 and headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"/ws" in body and int(headers["content-length"]) == len(body)
    status, headers, _ = gw.get("/static/live.css")
    assert status == 200 and headers["content-type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../gateway.py",
        "/static/%2e%2e/gateway.py",
        "/static/..%2fprotocol.py",
        "/static/%2fetc/passwd",
        "/static//etc/passwd",
        "/static/",
        "/static/nope.js",
        "/nope",
        "/api",
        "/index.html",
    ],
)
def test_not_found(gw: Running, path: str) -> None:
    status, headers, body = gw.get(path)
    assert status == 404, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "not_found"


def test_only_get(gw: Running) -> None:
    status, headers, body = gw.get("/api/figures", method="DELETE")
    assert status == 405 and headers["allow"] == "GET"
    assert json.loads(body)["error"] == "method_not_allowed"


def test_metrics(gw: Running) -> None:
    m = gw.metrics()
    assert m["callcost_gateway_connections"] == 0
    assert m['callcost_gateway_request_errors_total{code="unknown_op"}'] == 0
    gw.figures(figures_value("prg", T0), b"{bad", b'{"type": "figures"}', None)
    gw.alerts(json.dumps(alert()).encode(), b"[]")
    with gw.ws() as ws:
        ask(ws, {"op": "subscribe", "channel": "figures", "centre": "prg"})
        ask(ws, {"op": "subscribe", "channel": "alerts"})
        assert ask(ws, {"op": "nope"})["error"] == "unknown_op"
        assert ask(ws, {"op": "subscribe"})["error"] == "missing_field"
        m = gw.metrics()
        assert m["callcost_gateway_connections"] == 1
        assert m["callcost_gateway_subscriptions"] == 2
    m = gw.metrics()
    assert m['callcost_gateway_request_errors_total{code="unknown_op"}'] == 1
    assert m['callcost_gateway_request_errors_total{code="missing_field"}'] == 1
    assert m['callcost_gateway_messages_sent_total{type="snapshot"}'] == 2
    assert m['callcost_gateway_messages_sent_total{type="error"}'] == 2
    assert m["callcost_gateway_figures_consumed_total"] == 1
    assert m["callcost_gateway_alerts_consumed_total"] == 1
    bad = 'callcost_gateway_bad_messages_total{topic="%s",reason="%s"}'
    assert m[bad % ("cost-figures", "invalid_json")] == 1
    assert m[bad % ("cost-figures", "missing_field")] == 1
    assert m[bad % ("cost-figures", "no_value")] == 1
    assert m[bad % ("cost-alerts", "not_an_object")] == 1
    assert m["callcost_gateway_figures"] == 15
    assert m["callcost_gateway_alerts_firing"] == 1
    assert m["callcost_gateway_connections_total"] == 1
    # counted once answered: the two /metrics requests before this one
    assert m['callcost_gateway_http_requests_total{route="/metrics",status="200"}'] == 2


# --------------------------------------------------------------------------- websocket


def test_websocket_figures_snapshot_then_updates(gw: Running) -> None:
    gw.figures(figures_value("prg", T0))
    with gw.ws() as ws:
        snap = ask(
            ws,
            {
                "op": "subscribe",
                "channel": "figures",
                "centre": "prg",
                "scope": "queue",
                "window": "15m",
                "sub": "q",
            },
        )
        assert snap["type"] == "snapshot" and snap["seq"] == 0 and snap["as_of"] == T0
        assert snap["figures"] == [
            f for f in centre_figures("prg", T0) if f["scope"] == "queue" and f["window"] == "15m"
        ]
        for n in (1, 2, 3):
            gw.figures(figures_value("brn", T0 + n * 1000))  # not subscribed
            gw.figures(figures_value("prg", T0 + n * 1000, total=10.0 * n))
            update = recv(ws)
            assert update["type"] == "update" and update["sub"] == "q"
            assert update["seq"] == n and update["as_of"] == T0 + n * 1000
            assert [(f["key"], f["total"]) for f in update["figures"]] == [
                ("billing", 5.0 * n),
                ("sales", 5.0 * n),
            ]
        assert ask(ws, {"op": "unsubscribe", "sub": "q"}) == {"type": "unsubscribed", "sub": "q"}
        gw.figures(figures_value("prg", T0 + 9000))
        assert ask(ws, {"op": "ping", "id": 1}) == {"type": "pong", "id": 1}


def test_websocket_alerts(gw: Running) -> None:
    firing = alert(key="billing")
    gw.alerts(json.dumps(firing).encode())
    with gw.ws() as ws, gw.ws() as other:
        snap = ask(ws, {"op": "subscribe", "channel": "alerts", "centre": "prg"})
        assert snap == {
            "type": "snapshot",
            "sub": "s1",
            "channel": "alerts",
            "seq": 0,
            "centre": "prg",
            "scope": None,
            "rule": None,
            "key": None,
            "state": None,
            "alerts": [{**firing, "ack": None, "snooze": None}],
            "snoozes": [],
        }
        assert ask(other, {"op": "subscribe", "channel": "alerts", "centre": "brn"})["alerts"] == []
        resolved = alert(key="billing", state="resolved", at=T0 + 300000)
        gw.alerts(json.dumps(resolved).encode(), json.dumps(alert(centre="brn")).encode())
        got = recv(ws)
        assert got == {
            "type": "alert",
            "sub": "s1",
            "seq": 1,
            **{k: v for k, v in resolved.items() if k != "type"},
        }
        assert recv(other)["centre"] == "brn"
        assert ask(ws, {"op": "ping"}) == {"type": "pong"}  # nothing else came for prg


def test_websocket_errors_keep_the_connection(gw: Running) -> None:
    with gw.ws() as ws:
        ws.send("not json")
        assert recv(ws)["error"] == "invalid_json"
        ws.send(b'{"op": "ping", "id": "binary"}')
        assert recv(ws) == {"type": "pong", "id": "binary"}
        error = ask(
            ws, {"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "teams"}
        )
        assert error == {
            "type": "error",
            "error": "unknown_scope",
            "request": "subscribe",
            "message": error["message"],
        }
        assert '"teams"' in error["message"]
        for i in range(64):
            assert (
                ask(ws, {"op": "subscribe", "channel": "figures", "centre": f"c{i}"})["type"]
                == "snapshot"
            )
        assert ask(ws, {"op": "subscribe", "channel": "alerts"})["error"] == (
            "too_many_subscriptions"
        )
        assert ask(ws, {"op": "ping"}) == {"type": "pong"}


def test_websocket_rejects_huge_frames(gw: Running) -> None:
    with gw.ws() as ws:
        ws.send(json.dumps({"op": "ping", "id": "x" * 100_000}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def read_ready(ws: ClientConnection, into: list[dict]) -> None:
    """Append the messages already received, without waiting."""
    while True:
        try:
            into.append(json.loads(ws.recv(timeout=0)))
        except TimeoutError:
            return


def stalled_client(gw: Running) -> ClientConnection:
    """A client that stops reading after one message: a tiny receive buffer, and the
    websockets client stops reading the socket once one message waits."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    return connect(f"ws://127.0.0.1:{gw.port}/ws", sock=sock, max_queue=1)


def test_slow_client_gets_conflated_figures_and_blocks_nobody() -> None:
    gw = Running(soft_limit=4, hard_limit=40)
    try:
        with stalled_client(gw) as slow, gw.ws() as fast:
            check_conflation(gw, slow, fast)
    finally:
        gw.close()


def check_conflation(gw: Running, slow: ClientConnection, fast: ClientConnection) -> None:
    request = {"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "queue"}
    send(slow, request)
    assert ask(fast, request)["type"] == "snapshot"
    last = T0 + 200 * 1000
    fast_seen: list[dict] = []
    for n in range(1, 201):
        gw.figures(big_figures("prg", T0 + n * 1000))
        # the fast client keeps up while the slow one is stalled
        read_ready(fast, fast_seen)
    while not fast_seen or fast_seen[-1]["as_of"] != last:
        fast_seen.append(recv(fast))
    assert [m["seq"] for m in fast_seen] == list(range(1, len(fast_seen) + 1))
    assert gw.metrics()["callcost_gateway_conflated_total"] > 0
    # the slow client reads at last: seq without gaps, ending on the newest figures
    slow_seen = [recv(slow)]
    while slow_seen[-1].get("as_of") != last:
        slow_seen.append(recv(slow))
    assert slow_seen[0]["type"] == "snapshot"
    assert [m["seq"] for m in slow_seen] == list(range(len(slow_seen)))
    assert len(slow_seen) < 200
    assert len(slow_seen[-1]["figures"]) == 180
    assert gw.metrics()["callcost_gateway_slow_client_closes_total"] == 0


def test_slow_client_is_closed_when_alerts_overflow() -> None:
    gw = Running(soft_limit=4, hard_limit=40)
    try:
        with stalled_client(gw) as slow, gw.ws() as fast:
            check_overflow(gw, slow, fast)
    finally:
        gw.close()


def check_overflow(gw: Running, slow: ClientConnection, fast: ClientConnection) -> None:
    send(slow, {"op": "subscribe", "channel": "alerts"})
    assert ask(fast, {"op": "subscribe", "channel": "alerts"})["type"] == "snapshot"
    total = 400
    for n in range(total):
        a = alert(key=f"q{n}")
        a["note"] = "x" * 20_000  # big messages fill the socket buffers quickly
        gw.alerts(json.dumps(a).encode())
        assert recv(fast)["key"] == f"q{n}"  # alerts are never dropped
    wait_for(
        lambda: gw.metrics()["callcost_gateway_slow_client_closes_total"] == 1,
        what="the slow client to be closed",
    )
    received = 0
    with pytest.raises(ConnectionClosed) as info:
        while True:
            message = recv(slow)
            received += message["type"] == "alert"
    assert info.value.rcvd is not None and info.value.rcvd.code == 1013
    assert 0 < received < total
    assert ask(fast, {"op": "ping"}) == {"type": "pong"}


def test_stop_closes_clients() -> None:
    gw = Running()
    with gw.ws() as ws:
        assert ask(ws, {"op": "ping"}) == {"type": "pong"}
        gw.close()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001


# --------------------------------------------------------------------------- Kafka


@pytest.mark.kafka
def test_gateway_on_kafka_rebuilds_after_restart(
    kafka_bootstrap: str, kafka_topics: dict[str, str]
) -> None:
    figures_topic, alerts_topic = kafka_topics["cost-figures"], kafka_topics["cost-alerts"]
    a1 = alert(key="billing", since=T0, at=T0 + 60000)
    a2 = alert(key="sales", since=T0 + 1000, at=T0 + 61000)
    r1 = alert(key="billing", since=T0, at=T0 + 120000, state="resolved")
    r2 = alert(key="sales", since=T0 + 1000, at=T0 + 180000, state="resolved")
    produce(
        kafka_bootstrap,
        figures_topic,
        [
            ("prg", figures_value("prg", T0, total=10.0)),
            ("brn", figures_value("brn", T0, total=20.0)),
            ("prg", figures_value("prg", T0 + 1000, total=30.0)),
            ("prg", figures_value("prg", T0 - 5000, total=99.0)),  # late: ignored
            ("prg", b"not json"),  # counted and skipped
        ],
    )
    produce(
        kafka_bootstrap,
        alerts_topic,
        [
            ("prg", json.dumps(a1).encode()),
            ("prg", json.dumps(a2).encode()),
            ("prg", json.dumps(r1).encode()),
            ("prg", b'{"type": "alert"}'),  # counted and skipped
        ],
    )
    options = {
        "figures_topic": figures_topic,
        "alerts_topic": alerts_topic,
        "control_topic": kafka_topics["callcost-control"],
    }
    # firing alerts carry their ack (and, when firing now, their snooze): none here
    a1_, a2_ = ({**a, "ack": None} for a in (a1, a2))

    gw = Running(kafka_bootstrap, **options)
    try:
        wait_for(lambda: healthy(gw), timeout_s=60, what="the gateway to catch up")
        assert gw.get_json("/api/figures?centre=prg")["figures"] == centre_figures(
            "prg", T0 + 1000, total=30.0
        )
        assert gw.get_json("/api/figures?centre=brn")["figures"] == centre_figures(
            "brn", T0, total=20.0
        )
        assert gw.get_json("/api/alerts?state=all") == {"alerts": [a1_, a2_, r1]}
        assert gw.get_json("/api/alerts") == {"alerts": [{**a2_, "snooze": None}]}
        health = gw.get_json("/healthz")
        assert health["readers"][figures_topic]["caught_up"] is True
        assert health["readers"][figures_topic]["partitions"] == 4
        assert health["readers"][figures_topic]["to_catch_up"] == 0
        assert health["readers"][alerts_topic]["error"] is None
        m = gw.metrics()
        bad = 'callcost_gateway_bad_messages_total{topic="%s",reason="%s"}'
        assert m[bad % (figures_topic, "invalid_json")] == 1
        assert m[bad % (alerts_topic, "missing_field")] == 1
        assert m["callcost_gateway_figures_consumed_total"] == 4

        with gw.ws() as ws:
            snap = ask(
                ws, {"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "centre"}
            )
            assert snap["seq"] == 0 and snap["as_of"] == T0 + 1000
            assert {f["total"] for f in snap["figures"]} == {30.0}
            alerts_snap = ask(ws, {"op": "subscribe", "channel": "alerts", "sub": "al"})
            assert alerts_snap["alerts"] == [{**a2_, "snooze": None}]
            produce(
                kafka_bootstrap,
                figures_topic,
                [("prg", figures_value("prg", T0 + 2000, total=40.0))],
            )
            update = recv(ws, timeout=30)
            assert update["type"] == "update" and update["seq"] == 1
            assert update["as_of"] == T0 + 2000
            assert [f["total"] for f in update["figures"]] == [40.0, 40.0, 40.0]
            produce(kafka_bootstrap, alerts_topic, [("prg", json.dumps(r2).encode())])
            message = recv(ws, timeout=30)
            assert message["type"] == "alert" and message["sub"] == "al"
            assert message["seq"] == 1 and message["id"] == r2["id"]
            assert message["state"] == "resolved"
    finally:
        gw.close()

    # a new gateway holds what the first one had: it is all in the topics
    gw = Running(kafka_bootstrap, **options)
    try:
        wait_for(lambda: healthy(gw), timeout_s=60, what="the restarted gateway to catch up")
        assert gw.get_json("/api/figures?centre=prg")["figures"] == centre_figures(
            "prg", T0 + 2000, total=40.0
        )
        assert len(gw.get_json("/api/figures")["figures"]) == 30
        assert gw.get_json("/api/alerts?state=all") == {"alerts": [a1_, a2_, r1, r2]}
        assert gw.get_json("/api/alerts") == {"alerts": []}
    finally:
        gw.close()


# --------------------------------------------------------------------------- the page


@pytest.mark.browser
def test_live_page_follows_and_reconnects() -> None:
    """The page at / picks the first centre, shows its figures, follows updates, and
    reconnects by itself when the gateway restarts."""
    executable = chromium()  # fails the test when there is none
    from playwright.sync_api import sync_playwright

    as_of = "document.getElementById('as-of').textContent.includes('%s')"
    cell = "#figures tbody tr:first-child td:nth-child(%d)"
    gw = Running()
    try:
        gw.figures(figures_value("prg", T0, total=40.0), figures_value("brn", T0, total=70.0))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{gw.port}/")
                page.wait_for_function(as_of % "2026-01-15 09:01:00 UTC")
                assert page.inner_text("#centre").endswith("brn")  # the first centre
                assert page.locator("#figures tbody tr").count() == 15
                # the centre's own 15m figure first: scope, key, window, cost per call
                assert [page.inner_text(cell % i) for i in (1, 2, 3, 4, 5, 8, 9)] == [
                    "centre",
                    "brn",
                    "15m",
                    "7.00",
                    "10",
                    "5:00",
                    "insufficient",
                ]
                gw.figures(figures_value("prg", T0 + 1000, total=1.0))  # not shown
                gw.figures(figures_value("brn", T0 + 2000, total=90.0))
                page.wait_for_function(as_of % "09:01:02")
                assert page.inner_text(cell % 4) == "9.00"
                assert page.inner_text("#connection") == "live"

                port = gw.port
                gw.close()
                page.wait_for_function(
                    "!document.getElementById('connection').textContent.includes('live')"
                )
                gw = Running(port=port)
                gw.figures(figures_value("brn", T0 + 5000, total=30.0))
                page.wait_for_function(as_of % "09:01:05", timeout=30000)
                assert page.inner_text(cell % 4) == "3.00"
                assert page.inner_text("#connection") == "live"

                page.goto(f"http://127.0.0.1:{gw.port}/?centre=ost")
                page.wait_for_function(
                    "document.getElementById('message').textContent.includes('ost')"
                )
                assert page.locator("#figures tbody tr").count() == 0
            finally:
                browser.close()
    finally:
        gw.close()


def test_centres_endpoint_gives_zone_currency_and_band() -> None:
    import asyncio
    import json
    import urllib.error
    import urllib.request

    from callcost.streams.config import parse_settings
    from callcost.web.gateway import Gateway
    from callcost.web.messages import parse_figures

    settings = parse_settings(
        '[defaults]\ntimezone = "Europe/Prague"\n[centres.nyc]\ntimezone = "America/New_York"\n'
        'band = [3.5, 7.0]\ncurrency = "USD"\n'
    )

    async def main() -> tuple[dict, int]:
        gw = Gateway(bootstrap=None, host="127.0.0.1", port=0, settings=settings)
        await gw.start()
        gw.figures.apply(
            parse_figures(b'{"type": "figures", "centre": "prg", "as_of": 1000, "figures": []}')
        )
        loop = asyncio.get_running_loop()
        base = f"http://127.0.0.1:{gw.port}"

        def fetch() -> tuple[dict, int]:
            with urllib.request.urlopen(base + "/api/centres", timeout=5) as r:
                body = json.loads(r.read())
            try:
                urllib.request.urlopen(base + "/api/centres?x=1", timeout=5)
            except urllib.error.HTTPError as exc:
                return body, exc.code
            return body, 200

        try:
            return await loop.run_in_executor(None, fetch)
        finally:
            await gw.stop()

    body, bad = asyncio.run(main())
    assert body["centres"] == [
        {"centre": "nyc", "timezone": "America/New_York", "currency": "USD", "band": [3.5, 7.0]},
        {"centre": "prg", "timezone": "Europe/Prague", "currency": "USD", "band": [2.7, 5.6]},
    ]
    assert bad == 400
