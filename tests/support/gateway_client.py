"""The gateway in-process (:class:`Running`: a real server on port 0 in a thread of its
own) and the blocking clients the tests talk to it with: HTTP, ``/metrics``, websocket
send/recv/ask."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection, connect

from callcost.web.gateway import Gateway

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _canonical(sample: str) -> str:
    """``name{b="1",a="2"}`` as ``name{a="2",b="1"}``: label order means nothing."""
    name, brace, labels = sample.partition("{")
    if not brace:
        return sample
    pairs = sorted(_LABEL.findall(labels))
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


class Samples(dict[str, float]):
    """``/metrics`` samples by name and labels, the labels in any order."""

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(_canonical(key), value)

    def __getitem__(self, key: str) -> float:
        return super().__getitem__(_canonical(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(_canonical(key))

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(_canonical(key), default)


class Running:
    """A :class:`Gateway` serving from a thread of its own."""

    def __init__(self, bootstrap: str | None = None, port: int = 0, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gateway = Gateway(bootstrap, "127.0.0.1", port, **options)
        self.call(self.gateway.start())
        self.port = self.gateway.port
        self.last_health = b""

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def do(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the server's loop, as the readers do."""

        async def call() -> Any:
            return fn(*args)

        return self.call(call())

    def figures(self, *values: bytes) -> None:
        self.do(self.gateway.ingest_figures, list(values))

    def alerts(self, *values: bytes) -> None:
        self.do(self.gateway.ingest_alerts, list(values))

    def close(self) -> None:
        """Stop the gateway (its readers, writers and sink workers) and its loop; once
        closed it has sent all it ever will. A second call does nothing."""
        if self.loop.is_closed():
            return
        try:
            self.call(self.gateway.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    # ------------------------------------------------------------------ clients

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str, status: int = 200) -> Any:
        code, headers, body = self.get(path)
        assert code == status, body
        assert headers["content-type"] == "application/json"
        return json.loads(body)

    def metrics(self) -> dict[str, float]:
        code, headers, body = self.get("/metrics")
        assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        out = Samples()
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def ws(self, **kw: Any) -> ClientConnection:
        return connect(f"ws://127.0.0.1:{self.port}/ws", **kw)


def healthy(running: Running) -> bool:
    """Whether ``/healthz`` answers 200 (its body kept in ``running.last_health``)."""
    status, _, body = running.get("/healthz")
    running.last_health = body
    return status == 200


def send(ws: ClientConnection, request: dict) -> None:
    ws.send(json.dumps(request))


def recv(ws: ClientConnection, timeout: float = 10) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def ask(ws: ClientConnection, request: dict) -> dict:
    send(ws, request)
    return recv(ws)
