"""Webhook delivery: one task per sink posts the alert messages queued for it (aiohttp).

:mod:`callcost.web.sinks` decides what goes where and in what words; a
:class:`SinkWorker` only moves the bytes, with a bounded queue, retries with backoff and
jitter, and a timeout per attempt, and records each delivery in the control topic.
Of an answer it reads at most :data:`MAX_ANSWER_BYTES` (only the status matters), and
the errors it keeps (``/healthz``, logs) never hold the sink's URL
(:func:`callcost.web.sinks.scrub`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from yarl import URL

from callcost.streams.config import Settings, Sink
from callcost.web import sinks as sk
from callcost.web.control import ControlStore, Record, sent_record

log = logging.getLogger("callcost.gateway")

#: at most this much of an endpoint's answer is read (only its status matters)
MAX_ANSWER_BYTES = 64 * 1024


class DeliveryHost(Protocol):
    """What a sink worker uses of the gateway."""

    @property
    def dispatcher(self) -> sk.Dispatcher: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Callable[[], int]: ...

    async def write_control(self, record: Record) -> dict[str, Any]: ...


class HttpClient:
    """The HTTP client session every sink shares, made at the first delivery."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SinkWorker:
    """Delivers the alert messages queued for one sink, one at a time, in order.

    The queue is bounded (``queue_size``; the oldest message is dropped when full) and
    only this task waits on the endpoint: the readers and the websocket clients never
    do. Each message is tried up to ``max_attempts`` times, ``timeout_s`` each, with
    exponential backoff and jitter between attempts (:func:`callcost.web.sinks.backoff_s`).
    """

    def __init__(self, gateway: DeliveryHost, sink: Sink, http: HttpClient) -> None:
        self.gateway = gateway
        self.sink = sink
        self.http = http
        self.queue: deque[dict[str, Any]] = deque()
        self.wakeup = asyncio.Event()
        self.delivered = 0
        self.failures = 0
        self.retries = 0
        self.record_errors = 0
        self.last_error: str | None = None
        self._dropped_logged = 0
        #: the URL as aiohttp may quote it in an error (normalised), to scrub
        self._url_forms: tuple[str, ...] = ()
        try:
            parsed = URL(sink.url)
            self._url_forms = (str(parsed), parsed.raw_path_qs, parsed.path_qs)
        except ValueError:
            pass

    @property
    def queued(self) -> int:
        return len(self.queue)

    def put(self, alert: dict[str, Any]) -> None:
        if len(self.queue) >= self.sink.queue_size:
            oldest = self.queue.popleft()
            self.gateway.dispatcher.abandoned(self.sink, oldest, "dropped")
            self._dropped_logged += 1
            if self._dropped_logged <= 10 or self._dropped_logged % 1000 == 0:
                log.warning(
                    "sink %s: queue full (%d), dropped %s %s",
                    self.sink.id,
                    self.sink.queue_size,
                    oldest["id"],
                    oldest["state"],
                )
        self.queue.append(alert)
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                alert = self.queue.popleft()
                if self.gateway.dispatcher.take(self.sink, alert, self.gateway.clock()):
                    await self._deliver(alert)

    async def _deliver(self, alert: dict[str, Any]) -> None:
        sink, gateway = self.sink, self.gateway
        body = sk.payload(alert, gateway.settings)
        attempt = 0
        while True:
            attempt += 1
            result = await self._post(body, sk.headers(sink, alert, body, gateway.clock()))
            if result == "ok":
                self.delivered += 1
                gateway.dispatcher.delivered(sink, alert)
                record = sent_record(sink.id, alert, gateway.clock())
                try:
                    await gateway.write_control(record)
                except Exception as exc:
                    self.record_errors += 1
                    log.warning(
                        "sink %s: cannot record delivery of %s: %s", sink.id, alert["id"], exc
                    )
                return
            self.failures += 1
            if result == "fail" or attempt >= sink.max_attempts:
                gateway.dispatcher.abandoned(sink, alert, "gave_up")
                log.warning(
                    "sink %s: gave up on %s %s after %d attempts: %s",
                    sink.id,
                    alert["id"],
                    alert["state"],
                    attempt,
                    self.last_error,
                )
                return
            self.retries += 1
            await asyncio.sleep(sk.backoff_s(attempt, sink.backoff_s, random.random()))

    async def _post(self, body: bytes, headers: dict[str, str]) -> str:
        session = self.http.session()
        try:
            async with session.post(
                self.sink.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.sink.timeout_s),
            ) as resp:
                # only the status matters: a huge or endless answer is cut short
                await resp.content.read(MAX_ANSWER_BYTES)
                result = sk.outcome(resp.status)
                self.last_error = None if result == "ok" else f"HTTP {resp.status}"
                return result
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self.last_error = f"no answer in {self.sink.timeout_s:g} s"
        except Exception as exc:
            self.last_error = sk.scrub(
                f"{type(exc).__name__}: {exc}", self.sink, self._url_forms
            )
        return "retry"


class Webhooks:
    """Every sink's worker, and the dispatcher that decides what each is sent.

    Alert messages are offered as they are read; nothing goes out before
    :meth:`release` (the control topic has been read, so what was delivered before is
    known), except with ``ready`` (no Kafka). :meth:`run_clock` lets the messages whose
    snooze ended go out.
    """

    def __init__(
        self,
        settings: Settings,
        control: ControlStore,
        clock: Callable[[], int],
        write_control: Callable[[Record], Any],
        *,
        ready: bool,
    ) -> None:
        self.settings = settings
        self.control = control
        self.clock = clock
        self._write_control = write_control
        self._ready = ready
        self.dispatcher = sk.Dispatcher(settings.sinks, control, clock(), ready=ready)
        self.http = HttpClient()
        self.workers: dict[str, SinkWorker] = {
            s.id: SinkWorker(self, s, self.http) for s in settings.sinks
        }

    async def write_control(self, record: Record) -> dict[str, Any]:
        result: dict[str, Any] = await self._write_control(record)
        return result

    def restart(self) -> None:
        """A new dispatcher, whose replay horizon counts from now (the gateway's start)."""
        self.dispatcher = sk.Dispatcher(
            self.settings.sinks, self.control, self.clock(), ready=self._ready
        )

    def tasks(self, tick_s: float) -> list[asyncio.Task[None]]:
        """Start every worker, and the snoozes' clock (every ``tick_s``)."""
        tasks = [
            asyncio.create_task(worker.run(), name=f"sink {sink_id}")
            for sink_id, worker in self.workers.items()
        ]
        if self.workers:
            tasks.append(asyncio.create_task(self.run_clock(tick_s), name="sink clock"))
        return tasks

    def offer(self, alert: dict[str, Any]) -> None:
        """A new alert message: queue it for the sinks that take it."""
        self._queue(self.dispatcher.offer(alert, self.clock()))

    def snoozes_changed(self) -> None:
        """A snooze came or went: reconsider what waited for it."""
        self._queue(self.dispatcher.tick(self.clock()))

    def _queue(self, pairs: list[tuple[Sink, dict[str, Any]]]) -> None:
        for sink, alert in pairs:
            self.workers[sink.id].put(alert)

    def release(self) -> None:
        """The control topic is read: what was delivered is known, deliver the rest."""
        before = Counter(self.dispatcher.skipped)
        self._queue(self.dispatcher.release(self.clock()))
        for sink_id in self.workers:
            stale = self.dispatcher.skipped[(sink_id, "stale")] - before[(sink_id, "stale")]
            sent = self.dispatcher.skipped[(sink_id, "duplicate")] - before[(sink_id, "duplicate")]
            queued = self.workers[sink_id].queued
            log.info(
                "sink %s: %d alert messages to send, %d sent before, %d older than the "
                "replay horizon not sent",
                sink_id,
                queued,
                sent,
                stale,
            )

    async def run_clock(self, tick_s: float) -> None:
        """The clock of the snoozes: messages whose snooze ended go out."""
        while True:
            await asyncio.sleep(tick_s)
            if self.dispatcher.ready:
                self._queue(self.dispatcher.tick(self.clock()))

    async def close(self) -> None:
        await self.http.close()
