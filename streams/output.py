"""What the engine hands back for a batch: rejected messages, figures, alerts, snapshots.

Pure: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Reject:
    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class Output:
    rejects: list[Reject] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: figures captured at requested instants (replay ``--at``)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
