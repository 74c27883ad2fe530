"""The ceiling of bench_throughput: what the client library alone allows. A bare
aiokafka consumer (no group) reads every partition of the topic with ``getmany`` in
batches of 10,000 and counts the records; nothing is decoded.

    python -m benchmarks.aiokafka_baseline --bootstrap HOST:PORT --topic T --events N \
        --partitions P

Prints one JSON line when it has counted N records: ``{"events", "first_at", "last_at"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def main_async(a: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=a.bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(a.topic, p) for p in range(a.partitions)])
        await consumer.seek_to_beginning()
        n, first = 0, 0.0
        while n < a.events:
            data = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for recs in data.values():
                if recs and not n:
                    first = time.time()
                n += len(recs)
        print(json.dumps({"events": n, "first_at": first, "last_at": time.time()}),
              flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--partitions", type=int, required=True)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
