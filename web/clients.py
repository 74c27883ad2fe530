"""The websocket clients: one request loop and one sender task per connection, and the
fan-out of topic messages to the clients that subscribe to them.

Each client has a :class:`callcost.web.session.Session` whose outbox is drained by a
sender task of its own, so a slow client never holds up the readers nor the other
clients: the readers only append to outboxes. The outbox conflates figures updates when
it fills, and the connection is closed with 1013 when it overflows (``docs/PROTOCOL.md``,
"Limits").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from callcost.streams.config import GatewaySettings
from callcost.web import access as a
from callcost.web.control import ControlStore, PendingWrite, Record
from callcost.web.limits import RequestLimiter
from callcost.web.metrics import Metrics
from callcost.web.session import Session
from callcost.web.stores import AlertStore, FigureStore
from callcost.web.subscriptions import FiguresUpdate
from callcost.web.wire import encode

log = logging.getLogger("callcost.gateway")


class Client:
    """One websocket connection: its session and the sender task's wake-up."""

    def __init__(
        self, ws: ServerConnection, session: Session, metrics: Metrics, close_timeout_s: float
    ) -> None:
        self.ws = ws
        self.session = session
        self.metrics = metrics
        self.close_timeout_s = close_timeout_s
        self.wakeup = asyncio.Event()
        self.closing: asyncio.Task[None] | None = None
        #: the centres of its figures subscriptions (:class:`FanOut`'s index)
        self.centres: frozenset[str] = frozenset()

    def poke(self) -> None:
        """Something was queued: wake the sender, or drop a client that fell behind."""
        if self.session.overflowed:
            if self.closing is None:
                self.metrics.slow_closes += 1
                log.warning(
                    "closing %s: %d messages waiting",
                    self.ws.remote_address,
                    self.session.pending,
                )
                self.drop(CloseCode.TRY_AGAIN_LATER, "client too slow")
        else:
            self.wakeup.set()

    def drop(self, code: int, reason: str) -> None:
        """Close the connection with ``code``; a client that does not take the close
        frame within ``close_timeout_s`` (its TCP window is full) is cut off."""
        if self.closing is None:
            self.closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self.close_timeout_s):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()


class FanOut:
    """The open clients, and which of them subscribe to each centre's figures: a
    figures message visits its subscribers only, not every connection (issue 7)."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self._figures_clients: dict[str, set[Client]] = {}

    def __iter__(self) -> Iterator[Client]:
        return iter(self.clients)

    def __len__(self) -> int:
        return len(self.clients)

    def add(self, client: Client) -> None:
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        self.index(client, gone=True)

    def index(self, client: Client, *, gone: bool = False) -> None:
        """Bring the index in step with ``client``'s subscriptions (after each request
        it made; ``gone``: it disconnected)."""
        centres = frozenset(
            ()
            if gone
            else (s.centre for s in client.session.subscriptions.values()
                  if s.channel == "figures" and s.centre is not None)
        )  # fmt: skip
        if centres == client.centres:
            return
        for centre in client.centres - centres:
            group = self._figures_clients.get(centre)
            if group is not None:
                group.discard(client)
                if not group:
                    del self._figures_clients[centre]
        for centre in centres - client.centres:
            self._figures_clients.setdefault(centre, set()).add(client)
        client.centres = centres

    def figures(self, update: FiguresUpdate) -> None:
        """Queue a figures message for the clients subscribed to its centre."""
        for client in list(self._figures_clients.get(update.message.centre, ())):
            if client.session.on_figures(update):
                client.poke()

    def alert(self, alert: dict[str, Any]) -> None:
        """Queue an alert message for every client that takes it."""
        for client in list(self.clients):
            if client.session.on_alert(alert):
                client.poke()

    def control(self, record: dict[str, Any]) -> None:
        """Queue an ack or a snooze for every client that takes it."""
        for client in list(self.clients):
            if client.session.on_control(record):
                client.poke()


class WebsocketService:
    """Serves one websocket connection: its requests in order, its sender task."""

    def __init__(
        self,
        *,
        figures: FigureStore,
        alerts: AlertStore,
        control: ControlStore,
        fanout: FanOut,
        metrics: Metrics,
        limits: GatewaySettings,
        session_limits: dict[str, int],
        clock: Callable[[], int],
        write_control: Callable[[Record], Awaitable[dict[str, Any]]],
        control_topic: str,
        open_access: bool,
    ) -> None:
        self.figures = figures
        self.alerts = alerts
        self.control = control
        self.fanout = fanout
        self.metrics = metrics
        self.limits = limits
        self.session_limits = session_limits
        self.clock = clock
        self.write_control = write_control
        self.control_topic = control_topic
        self.open_access = open_access

    async def handle(self, ws: ServerConnection) -> None:
        principal = getattr(ws, "principal", None)
        if principal is None and self.open_access:
            principal = a.OPEN
        if principal is None:  # a handshake that did not pass Guard.check_handshake
            await ws.close(CloseCode.POLICY_VIOLATION, "unauthorized")
            return
        session = Session(
            self.figures,
            self.alerts,
            self.control,
            **self.session_limits,
            permissions=None if principal is a.OPEN else principal.permissions,
            role=principal.role,
            name=principal.name,
        )
        client = Client(ws, session, self.metrics, self.limits.close_timeout_s)
        self.fanout.add(client)
        self.metrics.connections_total += 1
        limiter = RequestLimiter(self.limits.max_requests_per_s, self.limits.request_burst)
        sender = asyncio.create_task(self._sender(client))
        try:
            async for frame in ws:
                if not limiter.take(time.monotonic()):
                    if limiter.abusive:
                        self.metrics.rate_limit_closes += 1
                        log.warning(
                            "closing %s: %d requests above the rate limit in a row",
                            ws.remote_address,
                            limiter.refused_in_a_row,
                        )
                        client.drop(CloseCode.POLICY_VIOLATION, "request rate limit")
                        break
                    session.refuse(
                        frame,
                        "rate_limited",
                        f"more than {self.limits.max_requests_per_s:g} requests per second "
                        f"(bursts of {self.limits.request_burst}); this one was not handled",
                    )
                    self.metrics.errors["rate_limited"] += 1
                    client.poke()
                    continue
                reply = session.receive(frame, self.clock())
                self.fanout.index(client)
                if isinstance(reply, PendingWrite):
                    # the next request is read once this one is answered: replies
                    # keep the order of the requests
                    reply = await self._complete(session, reply)
                if reply["type"] == "error":
                    self.metrics.errors[reply["error"]] += 1
                client.poke()
        except ConnectionClosed:
            pass
        finally:
            self.fanout.remove(client)
            self.metrics.conflated_closed += session.conflated
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if client.closing is not None:
                with contextlib.suppress(Exception):
                    await client.closing

    async def _complete(self, session: Session, pending: PendingWrite) -> dict[str, Any]:
        try:
            record = await self.write_control(pending.record)
        except Exception as exc:
            log.warning("cannot write %s to %s: %r", pending.record.key, self.control_topic, exc)
            return session.write_failed(
                pending, f"cannot write to {self.control_topic}: {type(exc).__name__} {exc}"
            )
        return session.written(pending, record)

    async def _sender(self, client: Client) -> None:
        session, ws, sent = client.session, client.ws, self.metrics.sent
        send_timeout_s = self.limits.send_timeout_s
        try:
            while True:
                await client.wakeup.wait()
                client.wakeup.clear()
                while client.closing is None:
                    message = session.next_message()
                    if message is None:
                        break
                    # send() waits while the client's TCP buffer is full: only this
                    # task waits, and the outbox behind it conflates or overflows.
                    try:
                        async with asyncio.timeout(send_timeout_s):
                            await ws.send(encode(message), text=True)
                    except TimeoutError:
                        self.metrics.send_timeouts += 1
                        self.metrics.slow_closes += 1
                        log.warning(
                            "closing %s: a message waited %gs for it", ws.remote_address,
                            send_timeout_s,
                        )  # fmt: skip
                        client.drop(CloseCode.TRY_AGAIN_LATER, "client too slow")
                        return
                    sent[message["type"]] += 1
        except ConnectionClosed:
            pass
