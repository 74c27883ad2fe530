"""The gateway's state: the latest figures of every centre and every alert message. Pure.

Both stores are rebuilt from their topics at every start (a restart loses nothing);
``docs/PROTOCOL.md`` ("Stores") says what each keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from callcost.web.messages import FiguresMessage

FigureId = tuple[str, str, str]  # (scope, key, window)


class FigureStore:
    """The latest figures message of every centre.

    A message with a smaller ``as_of`` than the one held for its centre is ignored
    (Kafka redelivery, a compacted topic read from the start); one with the same
    ``as_of`` replaces it (a worker that republished an instant). Within a message a
    (scope, key, window) that appears twice keeps its last figure.
    """

    def __init__(self) -> None:
        self._centres: dict[str, tuple[int, dict[FigureId, dict[str, Any]]]] = {}

    def apply(self, message: FiguresMessage) -> bool:
        """Take ``message``; False when it is older than what is held for its centre."""
        held = self._centres.get(message.centre)
        if held is not None and message.as_of < held[0]:
            return False
        figures = {(f["scope"], f["key"], f["window"]): f for f in message.figures}
        self._centres[message.centre] = (message.as_of, figures)
        return True

    def centres(self) -> list[str]:
        return sorted(self._centres)

    def as_of(self, centre: str) -> int | None:
        held = self._centres.get(centre)
        return None if held is None else held[0]

    def query(
        self, centre: str | None = None, scope: str | None = None, window: str | None = None
    ) -> list[dict[str, Any]]:
        """The figures held, any filter optional (None: all)."""
        names = self.centres() if centre is None else [centre]
        out: list[dict[str, Any]] = []
        for name in names:
            held = self._centres.get(name)
            if held is not None:
                out.extend(select(held[1].values(), scope, window))
        return out

    def __len__(self) -> int:
        return sum(len(held[1]) for held in self._centres.values())


def select(
    figures: Iterable[dict[str, Any]], scope: str | None, window: str | None
) -> list[dict[str, Any]]:
    """The figures of ``scope`` and ``window`` (None: any)."""
    return [
        f
        for f in figures
        if (scope is None or f["scope"] == scope) and (window is None or f["window"] == window)
    ]


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alert messages a subscription or a query takes; None takes every value."""

    centre: str | None = None
    scope: str | None = None
    rule: str | None = None
    key: str | None = None
    state: str | None = None

    def takes(self, alert: Mapping[str, Any]) -> bool:
        return (
            (self.centre is None or alert["centre"] == self.centre)
            and (self.scope is None or alert["scope"] == self.scope)
            and (self.rule is None or alert["rule"] == self.rule)
            and (self.key is None or alert["key"] == self.key)
            and (self.state is None or alert["state"] == self.state)
        )

    def takes_ack(self, ack: Mapping[str, Any]) -> bool:
        """An ack goes where its alert goes, whatever the state filter."""
        return (
            (self.centre is None or ack["centre"] == self.centre)
            and (self.scope is None or ack["scope"] == self.scope)
            and (self.rule is None or ack["rule"] == self.rule)
            and (self.key is None or ack["key"] == self.key)
        )

    def takes_snooze(self, snooze: Mapping[str, Any]) -> bool:
        """A snooze names no scope: the scope and state filters do not apply."""
        return (
            (self.centre is None or snooze["centre"] == self.centre)
            and (self.rule is None or snooze["rule"] == self.rule)
            and (self.key is None or snooze["key"] == self.key)
        )


class AlertStore:
    """Every alert message in arrival order, and the alerts firing now.

    An alert is firing from its ``firing`` message until the ``resolved`` message with
    the same ``id``. A message whose (``id``, ``state``) was already seen (a restarted
    worker publishes the same alert again) is a duplicate: kept once, sent to nobody.
    """

    def __init__(self) -> None:
        self._history: list[dict[str, Any]] = []
        self._firing: dict[str, dict[str, Any]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._ids: set[str] = set()

    def apply(self, alert: dict[str, Any]) -> bool:
        """Take ``alert`` (from :func:`callcost.web.messages.parse_alert`); False when
        it is a duplicate."""
        mark = (alert["id"], alert["state"])
        if mark in self._seen:
            return False
        self._seen.add(mark)
        self._ids.add(alert["id"])
        self._history.append(alert)
        if alert["state"] == "firing":
            if (alert["id"], "resolved") not in self._seen:
                self._firing[alert["id"]] = alert
        else:
            self._firing.pop(alert["id"], None)
        return True

    def query(
        self,
        centre: str | None = None,
        state: str = "firing",
        *,
        since: int | None = None,
        until: int | None = None,
        match: AlertFilter | None = None,
    ) -> list[dict[str, Any]]:
        """``firing``: the alerts firing now, in the order they fired; ``all``: every
        alert message, oldest first (by ``at``, then arrival). ``since`` <= ``at`` <
        ``until`` when given; ``match`` filters further."""
        if state == "firing":
            source: Iterable[dict[str, Any]] = self._firing.values()
        else:
            source = sorted(self._history, key=lambda a: a["at"])
        return [
            a
            for a in source
            if (centre is None or a["centre"] == centre)
            and (since is None or a["at"] >= since)
            and (until is None or a["at"] < until)
            and (match is None or match.takes(a))
        ]

    def firing(self, alert_id: str) -> dict[str, Any] | None:
        """The ``firing`` message of ``alert_id`` while it fires, else None."""
        return self._firing.get(alert_id)

    def known(self, alert_id: str) -> bool:
        return alert_id in self._ids

    def __len__(self) -> int:
        return len(self._history)

    @property
    def firing_count(self) -> int:
        return len(self._firing)

