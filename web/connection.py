"""The gateway's server connection: it reads HTTP request bodies, counts connections per
address, and stops reading a websocket whose client does not read its answers.

``websockets`` serves plain HTTP through ``process_request`` but refuses a request with
a body, and it parses requests on its own internals; :class:`GatewayConnection` sits in
front of that parser.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, ClassVar, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from callcost.streams.config import GatewaySettings
from callcost.web.access import Principal
from callcost.web.metrics import Metrics
from callcost.web.responses import error_response, serialized

#: the write buffer of a connection that does not read may hold this many times
#: ``write_buffer_bytes`` of the websocket layer's own answers (pongs) before the
#: connection is no longer read
READ_PAUSE_FACTOR = 4


class ConnectionHost(Protocol):
    """What a connection uses of the gateway."""

    #: open TCP connections by peer address (``max_connections_per_ip``)
    per_ip: Counter[str]
    #: websocket handshakes let through and not closed yet (``max_connections``)
    websockets_admitted: int
    limits: GatewaySettings
    metrics: Metrics


class GatewayConnection(ServerConnection):
    """A websockets connection that also takes HTTP request bodies, and keeps what it
    holds for its client bounded.

    ``websockets`` serves plain HTTP through ``process_request`` but refuses a request
    with a body. This reads a request's head and, when it announces one, its body
    (``Content-Length``, at most ``max_request_bytes``), keeps the body in :attr:`body`,
    and hands websockets the head without it.

    It also counts the connections of each address (``max_connections_per_ip``: one
    more is closed at once), and stops reading a websocket whose write buffer holds more
    than :data:`READ_PAUSE_FACTOR` times ``write_buffer_bytes``: websockets answers
    every ping with a pong written at once, so a client that sends pings and reads
    nothing would otherwise grow the buffer without end.

    ``Gateway.start`` makes a subclass whose :attr:`gateway` is set.
    """

    gateway: ClassVar[ConnectionHost]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body: bytes | None = None
        #: who the websocket handshake's token says the client is (set by the gateway)
        self.principal: Principal | None = None
        self._head: bytearray | None = bytearray()
        self._continued = False
        self._refused = False
        #: the peer's address, once counted toward its per-address limit
        self.ip: str | None = None
        #: counted toward max_connections (the websocket handshake was let through)
        self.admitted = False
        self._paused_for_writes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        gateway = self.gateway
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.ip = ip
        gateway.per_ip[ip] += 1
        limit = gateway.limits.max_connections_per_ip
        if limit and gateway.per_ip[ip] > limit:
            gateway.metrics.refused["per_ip"] += 1
            self._refused = True
            self._head = bytearray()
            self.transport.abort()  # before reading anything: nothing is held for it

    def connection_lost(self, exc: Exception | None) -> None:
        gateway = self.gateway
        if self.ip is not None:
            gateway.per_ip[self.ip] -= 1
            if gateway.per_ip[self.ip] <= 0:
                del gateway.per_ip[self.ip]
            self.ip = None
        if self.admitted:
            self.admitted = False
            gateway.websockets_admitted -= 1
        super().connection_lost(exc)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._paused_for_writes:
            self._paused_for_writes = False
            # unless the incoming queue is full (then websockets resumes reading)
            if not self.recv_messages.paused:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head is None:
            super().data_received(data)
            limit = READ_PAUSE_FACTOR * self.gateway.limits.write_buffer_bytes
            if (
                not self._paused_for_writes
                and self.transport.get_write_buffer_size() > limit
                and not self.transport.is_closing()
            ):
                self._paused_for_writes = True
                self.gateway.metrics.reads_paused += 1
                self.transport.pause_reading()
            return
        max_body = self.gateway.limits.max_request_bytes
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 2 * max_body:
                self._pass(bytes(self._head))  # websockets answers it
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        lines = head.split(b"\r\n")
        kept, length, chunked, expect = [lines[0]], None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                # two lengths (even equal ones) could be read differently by a proxy in
                # front: refuse rather than merge (RFC 9112 6.3 lets a server reject)
                if length is not None:
                    self._refuse(400, "bad_request", "more than one Content-Length header")
                    return
                if not value.strip().isdigit():
                    self._refuse(400, "bad_request", "Content-Length is not a number")
                    return
                length = int(value.strip())
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"expect":
                expect = value.strip().lower() == b"100-continue"
            else:
                kept.append(line)
        length = length or 0
        if chunked:
            self._refuse(411, "length_required", "send the body with a Content-Length")
        elif length > max_body:
            self._refuse(413, "too_large", f"a request body is at most {max_body} bytes")
        elif length == 0:
            self._pass(b"\r\n".join(kept) + rest)
        elif len(rest) < length:
            if expect and not self._continued:
                self._continued = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        else:
            self.body = rest[:length]
            self._pass(b"\r\n".join(kept) + rest[length:])

    def _pass(self, data: bytes) -> None:
        self._head = None
        super().data_received(data)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._head = bytearray()  # nothing more reaches websockets
        self._refused = True
        self.transport.write(serialized(error_response(status, code, message)))
        self.transport.close()


def admit(host: ConnectionHost, connection: ServerConnection) -> Response | None:
    """None: the websocket handshake goes on (and counts toward ``max_connections``
    until it closes); else 503."""
    limit = host.limits.max_connections
    if host.websockets_admitted >= limit:
        host.metrics.refused["too_many_connections"] += 1
        return error_response(
            503,
            "too_many_connections",
            f"the gateway serves at most {limit} websocket connections; try again later",
            Retry_After="5",
        )
    if isinstance(connection, GatewayConnection) and not connection.admitted:
        connection.admitted = True  # counted off when it closes
        host.websockets_admitted += 1
    return None
