"""Driving the gateway's protocol ``Session`` in memory (no sockets): a new session on
fresh stores, feeding it figures, and the frames it has to send."""

from __future__ import annotations

import json
from typing import Any

from callcost.web.messages import FiguresMessage
from callcost.web.session import Session
from callcost.web.stores import AlertStore, FigureStore
from callcost.web.subscriptions import FiguresUpdate


def drain(session: Session) -> list[dict]:
    """Every frame the session has to send now, decoded."""
    out = []
    while (frame := session.next_frame()) is not None:
        out.append(json.loads(frame))
    return out


def ask(session: Session, request: Any) -> list[dict]:
    """Hand the session one client request; the frames it answers with."""
    session.receive(request if isinstance(request, str | bytes) else json.dumps(request))
    return drain(session)


def new_session(**kw: Any) -> tuple[Session, FigureStore, AlertStore]:
    figures, alerts = FigureStore(), AlertStore()
    return Session(figures, alerts, **kw), figures, alerts


def feed(session: Session, figures: FigureStore, msg: FiguresMessage) -> None:
    """What the gateway does with a new figures message."""
    if figures.apply(msg):
        session.on_figures(FiguresUpdate(msg))
