"""Kafka topic names (SPEC section 6)."""

CALL_EVENTS = "call-events"
DLQ = "call-events-dlq"
FIGURES = "cost-figures"
ALERTS = "cost-alerts"
CONTROL = "callcost-control"
