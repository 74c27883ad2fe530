"""Kafka topic names (SPEC section 6)."""

CALL_EVENTS = "call-events"
DLQ = "call-events-dlq"
FIGURES = "cost-figures"
ALERTS = "cost-alerts"
CONTROL = "callcost-control"
CHECKPOINTS = "callcost-checkpoints"

#: Largest checkpoint message (one centre's engine state), bytes.
CHECKPOINT_MAX_BYTES = 16 * 1024 * 1024

#: Largest message ``call-events`` takes (key, value and headers, as a record batch),
#: bytes. The broker's own default (``message.max.bytes``, about 1 MB) would refuse a
#: 1 MB event; a larger message is refused to its producer and never reaches the worker.
EVENT_MAX_BYTES = 4 * 1024 * 1024

#: Largest dead letter: an event as large as ``call-events`` takes, plus the worker's
#: headers (reason, a bounded detail, source topic, partition and offset), bytes.
DLQ_MAX_BYTES = EVENT_MAX_BYTES + 64 * 1024

_DAY_MS = 24 * 60 * 60 * 1000

#: Topic-level configs, by topic name. ``callcost topics`` creates each topic with these;
#: values are strings, as Kafka takes them.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    # Raw call events, as produced by the telephony side (or the simulator).
    CALL_EVENTS: {
        "cleanup.policy": "delete",
        "retention.ms": str(7 * _DAY_MS),
        "max.message.bytes": str(EVENT_MAX_BYTES),
    },
    # Events the worker could not accept, with the reason; kept longer to investigate.
    DLQ: {
        "cleanup.policy": "delete",
        "retention.ms": str(30 * _DAY_MS),
        "max.message.bytes": str(DLQ_MAX_BYTES),
    },
    # Latest figures of each centre, keyed by centre: compacted so that a new reader
    # gets the current figures without replaying history.
    FIGURES: {
        "cleanup.policy": "compact",
        "segment.ms": "60000",
        "min.cleanable.dirty.ratio": "0.1",
        "delete.retention.ms": "60000",
    },
    # Every alert message, keyed by centre.
    ALERTS: {"cleanup.policy": "delete", "retention.ms": str(30 * _DAY_MS)},
    # Acknowledgements and snoozes: the latest state of each key is what counts.
    CONTROL: {
        "cleanup.policy": "compact",
        "segment.ms": "60000",
        "min.cleanable.dirty.ratio": "0.1",
        "delete.retention.ms": "60000",
    },
    # The worker's checkpoints: one message per centre (key: the centre) with its whole
    # engine state and the offsets it reflects, plus one marker per call-events partition
    # (key: ``@offsets/TOPIC/PARTITION``). Only the latest of each key counts.
    CHECKPOINTS: {
        "cleanup.policy": "compact",
        "segment.ms": "60000",
        "min.cleanable.dirty.ratio": "0.1",
        "delete.retention.ms": "60000",
        "max.message.bytes": str(CHECKPOINT_MAX_BYTES),
    },
}

#: Every callcost topic, in creation order.
ALL_TOPICS: tuple[str, ...] = tuple(TOPIC_CONFIGS)
