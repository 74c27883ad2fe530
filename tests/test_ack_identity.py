"""Who acknowledges (issue 12, item 11): with tokens configured, the ``by`` of an ack, a
snooze and an unsnooze is the token's name, whatever the client sends, over the websocket
and over REST; with open access the client's ``by`` stays.

A real gateway on port 0 with ``[[gateway.tokens]]`` (as ``tests/test_access.py`` does),
real websocket and HTTP clients.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from callcost.streams.config import parse_settings
from callcost.web import access as a
from tests.support.gateway_client import Running, ask, recv
from tests.support.messages import T0, alert

SNOOZE = {"centre": "prg", "rule": "queue-15m", "key": "billing"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {"ana": f"ana-{secrets.token_urlsafe(24)}", "bob": f"bob-{secrets.token_urlsafe(24)}"}


@pytest.fixture
def gw(tokens: dict[str, str]) -> Iterator[Running]:
    toml = "".join(
        f'[[gateway.tokens]]\nname = "{name}"\nrole = "supervisor"\nsha256 = "{sha(tok)}"\n\n'
        for name, tok in tokens.items()
    )
    running = Running(settings=parse_settings(toml, source="identity.toml"))
    try:
        yield running
    finally:
        running.close()


def ws_as(port: int, token: str) -> ClientConnection:
    protocols = [a.SUBPROTOCOL, a.TOKEN_SUBPROTOCOL + token]
    return connect(f"ws://127.0.0.1:{port}/ws", subprotocols=[Subprotocol(x) for x in protocols])


def http_json(
    port: int, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_websocket_ack_and_snooze_are_by_the_token_name(
    gw: Running, tokens: dict[str, str]
) -> None:
    firing = alert(key="billing")
    with ws_as(gw.port, tokens["bob"]) as watcher, ws_as(gw.port, tokens["ana"]) as ana:
        assert ask(watcher, {"op": "subscribe", "channel": "alerts", "centre": "prg"})["seq"] == 0
        gw.alerts(json.dumps(firing).encode())
        assert recv(watcher)["type"] == "alert"
        reply = ask(ana, {"op": "ack", "id": firing["id"], "by": "boss", "note": "on it"})
        assert reply["type"] == "acked", reply
        assert reply["ack"]["by"] == "ana"
        pushed = recv(watcher)
        assert pushed["type"] == "ack" and pushed["by"] == "ana"
        # no `by` at all: the token says who
        reply = ask(ana, {"op": "snooze", **SNOOZE, "for_s": 600})
        assert reply["type"] == "snoozed" and reply["snooze"]["by"] == "ana", reply
        assert recv(watcher)["by"] == "ana"
        reply = ask(ana, {"op": "unsnooze", **SNOOZE, "by": "boss"})
        assert reply["type"] == "unsnoozed" and reply["snooze"]["by"] == "ana", reply
        assert recv(watcher)["by"] == "ana"
    status, body = http_json(gw.port, "GET", "/api/alerts", tokens["bob"])
    assert status == 200 and body["alerts"][0]["ack"]["by"] == "ana"
    assert gw.gateway.control.ack(firing["id"])["by"] == "ana"  # the record stored


def test_rest_ack_and_snooze_are_by_the_token_name(gw: Running, tokens: dict[str, str]) -> None:
    firing = alert(key="billing")
    gw.alerts(json.dumps(firing).encode())
    status, body = http_json(
        gw.port, "POST", "/api/alerts/ack", tokens["ana"], {"id": firing["id"], "by": "boss"}
    )
    assert status == 200 and body["ack"]["by"] == "ana", body
    status, body = http_json(
        gw.port, "POST", "/api/snoozes", tokens["ana"], {**SNOOZE, "for_s": 60, "by": "boss"}
    )
    assert status == 200 and body["snooze"]["by"] == "ana", body
    status, body = http_json(gw.port, "GET", "/api/alerts", tokens["bob"])
    assert status == 200
    assert body["alerts"][0]["ack"]["by"] == "ana"
    assert body["alerts"][0]["snooze"]["by"] == "ana"
    status, body = http_json(gw.port, "GET", "/api/snoozes", tokens["bob"])
    assert [s["by"] for s in body["snoozes"]] == ["ana"]
    assert gw.gateway.control.ack(firing["id"])["by"] == "ana"


def test_open_access_keeps_the_clients_by() -> None:
    gw = Running()
    try:
        firing = alert(key="billing", since=T0)
        gw.alerts(json.dumps(firing).encode())
        with gw.ws() as ws:
            reply = ask(ws, {"op": "ack", "id": firing["id"], "by": "boss"})
            assert reply["ack"]["by"] == "boss"
            error = ask(ws, {"op": "snooze", **SNOOZE, "for_s": 60})
            assert error["error"] == "missing_field"  # open access: `by` is still needed
        status, body = http_json(gw.port, "POST", "/api/snoozes", None, {**SNOOZE, "for_s": 60})
        assert status == 400 and body["error"] == "missing_field"
        status, body = http_json(
            gw.port, "POST", "/api/snoozes", None, {**SNOOZE, "for_s": 60, "by": "eva"}
        )
        assert status == 200 and body["snooze"]["by"] == "eva"
    finally:
        gw.close()
