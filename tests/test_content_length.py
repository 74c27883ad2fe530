"""Request heads that announce their body ambiguously (issue 12, Low): two
``Content-Length`` headers (even equal ones) or one that is not a number get a 400 with a
JSON error before any body is read, and the gateway serves the next request.

A real gateway on port 0, raw sockets.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.support.gateway_client import Running, healthy
from tests.support.messages import alert

BODY = json.dumps({"id": alert(key="billing")["id"], "by": "eva"}).encode()


@pytest.fixture(scope="module")
def gw() -> Iterator[Running]:
    running = Running()
    try:
        running.alerts(json.dumps(alert(key="billing")).encode())
        yield running
    finally:
        running.close()


def raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Send ``head`` (and ``body``), read until the gateway closes: (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    status_line, _, rest = got.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


def head(port: int, *lengths: str) -> bytes:
    lines = [
        b"POST /api/alerts/ack HTTP/1.1",
        f"Host: 127.0.0.1:{port}".encode(),
        b"Content-Type: application/json",
        *(f"Content-Length: {n}".encode() for n in lengths),
        b"Connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.mark.parametrize(
    "lengths",
    [
        (str(len(BODY)), str(len(BODY))),  # equal duplicates: refused too
        (str(len(BODY)), "5"),
        ("5", str(len(BODY))),
    ],
)
def test_two_content_length_headers_are_refused(gw: Running, lengths: tuple[str, ...]) -> None:
    status, body = raw(gw.port, head(gw.port, *lengths), BODY)
    assert status == 400, body
    assert body["error"] == "bad_request"
    assert "more than one Content-Length" in body["message"]
    assert gw.gateway.control.ack(alert(key="billing")["id"]) is None  # nothing written
    assert healthy(gw)


@pytest.mark.parametrize("value", ["abc", "-5", "+5", "0x10", "5, 5", "", "1 0", "٣"])
def test_a_content_length_that_is_not_digits_is_refused(gw: Running, value: str) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/alerts/ack HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        got = b""
        while chunk := sock.recv(65536):
            got += chunk  # answered and closed with no body sent: none was waited for
    assert got.startswith(b"HTTP/1.1 400 "), got
    payload = json.loads(got.partition(b"\r\n\r\n")[2])
    assert payload["error"] == "bad_request" and "Content-Length" in payload["message"]
    assert healthy(gw)


def test_one_content_length_is_still_served(gw: Running) -> None:
    status, body = raw(gw.port, head(gw.port, str(len(BODY))), BODY)
    assert status == 200 and body["ack"]["by"] == "eva", body
