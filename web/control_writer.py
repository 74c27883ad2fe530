"""Writers of control records (acks, snoozes, deliveries): to Kafka, or to memory.

Both say where a record landed (partition, offset), which is what
:class:`callcost.web.control.ControlStore` orders records by.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from callcost.web.control import Position, Record

#: a control write (ack, snooze, delivery record) gives up after this long (below the
#: 10 s websockets gives a request, a POST's write included)
CONTROL_WRITE_TIMEOUT_S = 5.0


class ControlWriter(Protocol):
    async def write(self, record: Record) -> Position: ...

    async def stop(self) -> None: ...


class KafkaControlWriter:
    """Writes control records to the control topic and says where they landed.

    The producer starts at the first write (a gateway serves without a broker, and
    answers ``unavailable`` to writes until there is one), with ``acks=all``: a record
    acknowledged is a record the next gateway reads.
    """

    def __init__(
        self, bootstrap: str, topic: str, client_kwargs: dict[str, Any] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        #: the connection's security (callcost.kafka_client.aiokafka_kwargs)
        self.client_kwargs = dict(client_kwargs or {})
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def _started(self) -> Any:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id="callcost-gateway",
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=int(CONTROL_WRITE_TIMEOUT_S * 1000),
                    **self.client_kwargs,
                )
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def write(self, record: Record) -> Position:
        key, value = record.encoded()
        async with asyncio.timeout(CONTROL_WRITE_TIMEOUT_S):
            producer = await self._started()
            meta = await producer.send_and_wait(self.topic, value=value, key=key)
        return (meta.partition, meta.offset)

    async def stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None


class LocalControlWriter:
    """The control "topic" of a gateway without Kafka: one partition in memory."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def write(self, record: Record) -> Position:
        self.records.append(record)
        return (0, len(self.records) - 1)

    async def stop(self) -> None:
        pass
