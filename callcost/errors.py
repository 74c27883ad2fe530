"""One small exception tree. Every message names the value at fault."""

from __future__ import annotations


class CallcostError(Exception):
    """Base of every error callcost raises on purpose."""


class ConfigError(CallcostError):
    """A configuration file or option is wrong; the message names file, line and key."""


class EventError(CallcostError):
    """An event breaks SPEC section 1. ``reason`` is the short code sent to the DLQ."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ProtocolError(CallcostError):
    """A websocket or HTTP client sent a request the gateway cannot serve."""


class BrokerError(CallcostError):
    """The local Kafka broker could not be started, stopped or reached."""
