"""Acknowledge and snooze (issue 4): the pure store and session, then a real gateway
with real websocket and HTTP clients, and a gateway restart on the real broker."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

import orjson
import pytest

from callcost.web import control as c
from callcost.web.control import PendingWrite
from callcost.web.session import Session
from callcost.web.stores import AlertStore, FigureStore
from callcost.web.wire import BadMessage
from tests.support.brokers import produce
from tests.support.gateway_client import Running, ask, healthy, recv, send
from tests.support.messages import T0, alert, parsed_alert
from tests.support.sessions import drain
from tests.support.waiting import wait_for

NOW = T0 + 600_000
SNOOZE = {"centre": "prg", "rule": "queue-15m", "key": "billing"}


def new_session() -> tuple[Session, AlertStore, c.ControlStore]:
    alerts, control = AlertStore(), c.ControlStore()
    return Session(FigureStore(), alerts, control), alerts, control


def complete(session: Session, control: c.ControlStore, pending: Any, offset: int) -> dict:
    """What the gateway does with a control request: write, apply, fan out, reply."""
    assert isinstance(pending, PendingWrite)
    _, value = pending.record.encoded()
    record = control.apply(pending.record.key, value, (0, offset))
    assert record is not None
    session.on_control(record)
    return session.written(pending, record)


# --------------------------------------------------------------------------- store


def test_store_keeps_the_latest_record_of_each_key() -> None:
    store = c.ControlStore()
    a = c.Record(
        "ack/x",
        {
            "type": "ack",
            "id": "x",
            "centre": "prg",
            "scope": "queue",
            "rule": "r",
            "key": "k",
            "by": "eva",
            "note": None,
            "at": 5,
        },
    )
    assert store.apply(a.key, a.encoded()[1], (1, 10)) == a.value
    assert store.ack("x") == a.value and store.ack_count == 1
    # read back (the same position) or an older record of the key: nothing changes
    assert store.apply(a.key, a.encoded()[1], (1, 10)) is None
    older = orjson.dumps({**a.value, "by": "old"})
    assert store.apply(a.key, older, (1, 9)) is None
    assert store.ack("x")["by"] == "eva"
    newer = orjson.dumps({**a.value, "by": "bob"})
    assert store.apply(a.key, newer, (1, 11))["by"] == "bob"
    # a tombstone forgets the key
    assert store.apply(a.key, None, (1, 12)) is None
    assert store.ack("x") is None and store.ack_count == 0


def test_store_snoozes_are_active_until_until() -> None:
    store = c.ControlStore()
    record = c.snooze_record({**SNOOZE, "for_s": 60, "by": "eva"}, NOW, cancel=False)
    assert record.key == "snooze/prg/queue-15m/billing"
    store.apply(record.key, record.encoded()[1])
    assert store.snooze("prg", "queue-15m", "billing", NOW + 59_999) is not None
    assert store.snooze("prg", "queue-15m", "billing", NOW + 60_000) is None
    assert store.snoozes(NOW, centre="prg") == [record.value]
    assert store.snoozes(NOW, centre="brn") == [] and store.snoozes(NOW + 60_000) == []
    cancel = c.snooze_record({**SNOOZE, "by": "bob"}, NOW + 1000, cancel=True)
    assert cancel.key == record.key and cancel.value["until"] == NOW + 1000
    store.apply(cancel.key, cancel.encoded()[1])
    assert store.snooze("prg", "queue-15m", "billing", NOW + 1000) is None
    assert store.snoozes(None) == []  # no clock: a cancelled snooze is not active


def test_store_sent_records() -> None:
    store = c.ControlStore()
    firing = parsed_alert()
    record = c.sent_record("ops", firing, NOW)
    assert record.key == f"sent/ops/{firing['id']}/firing"
    assert store.apply(record.key, record.encoded()[1]) is None  # nothing for clients
    assert store.sent("ops", firing["id"], "firing")
    assert not store.sent("ops", firing["id"], "resolved")
    assert not store.sent("other", firing["id"], "firing")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("ack/x", b"{no", "invalid_json"),
        ("ack/x", b'{"type": "nack"}', "invalid_value"),
        ("ack/x", b'{"type": "ack", "id": "x", "at": 1}', "missing_field"),
        (
            "ack/y",
            b'{"type": "ack", "id": "x", "centre": "prg", "scope": "queue", "rule": "r",'
            b' "key": "k", "by": "b", "note": null, "at": 1}',
            "wrong_key",
        ),
        (
            "sent/a/x/firing",
            b'{"type": "sent", "sink": "a", "id": "x", "state": "open", "at": 1}',
            "invalid_value",
        ),
    ],
)
def test_store_rejects_bad_records(key: str, value: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as info:
        c.ControlStore().apply(key, value, (0, 0))
    assert info.value.reason == reason


# --------------------------------------------------------------------------- session


def test_ack_goes_to_every_matching_subscription_then_the_reply() -> None:
    session, alerts, control = new_session()
    firing = parsed_alert(key="billing")
    alerts.apply(firing)
    drain(session)
    for request in (
        {"op": "subscribe", "channel": "alerts", "sub": "all"},
        {"op": "subscribe", "channel": "alerts", "sub": "brn", "centre": "brn"},
        {"op": "subscribe", "channel": "alerts", "sub": "sales", "key": "sales"},
        {"op": "subscribe", "channel": "alerts", "sub": "res", "state": "resolved"},
        {"op": "subscribe", "channel": "figures", "centre": "prg", "sub": "f"},
    ):
        session.receive(json.dumps(request), NOW)
    snaps = drain(session)
    assert [len(s.get("alerts", [])) for s in snaps] == [1, 0, 0, 0, 0]
    pending = session.receive(
        json.dumps({"op": "ack", "id": firing["id"], "by": "eva", "note": "looking"}), NOW
    )
    assert isinstance(pending, PendingWrite) and session.pending == 0  # nothing yet
    assert pending.record.key == f"ack/{firing['id']}"
    reply = complete(session, control, pending, 0)
    ack = {
        "type": "ack",
        "id": firing["id"],
        "centre": "prg",
        "scope": "queue",
        "rule": "queue-15m",
        "key": "billing",
        "by": "eva",
        "note": "looking",
        "at": NOW,
    }
    assert reply == {"type": "acked", "ack": ack}
    out = drain(session)
    # the state filter does not hide acks: an ack goes where its alert goes
    assert [(m["type"], m.get("sub"), m.get("seq")) for m in out] == [
        ("ack", "all", 1),
        ("ack", "res", 1),
        ("acked", None, None),
    ]
    assert out[0] == {**ack, "sub": "all", "seq": 1}
    # a new subscription sees the ack in its snapshot
    [snap] = drain_after(
        session, {"op": "subscribe", "channel": "alerts", "sub": "n", "centre": "prg"}
    )
    assert snap["alerts"] == [{**firing, "ack": ack, "snooze": None}]


def drain_after(session: Session, request: dict, now: int = NOW) -> list[dict]:
    session.receive(json.dumps(request), now)
    return drain(session)


def test_snooze_and_unsnooze() -> None:
    session, alerts, control = new_session()
    firing = parsed_alert(key="billing")
    alerts.apply(firing)
    drain_after(session, {"op": "subscribe", "channel": "alerts", "centre": "prg"})
    drain_after(session, {"op": "subscribe", "channel": "alerts", "rule": "centre-15m"})
    pending = session.receive(
        json.dumps({"op": "snooze", **SNOOZE, "for_s": 900, "by": "eva"}), NOW
    )
    reply = complete(session, control, pending, 0)
    snooze = {
        "type": "snooze",
        **SNOOZE,
        "by": "eva",
        "note": None,
        "at": NOW,
        "until": NOW + 900_000,
    }
    assert reply == {"type": "snoozed", "snooze": snooze}
    assert drain(session) == [{**snooze, "sub": "s1", "seq": 1}, reply]
    [snap] = drain_after(session, {"op": "subscribe", "channel": "alerts", "sub": "x"}, NOW + 1000)
    assert snap["snoozes"] == [snooze]
    assert snap["alerts"] == [{**firing, "ack": None, "snooze": snooze}]
    # the snooze is over in the next snapshot once `until` has passed
    [later] = drain_after(
        session,
        {"op": "subscribe", "channel": "alerts", "sub": "y", "key": "billing"},
        NOW + 900_000,
    )
    assert later["snoozes"] == [] and later["alerts"][0]["snooze"] is None
    # for_s 0 cancels, and so does unsnooze
    for n, request in enumerate(
        (
            {"op": "snooze", **SNOOZE, "for_s": 0, "by": "bob"},
            {"op": "unsnooze", **SNOOZE, "by": "bob", "note": "ok"},
        )
    ):
        reply = complete(session, control, session.receive(json.dumps(request), NOW + 5), n + 1)
        assert reply["type"] == "unsnoozed"
        assert reply["snooze"]["until"] == reply["snooze"]["at"] == NOW + 5
    types = [(m["type"], m.get("sub")) for m in drain(session)]
    assert types == [("snooze", "s1"), ("snooze", "x"), ("snooze", "y"), ("unsnoozed", None)] * 2


@pytest.mark.parametrize(
    ("request_", "code", "named"),
    [
        ({"op": "ack", "by": "eva"}, "missing_field", "'id'"),
        ({"op": "ack", "id": "prg/queue-15m/billing/1"}, "missing_field", "'by'"),
        ({"op": "ack", "id": 5, "by": "eva"}, "wrong_type", "'id'"),
        ({"op": "ack", "id": "nope", "by": "eva"}, "unknown_alert", '"nope"'),
        ({"op": "ack", "id": "RESOLVED", "by": "eva"}, "not_firing", "is not firing"),
        ({"op": "ack", "id": "FIRING", "by": ""}, "invalid_value", "'by'"),
        ({"op": "ack", "id": "FIRING", "by": "eva", "note": "x" * 2001}, "invalid_value", "note"),
        (
            {"op": "snooze", "rule": "r", "key": "k", "for_s": 5, "by": "b"},
            "missing_field",
            "'centre'",
        ),
        (
            {"op": "snooze", "centre": "prg", "key": "k", "for_s": 5, "by": "b"},
            "missing_field",
            "'rule'",
        ),
        ({**SNOOZE, "op": "snooze", "by": "b"}, "missing_field", "'for_s'"),
        ({**SNOOZE, "op": "snooze", "for_s": -1, "by": "b"}, "invalid_value", "-1"),
        ({**SNOOZE, "op": "snooze", "for_s": 2.5, "by": "b"}, "wrong_type", "2.5"),
        ({**SNOOZE, "op": "snooze", "for_s": 31 * 86400, "by": "b"}, "invalid_value", "30 days"),
        (
            {**SNOOZE, "op": "snooze", "centre": "a b", "for_s": 5, "by": "b"},
            "invalid_value",
            '"a b"',
        ),
        ({**SNOOZE, "op": "unsnooze"}, "missing_field", "'by'"),
    ],
)
def test_bad_control_requests(request_: dict, code: str, named: str) -> None:
    session, alerts, _ = new_session()
    firing, resolved = parsed_alert(key="a"), parsed_alert(key="b")
    alerts.apply(firing)
    alerts.apply(resolved)
    alerts.apply(parsed_alert(key="b", state="resolved", at=T0 + 99_000))
    ids = {"FIRING": firing["id"], "RESOLVED": resolved["id"]}
    if request_.get("id") in ids:
        request_ = {**request_, "id": ids[request_["id"]]}
    reply = session.receive(json.dumps(request_), NOW)
    assert isinstance(reply, dict), reply
    assert (
        reply["type"] == "error" and reply["error"] == code and reply["request"] == request_["op"]
    )
    assert named in reply["message"]
    assert drain(session) == [reply]


def test_write_failure_is_an_error_reply() -> None:
    session, alerts, _ = new_session()
    alerts.apply(parsed_alert())
    pending = session.receive(
        json.dumps({"op": "ack", "id": parsed_alert()["id"], "by": "eva"}), NOW
    )
    assert isinstance(pending, PendingWrite)
    session.write_failed(pending, "cannot write to callcost-control: broker down")
    assert drain(session) == [
        {
            "type": "error",
            "error": "unavailable",
            "request": "ack",
            "message": "cannot write to callcost-control: broker down",
        }
    ]


def test_alerts_filters() -> None:
    session, alerts, _ = new_session()
    drain_after(
        session,
        {
            "op": "subscribe",
            "channel": "alerts",
            "sub": "q",
            "scope": "queue",
            "rule": "queue-15m",
            "key": "billing",
            "state": "firing",
        },
    )
    drain_after(session, {"op": "subscribe", "channel": "alerts", "sub": "r", "state": "resolved"})
    drain_after(session, {"op": "subscribe", "channel": "alerts", "sub": "c", "scope": "centre"})
    for a in (
        parsed_alert(key="billing"),
        parsed_alert(key="sales"),
        parsed_alert(key="billing", rule="other"),
        parsed_alert(key="billing", state="resolved", at=T0 + 99_000),
    ):
        alerts.apply(a)
        session.on_alert(a)
    got = [(m["sub"], m["key"], m["rule"], m["state"]) for m in drain(session)]
    assert got == [
        ("q", "billing", "queue-15m", "firing"),
        ("r", "billing", "queue-15m", "resolved"),
    ]
    bad = session.receive(json.dumps({"op": "subscribe", "channel": "alerts", "state": "all"}))
    assert isinstance(bad, dict) and bad["error"] == "invalid_value"
    # one subscription per set of filters; a different filter is another subscription
    again = session.receive(
        json.dumps({"op": "subscribe", "channel": "alerts", "state": "resolved"})
    )
    assert isinstance(again, dict) and again["error"] == "already_subscribed"
    drain(session)
    assert ask_(session, {"op": "unsubscribe", "channel": "alerts", "state": "resolved"}) == [
        {"type": "unsubscribed", "sub": "r"}
    ]


def ask_(session: Session, request: dict) -> list[dict]:
    session.receive(json.dumps(request), NOW)
    return drain(session)


# --------------------------------------------------------------------------- a real gateway


def post(
    gw: Running, path: str, body: Any, raw: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=raw if raw is not None else json.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture
def clock() -> list[int]:
    return [NOW]


@pytest.fixture
def gw(clock: list[int]) -> Any:
    running = Running(clock=lambda: clock[0])
    try:
        yield running
    finally:
        running.close()


def test_websocket_clients_get_firing_acks_snoozes_and_resolved(gw: Running) -> None:
    firing = alert(key="billing")
    with gw.ws() as ws, gw.ws() as brn, gw.ws() as supervisor:
        assert ask(ws, {"op": "subscribe", "channel": "alerts", "centre": "prg"})["alerts"] == []
        assert ask(brn, {"op": "subscribe", "channel": "alerts", "centre": "brn"})["seq"] == 0
        gw.alerts(json.dumps(firing).encode())
        assert recv(ws) == {
            "type": "alert",
            "sub": "s1",
            "seq": 1,
            **{k: v for k, v in firing.items() if k != "type"},
        }
        # a supervisor on another connection (no subscription) acknowledges
        reply = ask(supervisor, {"op": "ack", "id": firing["id"], "by": "eva", "note": "on it"})
        assert reply["type"] == "acked" and reply["ack"]["by"] == "eva"
        assert reply["ack"]["at"] == NOW  # the gateway's clock
        got = recv(ws)
        assert got == {**reply["ack"], "sub": "s1", "seq": 2}
        reply = ask(supervisor, {"op": "snooze", **SNOOZE, "for_s": 600, "by": "eva"})
        assert reply == {
            "type": "snoozed",
            "snooze": {
                "type": "snooze",
                **SNOOZE,
                "by": "eva",
                "note": None,
                "at": NOW,
                "until": NOW + 600_000,
            },
        }
        assert recv(ws) == {**reply["snooze"], "sub": "s1", "seq": 3}
        resolved = alert(key="billing", state="resolved", at=T0 + 300_000)
        gw.alerts(json.dumps(resolved).encode())
        assert recv(ws)["state"] == "resolved"
        error = ask(supervisor, {"op": "ack", "id": firing["id"], "by": "eva"})
        assert error["error"] == "not_firing"
        reply = ask(supervisor, {"op": "unsnooze", **SNOOZE, "by": "bob"})
        assert reply["type"] == "unsnoozed"
        got = recv(ws)
        assert got["type"] == "snooze" and got["until"] == got["at"] and got["seq"] == 5
        # brn saw none of it
        assert ask(brn, {"op": "ping"}) == {"type": "pong"}
    m = gw.metrics()
    assert m['callcost_gateway_control_writes_total{type="ack",result="ok"}'] == 1
    assert m['callcost_gateway_control_writes_total{type="snooze",result="ok"}'] == 2
    assert m['callcost_gateway_request_errors_total{code="not_firing"}'] == 1


def test_rest_ack_and_snooze_round_trip(gw: Running, clock: list[int]) -> None:
    firing = alert(key="billing")
    other = alert(key="sales", since=T0 + 1000)
    gw.alerts(json.dumps(firing).encode(), json.dumps(other).encode())
    status, body = post(gw, "/api/alerts/ack", {"id": firing["id"], "by": "eva", "note": "x"})
    assert status == 200 and body["ack"]["id"] == firing["id"] and body["ack"]["note"] == "x"
    ack = body["ack"]
    status, body = post(gw, "/api/snoozes", {**SNOOZE, "for_s": 60, "by": "eva"})
    assert status == 200 and body["snooze"]["until"] == NOW + 60_000
    snooze = body["snooze"]
    assert gw.get_json("/api/snoozes") == {"snoozes": [snooze]}
    assert gw.get_json("/api/snoozes?centre=prg") == {"snoozes": [snooze]}
    assert gw.get_json("/api/snoozes?centre=brn") == {"snoozes": []}
    assert gw.get_json("/api/alerts") == {
        "alerts": [{**firing, "ack": ack, "snooze": snooze}, {**other, "ack": None, "snooze": None}]
    }
    # history over a time range by `at`
    assert gw.get_json("/api/alerts?state=all") == {
        "alerts": [{**firing, "ack": ack}, {**other, "ack": None}]
    }
    assert gw.get_json(f"/api/alerts?state=all&since={other['at']}") == {
        "alerts": [{**other, "ack": None}]
    }
    assert gw.get_json(f"/api/alerts?state=all&until={other['at']}") == {
        "alerts": [{**firing, "ack": ack}]
    }
    assert gw.get_json(f"/api/alerts?since={other['at'] + 1}") == {"alerts": []}
    clock[0] += 60_000  # the snooze is over
    assert gw.get_json("/api/snoozes") == {"snoozes": []}
    assert gw.get_json("/api/alerts")["alerts"][0]["snooze"] is None
    status, body = post(gw, "/api/snoozes", {**SNOOZE, "op": "unsnooze", "by": "eva"})
    assert status == 200 and body["snooze"]["until"] == body["snooze"]["at"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/alerts/ack", {"id": "nope", "by": "eva"}, 404, "unknown_alert"),
        ("/api/alerts/ack", {"id": "RESOLVED", "by": "eva"}, 409, "not_firing"),
        ("/api/alerts/ack", {"id": "FIRING"}, 400, "missing_field"),
        ("/api/alerts/ack", {"op": "snooze", "id": "FIRING", "by": "x"}, 400, "invalid_value"),
        ("/api/alerts/ack", [1], 400, "not_an_object"),
        ("/api/alerts/ack", b"{oops", 400, "invalid_json"),
        ("/api/snoozes", {**SNOOZE, "for_s": -5, "by": "x"}, 400, "invalid_value"),
        ("/api/snoozes", {**SNOOZE, "op": "ack", "for_s": 5, "by": "x"}, 400, "invalid_value"),
        ("/api/snoozes", b"", 400, "invalid_json"),
        ("/api/alerts/ack", b"x" * 70_000, 413, "too_large"),
    ],
)
def test_rest_errors(gw: Running, path: str, body: Any, status: int, code: str) -> None:
    firing, resolved = alert(key="a"), alert(key="b")
    gw.alerts(
        *(
            json.dumps(a).encode()
            for a in (firing, resolved, alert(key="b", state="resolved", at=T0 + 99_000))
        )
    )
    if isinstance(body, dict) and body.get("id") in ("FIRING", "RESOLVED"):
        body = {**body, "id": (firing if body["id"] == "FIRING" else resolved)["id"]}
    raw = body if isinstance(body, bytes) else None
    got_status, got = post(gw, path, body, raw=raw)
    assert (got_status, got["error"]) == (status, code), got
    assert gw.get_json("/api/snoozes") == {"snoozes": []}
    assert gw.get_json("/api/alerts")["alerts"][0]["ack"] is None


def test_rest_methods_and_chunked_bodies(gw: Running) -> None:
    status, headers, _ = gw.get("/api/alerts/ack")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, _ = gw.get("/api/snoozes", method="DELETE")
    assert status == 405 and headers["allow"] == "GET, POST"
    status, headers, _ = gw.get("/api/figures", method="POST")
    assert status == 405 and headers["allow"] == "GET"
    # the gateway answers 411 as soon as it has read the head and closes: send only the
    # head, so that the answer cannot race the rest of the body (a reset on send)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/snoozes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 411 ")
    assert json.loads(body)["error"] == "length_required"
    # the websocket still works after all that
    with gw.ws() as ws:
        assert ask(ws, {"op": "ping"}) == {"type": "pong"}


def test_rest_body_after_100_continue(gw: Running) -> None:
    body = json.dumps({**SNOOZE, "for_s": 60, "by": "eva"}).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/snoozes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["snooze"]["by"] == "eva"


def test_control_write_failure_answers_unavailable(gw: Running) -> None:
    class Down:
        async def write(self, record: Any) -> Any:
            raise ConnectionError("no broker")

        async def stop(self) -> None:
            pass

    gw.gateway.writer = Down()
    firing = alert()
    gw.alerts(json.dumps(firing).encode())
    status, body = post(gw, "/api/alerts/ack", {"id": firing["id"], "by": "eva"})
    assert status == 503 and body["error"] == "unavailable" and "no broker" in body["message"]
    with gw.ws() as ws:
        send(ws, {"op": "ack", "id": firing["id"], "by": "eva"})
        send(ws, {"op": "ping", "id": 1})
        assert recv(ws)["error"] == "unavailable"
        assert recv(ws) == {"type": "pong", "id": 1}  # replies keep the request order
    assert gw.get_json("/api/alerts")["alerts"][0]["ack"] is None
    m = gw.metrics()
    assert m['callcost_gateway_control_writes_total{type="ack",result="error"}'] == 2


# --------------------------------------------------------------------------- Kafka


@pytest.mark.kafka
def test_restart_keeps_acks_and_snoozes(kafka_bootstrap: str, kafka_topics: dict) -> None:
    options = {
        "figures_topic": kafka_topics["cost-figures"],
        "alerts_topic": kafka_topics["cost-alerts"],
        "control_topic": kafka_topics["callcost-control"],
    }
    firing = alert(key="billing")
    other = alert(key="sales", since=T0 + 5000)
    produce(
        kafka_bootstrap,
        options["alerts_topic"],
        [("prg", json.dumps(a).encode()) for a in (firing, other)],
    )
    gw = Running(kafka_bootstrap, **options)
    try:
        wait_for(lambda: healthy(gw), timeout_s=60, what="the gateway to catch up")
        with gw.ws() as ws:
            snap = ask(ws, {"op": "subscribe", "channel": "alerts"})
            assert [a["id"] for a in snap["alerts"]] == [firing["id"], other["id"]]
            reply = ask(ws, {"op": "ack", "id": firing["id"], "by": "eva", "note": "mine"})
            # the subscription's ack message comes first, then the reply
            assert reply["type"] == "ack" and reply["seq"] == 1
            acked = recv(ws)
            assert acked["type"] == "acked"
            status, body = post(
                gw, "/api/snoozes", {**SNOOZE, "key": "sales", "for_s": 3600, "by": "bob"}
            )
            assert status == 200
            snooze = body["snooze"]
            assert recv(ws) == {**snooze, "sub": "s1", "seq": 2}
            # the reader reads both records back: nothing is sent twice
            wait_for(
                lambda: gw.metrics()["callcost_gateway_control_consumed_total"] >= 2,
                what="the control records to be read back",
            )
            assert ask(ws, {"op": "ping"}) == {"type": "pong"}
    finally:
        gw.close()

    gw = Running(kafka_bootstrap, **options)
    try:
        wait_for(lambda: healthy(gw), timeout_s=60, what="the restarted gateway to catch up")
        ack = acked["ack"]
        assert gw.get_json("/api/alerts") == {
            "alerts": [
                {**firing, "ack": ack, "snooze": None},
                {**other, "ack": None, "snooze": snooze},
            ]
        }
        assert gw.get_json("/api/snoozes?centre=prg") == {"snoozes": [snooze]}
        with gw.ws() as ws:
            snap = ask(ws, {"op": "subscribe", "channel": "alerts", "centre": "prg"})
            assert snap["alerts"][0]["ack"] == ack and snap["snoozes"] == [snooze]
    finally:
        gw.close()
