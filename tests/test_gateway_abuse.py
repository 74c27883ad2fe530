"""Gateway abuse (issue 6): what one client does never reaches the others.

Each test runs a real gateway at port 0 (fed through its own ingest entry points, no
Kafka) with a *healthy* client that follows a figures subscription, while an abusive
client misbehaves. The healthy client must receive every update, in order, with no gap
in ``seq``, and the gateway must hold a bounded amount for the abuser. Abusers that
need frames a well-behaved library would never send use :class:`Raw`, a websocket
client on a plain socket.

``test_5000_connections`` opens 5,000 connections at once from two client processes
and prints how long they took and the gateway's memory per connection (never
asserted: the machine is shared).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from callcost.streams.config import GatewaySettings, parse_settings
from callcost.web.limits import RequestLimiter
from callcost.web.subscriptions import FiguresUpdate
from callcost.web.wire import ERRORS
from tests.support.gateway_client import Running, ask, recv
from tests.support.messages import T0, alert, big_figures, figures_value, message, parsed_alert
from tests.support.sessions import new_session
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- helpers


class Raw:
    """A websocket client on a plain socket: sends any frame, reads only when asked."""

    def __init__(self, port: int, rcvbuf: int | None = None, handshake: bool = True) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        if handshake:
            key = base64.b64encode(os.urandom(16)).decode()
            self.sock.sendall(
                (
                    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            self.sock.settimeout(10)
            while b"\r\n\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                assert chunk, "closed during the handshake"
                self.buf += chunk
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
        mask = os.urandom(4)
        first = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", first, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", first, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.sock.sendall(self.frame(opcode, payload, fin))

    def text(self, data: str | bytes) -> None:
        self.send(0x1, data.encode() if isinstance(data, str) else data)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout: float = 10) -> tuple[int, bytes]:
        self.sock.settimeout(timeout)
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(n)

    def recv_json(self, timeout: float = 10) -> dict:
        opcode, payload = self.recv_frame(timeout)
        assert opcode == 0x1, (opcode, payload[:80])
        return json.loads(payload)

    def close_code(self, timeout: float = 30) -> int | None:
        """Read until the server's close frame: its code (None: closed without one)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                opcode, payload = self.recv_frame(max(0.1, deadline - time.monotonic()))
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if payload else None
        except (EOFError, ConnectionResetError):
            return None
        raise AssertionError("the server did not close the connection")

    def closed_by_server(self, timeout: float = 30) -> bool:
        """True once the server has closed the TCP connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


class Healthy:
    """A well-behaved client following ``prg``'s figures; checks every update arrives
    in order and without a gap in ``seq``."""

    def __init__(self, gw: Running) -> None:
        self.gw = gw
        self.ws: ClientConnection = opened(gw)
        snap = ask(self.ws, {"op": "subscribe", "channel": "figures", "centre": "prg"})
        assert snap["type"] == "snapshot" and snap["seq"] == 0
        self.seq = 0
        self.as_of = T0

    def update(self) -> None:
        """One new figures message: the healthy client gets it as the next seq."""
        self.as_of += 1000
        self.gw.figures(figures_value("prg", self.as_of))
        got = recv(self.ws)
        self.seq += 1
        assert got["type"] == "update" and got["seq"] == self.seq
        assert got["as_of"] == self.as_of

    def close(self) -> None:
        self.ws.close()


def opened(gw: Running) -> ClientConnection:
    """A websocket client to ``gw`` the caller closes (not in a ``with`` block)."""
    return gw.ws().__enter__()


def serve(**limits: Any) -> Running:
    return Running(limits=GatewaySettings(**limits))


@pytest.fixture
def gw() -> Iterator[Running]:
    running = serve(close_timeout_s=2.0)
    try:
        yield running
    finally:
        running.close()


def pending_of_others(gw: Running, healthy: Healthy) -> list[int]:
    """The outbox length of every client but the healthy one, read in the server loop."""

    async def read() -> list[int]:
        return [
            c.session.pending
            for c in gw.gateway.clients
            if c.ws.remote_address != healthy.ws.local_address
        ]

    return gw.call(read())


# --------------------------------------------------------------------------- pure parts


def test_rate_limiter_is_a_token_bucket() -> None:
    limiter = RequestLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.refused_in_a_row == 1 and not limiter.abusive
    assert limiter.take(100.5)  # half a second: one token back
    assert limiter.refused_in_a_row == 0
    assert not limiter.take(100.5)
    for _ in range(3):
        limiter.take(100.5)
    assert limiter.refused_in_a_row == 4 and limiter.abusive  # more than the burst
    assert [limiter.take(200.0) for _ in range(4)] == [True, True, True, False]  # capped
    assert not limiter.take(199.0)  # a clock going back gives nothing
    with pytest.raises(ValueError):
        RequestLimiter(0, 1)


def test_refused_request_gets_rate_limited_naming_op_and_sub() -> None:
    session, _, _ = new_session()
    session.refuse('{"op": "subscribe", "sub": "w"}', "rate_limited", "slow down")
    session.refuse(b"\xff", "rate_limited", "slow down")
    out = [json.loads(session.next_frame() or b"") for _ in range(2)]
    assert out == [
        {"type": "error", "error": "rate_limited", "message": "slow down",
         "request": "subscribe", "sub": "w"},
        {"type": "error", "error": "rate_limited", "message": "slow down", "request": None},
    ]  # fmt: skip
    assert "rate_limited" in ERRORS


def test_alerts_to_a_slow_client_are_never_conflated() -> None:
    """Figures and alerts interleaved past the soft limit: every alert is sent, in
    order; only figures are conflated; seq has no gap on any subscription."""
    session, figures, alerts = new_session(soft_limit=3, hard_limit=200)
    session.receive('{"op": "subscribe", "channel": "figures", "centre": "prg", "sub": "f"}')
    session.receive('{"op": "subscribe", "channel": "alerts", "sub": "a"}')
    for n in range(1, 61):
        msg = message("prg", T0 + n * 1000, total=float(n))
        if figures.apply(msg):
            session.on_figures(FiguresUpdate(msg))
        a = parsed_alert(key=f"q{n}")
        alerts.apply(a)
        session.on_alert(a)
    assert not session.overflowed and session.conflated > 0
    out = []
    while (frame := session.next_frame()) is not None:
        out.append(json.loads(frame))
    sent_alerts = [m for m in out if m["sub"] == "a"]
    assert [m["key"] for m in sent_alerts[1:]] == [f"q{n}" for n in range(1, 61)]
    assert [m["seq"] for m in sent_alerts] == list(range(61))
    updates = [m for m in out if m["sub"] == "f"]
    assert [m["seq"] for m in updates] == list(range(len(updates)))
    assert len(updates) - 1 + session.conflated == 60  # each update sent or conflated
    assert updates[-1]["as_of"] == T0 + 60_000  # the newest is never lost
    # alerts past the hard limit are not dropped one by one: the session overflows
    # (the gateway closes it with 1013; the client's next snapshot has the firing set)
    for n in range(300):
        session.on_alert(parsed_alert(key=f"r{n}"))
    assert session.overflowed and session.pending == 201


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("text", "message_"),
    [
        ("[gateway]\nmax_frame_bytes = 10\n", "x.toml:2: gateway.max_frame_bytes: must be >= 256"),
        (
            "[gateway]\nhard_limit = 'many'\n",
            "x.toml:2: gateway.hard_limit: must be a whole number",
        ),
        (
            "[gateway]\nsoft_limit = 100\nhard_limit = 10\n",
            "x.toml:2: gateway.soft_limit: soft_limit (100) must not be above hard_limit (10)",
        ),
        ("[gateway]\n\nhard_limit = 10\n", "x.toml:3: gateway.hard_limit: soft_limit (64)"),
        ("[gateway]\nsend_timeout_s = 0\n", "x.toml:2: gateway.send_timeout_s: must be above 0"),
        ("[gateway]\nmax_requests_per_s = -1\n", "x.toml:2: gateway.max_requests_per_s"),
        ("[gateway]\nmax_connections = 0\n", "x.toml:2: gateway.max_connections: must be >= 1"),
        ("[gateway]\nmax_conections = 5\n", "x.toml:2: gateway.max_conections: unknown key"),
        ("gateway = 5\n", "x.toml:1: gateway: must be a table"),
    ],
)
def test_bad_gateway_limits_name_line_and_key(text: str, message_: str) -> None:
    from callcost.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_settings(text, source="x.toml")
    assert message_ in str(info.value)


def test_gateway_limits_from_settings() -> None:
    settings = parse_settings(
        "[gateway]\nmax_frame_bytes = 1024\nmax_request_bytes = 512\nmax_subscriptions = 2\n"
        "soft_limit = 3\nhard_limit = 30\nmax_connections_per_ip = 0\nping_interval_s = 0\n"
        "max_requests_per_s = 2.5\n"
    )
    limits = settings.gateway
    assert (limits.max_frame_bytes, limits.max_request_bytes) == (1024, 512)
    assert limits.max_subscriptions == 2
    assert (limits.soft_limit, limits.hard_limit, limits.ping_interval_s) == (3, 30, 0.0)
    assert limits.max_requests_per_s == 2.5 and limits.max_connections == 10_000
    assert parse_settings("").gateway == GatewaySettings()
    gw = Running(settings=settings)
    try:
        limits_ = gw.gateway.session_limits
        assert limits_ == {"max_subscriptions": 2, "soft_limit": 3, "hard_limit": 30}
        with gw.ws() as ws:
            for centre in ("a", "b"):
                snap = ask(ws, {"op": "subscribe", "channel": "figures", "centre": centre})
                assert snap["type"] == "snapshot"
            error = ask(ws, {"op": "subscribe", "channel": "figures", "centre": "c"})
            assert error["error"] == "too_many_subscriptions" and "2" in error["message"]
            ws.send(json.dumps({"op": "ping", "id": "x" * 1100}))
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        # the POST body limit
        body = json.dumps({"id": "x", "by": "me", "note": "n" * 600}).encode()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/alerts/ack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413") and b"at most 512 bytes" in answer
    finally:
        gw.close()


# --------------------------------------------------------------------------- bad frames


def test_malformed_frames_get_an_error_and_nobody_else_notices(gw: Running) -> None:
    healthy = Healthy(gw)
    bad = Raw(gw.port)
    try:
        cases: list[tuple[int, bytes, str]] = [
            (0x1, b"{not json", "invalid_json"),
            (0x1, b"", "invalid_json"),
            (0x1, b"[" * 5000 + b"]" * 5000, "invalid_json"),  # nested too deep
            (0x1, b"[1, 2]", "not_an_object"),
            (0x1, b'"op"', "not_an_object"),
            (0x1, b"null", "not_an_object"),
            (0x2, b"\xff\xfe\x00garbage", "invalid_json"),  # binary, not UTF-8
            (0x1, b'{"op": "explode"}', "unknown_op"),
            (0x1, b'{"op": 7}', "wrong_type"),
            (0x1, b'{"op": "subscribe", "channel": "figures", "centre": "' + b"x" * 5000 + b'"}',
             "invalid_value"),
        ]  # fmt: skip
        for opcode, payload, code in cases:
            bad.send(opcode, payload)
            reply = bad.recv_json()
            assert reply["type"] == "error" and reply["error"] == code, (payload[:40], reply)
            healthy.update()
        bad.text('{"op": "ping", "id": 1}')
        assert bad.recv_json() == {"type": "pong", "id": 1}  # the connection stayed open
        # a text frame that is not UTF-8 breaks the websocket protocol itself: 1007
        bad.send(0x1, b'{"op": "\xff"}')
        assert bad.close_code() == 1007
        healthy.update()
        m = gw.metrics()
        assert m['callcost_gateway_request_errors_total{code="invalid_json"}'] == 4
        assert m['callcost_gateway_request_errors_total{code="not_an_object"}'] == 3
    finally:
        bad.close()
        healthy.close()


@pytest.mark.parametrize(
    "abuse",
    ["one huge frame", "huge in fragments", "too many fragments", "huge announced, not sent"],
)
def test_huge_messages_close_1009_and_nobody_else_notices(gw: Running, abuse: str) -> None:
    healthy = Healthy(gw)
    bad = Raw(gw.port)
    try:
        limit = gw.gateway.limits.max_frame_bytes
        if abuse == "one huge frame":
            bad.text(b'{"op": "ping", "id": "' + b"x" * limit + b'"}')
        elif abuse == "huge in fragments":
            bad.send(0x1, b'{"op": "ping", "id": "', fin=False)
            for _ in range(limit // 4096 + 1):
                bad.send(0x0, b"x" * 4096, fin=False)
                healthy.update()
        elif abuse == "too many fragments":  # tiny fragments: websockets stops at 4096
            bad.send(0x1, b"{", fin=False)
            bad.sock.sendall(b"".join(Raw.frame(0x0, b" ", fin=False) for _ in range(5000)))
        else:  # a header announcing 2**40 bytes: refused before anything is buffered
            bad.sock.sendall(struct.pack("!BBQ", 0x81, 0x80 | 127, 2**40) + os.urandom(4))
        assert bad.close_code() == 1009
        healthy.update()
        healthy.update()
    finally:
        bad.close()
        healthy.close()


# --------------------------------------------------------------------------- floods


def test_request_flood_is_rate_limited_then_closed_1008() -> None:
    gw = serve(max_requests_per_s=0.5, request_burst=10)
    healthy = Healthy(gw)  # its subscribe took one token of its own bucket, not the flood's
    polite, flood = Raw(gw.port), Raw(gw.port)
    try:
        # a client that reads its errors: the burst passes, the rest is refused, and
        # the connection stays open
        for i in range(14):
            polite.text(json.dumps({"op": "ping", "id": i}))
        replies = [polite.recv_json() for _ in range(14)]
        assert replies[:10] == [{"type": "pong", "id": i} for i in range(10)]
        assert {r.get("error") for r in replies[10:]} == {"rate_limited"}
        assert all(r["request"] == "ping" for r in replies[10:])
        healthy.update()
        # a flood that ignores the errors: closed with 1008 once more than the burst
        # was refused in a row
        flood.sock.sendall(b"".join(Raw.frame(0x1, b'{"op": "ping"}') for _ in range(500)))
        assert flood.close_code() == 1008
        for _ in range(5):
            healthy.update()
        m = gw.metrics()
        assert m["callcost_gateway_rate_limit_closes_total"] == 1
        # the refusal that closes it is not answered
        assert m['callcost_gateway_request_errors_total{code="rate_limited"}'] >= 4 + 10
        polite.text('{"op": "ping"}')  # still open: a pong, or refused if no token yet
        last = polite.recv_json()
        assert last == {"type": "pong"} or last["error"] == "rate_limited"
    finally:
        for client in (polite, flood):
            client.close()
        healthy.close()
        gw.close()


def test_ping_flood_from_a_client_that_never_reads_is_bounded() -> None:
    """websockets answers every ping with a pong at once; a client that sends pings and
    reads nothing must not grow the gateway's write buffer without end."""
    write_buffer = 4096
    gw = serve(write_buffer_bytes=write_buffer, ping_interval_s=0)
    healthy = Healthy(gw)
    flood = Raw(gw.port, rcvbuf=4096)
    try:
        ping = Raw.frame(0x9, b"p" * 125)
        flood.sock.settimeout(0.5)
        sent = 0
        with pytest.raises(TimeoutError):  # the gateway stops reading the flooder
            while sent < 200_000:  # 25 MB of pongs if it never stopped
                flood.sock.sendall(ping * 100)
                sent += 100
        assert sent < 200_000

        async def buffers() -> list[int]:
            return [
                c.ws.transport.get_write_buffer_size()
                for c in gw.gateway.clients
                if c.ws.remote_address != healthy.ws.local_address
            ]

        [held] = gw.call(buffers())
        # at most 4x the limit and the pongs of one read (256 KiB)
        assert held <= 4 * write_buffer + 256 * 1024
        assert gw.metrics()["callcost_gateway_reads_paused_total"] >= 1
        for _ in range(5):
            healthy.update()
    finally:
        flood.close()
        healthy.close()
        gw.close()


# --------------------------------------------------------------------------- slow readers


def test_slow_reader_is_bounded_conflated_then_closed_1013() -> None:
    """A raw client completes the handshake, subscribes, then never reads (tiny receive
    buffer): its outbox stays within the hard limit while figures are conflated, a
    healthy client gets every update, and alerts that overflow the outbox close it."""
    hard_limit = 40
    gw = serve(soft_limit=4, hard_limit=hard_limit, close_timeout_s=1.0, ping_interval_s=0)
    healthy = Healthy(gw)
    slow = Raw(gw.port, rcvbuf=4096)
    try:
        slow.text('{"op": "subscribe", "channel": "figures", "centre": "prg", "sub": "f"}')
        slow.text('{"op": "subscribe", "channel": "alerts", "sub": "a"}')
        wait_for(lambda: pending_of_others(gw, healthy) == [0], what="the slow client's snapshots")
        for _ in range(150):
            healthy.as_of += 1000
            gw.figures(big_figures("prg", healthy.as_of))
            got = recv(healthy.ws)
            healthy.seq += 1
            assert (got["seq"], got["as_of"]) == (healthy.seq, healthy.as_of)
            [pending] = pending_of_others(gw, healthy)
            assert pending <= hard_limit
        m = gw.metrics()
        assert m["callcost_gateway_conflated_total"] > 0
        assert m["callcost_gateway_slow_client_closes_total"] == 0
        # alerts are never conflated: they pile up until the outbox overflows
        for n in range(hard_limit + 5):
            gw.alerts(json.dumps(alert(key=f"q{n}")).encode())
        wait_for(
            lambda: gw.metrics()["callcost_gateway_slow_client_closes_total"] == 1,
            what="the slow client to be closed",
        )
        # it never reads, so its close frame cannot get through: cut off after
        # close_timeout_s, and the gateway holds nothing for it any more
        wait_for(lambda: pending_of_others(gw, healthy) == [], what="the slow client to go")
        assert slow.closed_by_server()
        for _ in range(3):
            healthy.update()
    finally:
        slow.close()
        healthy.close()
        gw.close()


def test_reader_stalled_on_figures_alone_is_closed_after_send_timeout() -> None:
    gw = serve(send_timeout_s=1.0, close_timeout_s=1.0, ping_interval_s=0)
    healthy = Healthy(gw)
    slow = Raw(gw.port, rcvbuf=4096)
    try:
        slow.text('{"op": "subscribe", "channel": "figures", "centre": "prg"}')
        wait_for(lambda: pending_of_others(gw, healthy) == [0], what="the slow client's snapshot")
        n = 0
        while gw.metrics()["callcost_gateway_send_timeouts_total"] == 0:
            assert n < 2000, "no send timed out"
            healthy.as_of += 1000
            gw.figures(big_figures("prg", healthy.as_of))
            got = recv(healthy.ws)
            healthy.seq += 1
            assert (got["seq"], got["as_of"]) == (healthy.seq, healthy.as_of)
            n += 1
            if n % 50 == 0:
                time.sleep(0.5)  # let the send timer of the stalled client run out
        wait_for(lambda: pending_of_others(gw, healthy) == [], what="the slow client to go")
        assert slow.closed_by_server()
        healthy.update()
    finally:
        slow.close()
        healthy.close()
        gw.close()


# --------------------------------------------------------------------------- connections


def test_slowloris_handshake_is_dropped_after_open_timeout() -> None:
    gw = serve(open_timeout_s=1.0)
    healthy = Healthy(gw)
    lazy = [Raw(gw.port, handshake=False) for _ in range(3)]
    try:
        lazy[0].sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # a head never ended
        lazy[1].sock.sendall(  # a body never sent
            b"POST /api/snoozes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        # nothing at all on lazy[2]
        for client in lazy:
            assert client.closed_by_server(timeout=30)
        healthy.update()
    finally:
        for client in lazy:
            client.close()
        healthy.close()
        gw.close()


def test_connection_limits() -> None:
    gw = serve(max_connections=3)
    try:
        clients = [opened(gw) for _ in range(3)]
        with pytest.raises(InvalidStatus) as info:
            opened(gw)
        assert info.value.response.status_code == 503
        assert json.loads(info.value.response.body)["error"] == "too_many_connections"
        assert info.value.response.headers["Retry-After"] == "5"
        assert ask(clients[0], {"op": "ping"}) == {"type": "pong"}  # the others go on
        clients.pop().close()
        wait_for(lambda: gw.gateway.websockets_admitted == 2, what="the slot to be freed")
        with gw.ws() as ws:
            assert ask(ws, {"op": "ping"}) == {"type": "pong"}
        for ws in clients:
            ws.close()
        m = gw.metrics()
        assert m['callcost_gateway_connections_refused_total{reason="too_many_connections"}'] == 1
    finally:
        gw.close()

    gw = serve(max_connections_per_ip=2)
    try:
        first, second = opened(gw), opened(gw)
        third = Raw(gw.port, handshake=False)
        assert third.closed_by_server(timeout=10)  # closed before reading anything
        third.close()
        assert ask(first, {"op": "ping"}) == {"type": "pong"}
        second.close()
        wait_for(lambda: sum(gw.gateway.per_ip.values()) == 1, what="the address count")
        with gw.ws() as ws:
            assert ask(ws, {"op": "ping"}) == {"type": "pong"}
        first.close()
        m = gw.metrics()  # an HTTP request is a connection too: under the limit
        assert m['callcost_gateway_connections_refused_total{reason="per_ip"}'] == 1
    finally:
        gw.close()


# --------------------------------------------------------------------------- 5,000


CLIENTS_PER_PROCESS = 2500


async def _clients(port: int, n: int) -> None:
    """The client side of test_5000_connections (run in a process of its own)."""
    from websockets.asyncio.client import connect

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    request = json.dumps({"op": "subscribe", "channel": "figures", "centre": "prg"})

    async def one() -> Any:
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws", compression=None, open_timeout=300, ping_interval=None,
            close_timeout=5,
        )  # fmt: skip
        await ws.send(request)
        snap = json.loads(await ws.recv())
        assert snap["type"] == "snapshot" and snap["seq"] == 0, snap
        return ws

    started = time.monotonic()
    conns = await asyncio.gather(*(one() for _ in range(n)))
    say(event="connected", n=len(conns), s=round(time.monotonic() - started, 3))
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    started = time.monotonic()
    updates = await asyncio.gather(*(ws.recv() for ws in conns))
    seqs = {json.loads(u)["seq"] for u in updates}
    say(event="updated", n=len(updates), seqs=sorted(seqs), s=round(time.monotonic() - started, 3))
    await asyncio.gather(*(ws.close() for ws in conns))
    say(event="closed")


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_s() -> tuple[float, float]:
    """CPU seconds of this process (the gateway, and pytest) and of its waited-for
    children so far; a running child's CPU is read from /proc."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime, _children_cpu_s()


def _children_cpu_s() -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in child.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    import resource

    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + waited.ru_utime + waited.ru_stime


def _read_event(proc: subprocess.Popen[str], timeout: float) -> dict:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no answer from the client process in {timeout} s")
    line = proc.stdout.readline()
    assert line, f"the client process ended: {proc.poll()}"
    return json.loads(line)


def test_5000_connections() -> None:
    # open_timeout_s: two Python client processes on two shared cores take longer than
    # the default 10 s to send all 5,000 handshake requests (5,000 browsers would not);
    # the gateway would drop the late ones, and a browser would retry
    gw = serve(open_timeout_s=600.0)
    procs: list[subprocess.Popen[str]] = []
    try:
        gw.figures(figures_value("prg", T0))
        rss_before = _rss_bytes()
        cpu_before = _cpu_s()
        started = time.monotonic()
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.test_gateway_abuse",
                        str(gw.port),
                        str(CLIENTS_PER_PROCESS),
                    ],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        connected = [_read_event(proc, 300) for proc in procs]
        all_connected_s = time.monotonic() - started
        assert [e["event"] for e in connected] == ["connected", "connected"]
        assert sum(e["n"] for e in connected) == 2 * CLIENTS_PER_PROCESS
        assert gw.metrics()["callcost_gateway_connections"] == 2 * CLIENTS_PER_PROCESS
        rss_after = _rss_bytes()
        cpu_connected = _cpu_s()
        gw.figures(figures_value("prg", T0 + 1000))
        update_started = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        updated = [_read_event(proc, 300) for proc in procs]
        fan_out_s = time.monotonic() - update_started
        assert [(e["event"], e["n"], e["seqs"]) for e in updated] == [
            ("updated", CLIENTS_PER_PROCESS, [1])
        ] * 2
        close_started = time.monotonic()
        assert [_read_event(proc, 300)["event"] for proc in procs] == ["closed", "closed"]
        for proc in procs:
            assert proc.wait(60) == 0
        wait_for(lambda: gw.metrics()["callcost_gateway_connections"] == 0, what="all closed")
        close_s = time.monotonic() - close_started
        cpu_after = _cpu_s()
        with gw.ws() as ws:  # the gateway still serves
            snap = ask(ws, {"op": "subscribe", "channel": "figures", "centre": "prg"})
            assert snap["as_of"] == T0 + 1000
        print(
            f"\n5000 connections: all connected and subscribed in {all_connected_s:.2f} s "
            f"(client processes' own connect phase: {[e['s'] for e in connected]} s); one "
            f"update reached all in {fan_out_s:.2f} s; gateway RSS +"
            f"{(rss_after - rss_before) / 2**20:.1f} MiB, "
            f"{(rss_after - rss_before) / (2 * CLIENTS_PER_PROCESS) / 1024:.1f} KiB per "
            f"connection; all closed in {close_s:.2f} s. CPU s (gateway, clients): to "
            f"connect {cpu_connected[0] - cpu_before[0]:.1f}, "
            f"{cpu_connected[1] - cpu_before[1]:.1f}; in all {cpu_after[0] - cpu_before[0]:.1f}, "
            f"{cpu_after[1] - cpu_before[1]:.1f}"
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        gw.close()


if __name__ == "__main__":
    asyncio.run(_clients(int(sys.argv[1]), int(sys.argv[2])))
