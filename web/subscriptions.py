"""One connection's subscriptions: what each takes, and the messages waiting for it. Pure.

``docs/PROTOCOL.md`` ("Requests") gives the subscribe requests these are made from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from callcost.streams.vocabulary import SUBSCRIPTION_CHANNELS
from callcost.web.messages import FiguresMessage
from callcost.web.stores import AlertFilter, select
from callcost.web.wire import (
    RequestError,
    check_centre,
    check_name,
    check_scope,
    check_state,
    check_window,
    optional,
    show,
)


class FiguresUpdate:
    """A new figures message on its way to the sessions.

    The figures selected for one (scope, window) are encoded once and shared by every
    subscription with that filter, so fanning a message out to many clients costs one
    small envelope per client, not one encoding of the figures each.
    """

    __slots__ = ("_cache", "message")

    def __init__(self, message: FiguresMessage) -> None:
        self.message = message
        self._cache: dict[tuple[str | None, str | None], orjson.Fragment] = {}

    def figures(self, scope: str | None, window: str | None) -> orjson.Fragment:
        key = (scope, window)
        fragment = self._cache.get(key)
        if fragment is None:
            fragment = orjson.Fragment(orjson.dumps(select(self.message.figures, scope, window)))
            self._cache[key] = fragment
        return fragment


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscription of a connection: its id, channel and filters, and its seq."""

    sub: str
    channel: str
    centre: str | None
    scope: str | None = None
    window: str | None = None
    #: alerts only: the alert filter (its centre and scope are the two above)
    rule: str | None = None
    key: str | None = None
    state: str | None = None
    #: the seq of the next message sent on this subscription
    seq: int = 0
    #: the update waiting to be sent, if any (the one a newer update replaces)
    waiting: Entry | None = None
    match: AlertFilter = dataclasses.field(init=False, default=AlertFilter())

    def __post_init__(self) -> None:
        self.match = AlertFilter(self.centre, self.scope, self.rule, self.key, self.state)

    @property
    def filters(self) -> tuple[str | None, ...]:
        return (self.channel, self.centre, self.scope, self.window, self.rule, self.key, self.state)

    def describe(self) -> str:
        if self.channel == "figures":
            return (
                f"figures centre {show(self.centre)} scope {show(self.scope)} "
                f"window {show(self.window)}"
            )
        return (
            f"alerts centre {show(self.centre)} scope {show(self.scope)} rule "
            f"{show(self.rule)} key {show(self.key)} state {show(self.state)}"
        )

@dataclass(eq=False, slots=True)
class Entry:
    """One message waiting to be sent; ``seq`` is stamped when it leaves."""

    sub: Subscription | None
    body: dict[str, Any]
    kind: str  # "reply", "snapshot", "update", "alert"


def subscription_of(request: Mapping[str, Any]) -> Subscription:
    """The subscription a subscribe (or unsubscribe) request describes, its sub id still
    unset; raises :class:`RequestError`."""
    channel = request.get("channel")
    if channel is None:
        raise RequestError("missing_field", "a subscription needs 'channel'")
    if not isinstance(channel, str):
        raise RequestError("wrong_type", f"'channel' must be a string, got {show(channel)}")
    if channel == "figures":
        if request.get("centre") is None:
            raise RequestError("missing_field", "a figures subscription needs 'centre'")
        return Subscription(
            "",
            channel,
            check_centre(request["centre"]),
            optional(request, "scope", check_scope),
            optional(request, "window", check_window),
        )
    if channel == "alerts":
        return Subscription(
            "",
            channel,
            optional(request, "centre", check_centre),
            optional(request, "scope", check_scope),
            None,
            optional(request, "rule", lambda v: check_name(v, "rule")),
            optional(request, "key", lambda v: check_name(v, "key")),
            optional(request, "state", check_state),
        )
    raise RequestError(
        "unknown_channel",
        f"unknown channel {show(channel)}; expected {', '.join(SUBSCRIPTION_CHANNELS)}",
    )


def check_sub(request: Mapping[str, Any]) -> str | None:
    """A request's ``sub`` id, None when absent; raises :class:`RequestError`."""
    sub = request.get("sub")
    if sub is None:
        return None
    if not isinstance(sub, str):
        raise RequestError("wrong_type", f"'sub' must be a string, got {show(sub)}")
    if not 1 <= len(sub) <= 64:
        raise RequestError("invalid_value", f"'sub' must be 1-64 characters, got {show(sub)}")
    return sub
