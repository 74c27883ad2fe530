"""Agent sessions (SPEC section 1): one agent's login and logout events, and the session
change points they derive.

An agent keeps its events sorted by ``(ts, id)``; a login opens a session when none is
open, a logout closes it. Each change point is ``(ts, rate class, +1 or -1)``. When an
event changes the points, :meth:`Agent.add` gives the difference (old points negated, new
ones added), so the result is a function of the set of events, whatever their order.
Pure: standard library only.
"""

from __future__ import annotations

import bisect

#: one event: (ts, id, is a login, rate class)
AgentEvent = tuple[int, str, bool, int]
#: one session change point: (ts, rate class, +1 opens or -1 closes)
ChangePoint = tuple[int, int, int]


class Agent:
    """One agent's join state.

    A login or a logout changes at most three change points: its own, the first login
    after it and the logout that ends that run (after a logout the state is "none open"
    whatever came before), so :meth:`add` finds them by bisection and never recomputes
    the agent's whole list: an agent flapping thousands of times costs what one does."""

    __slots__ = ("_logouts", "changes", "events", "open0")

    def __init__(self) -> None:
        self.events: list[AgentEvent] = []
        self.open0: int | None = None  # rate class open at the start of `events`
        self.changes: list[ChangePoint] = []  # sorted
        self._logouts: list[tuple[int, str]] | None = None  # (ts, id) of logouts, sorted

    def _logout_keys(self) -> list[tuple[int, str]]:
        if self._logouts is None:  # after a restore or a trim: derived from `events`
            self._logouts = [(ts, id_) for ts, id_, login, _ in self.events if not login]
        return self._logouts

    def add(self, item: AgentEvent, pending: list[ChangePoint]) -> None:
        """Fold one event in; append the change points it adds or removes to ``pending``."""
        events = self.events
        i = bisect.bisect_left(events, item)
        if i < len(events) and events[i][:2] == item[:2]:
            return
        logouts = self._logout_keys()
        key = item[:2]
        k = bisect.bisect_left(logouts, key)
        # the state open before position i: set by the last logout before it, if any
        if k:
            start, state = bisect.bisect_left(events, logouts[k - 1]) + 1, None
        else:
            start, state = 0, self.open0
        if state is None and start < i:  # only logins since: the first one opened
            state = events[start][3]
        # what follows up to the next logout: a run of logins, of which only the first
        # can open, then that logout
        j = bisect.bisect_left(events, logouts[k]) if k < len(logouts) else len(events)
        tail = [events[i]] if i < j else []
        if j < len(events):
            tail.append(events[j])
        old = session_changes(tail, state)
        new = session_changes([item, *tail], state)
        events.insert(i, item)
        if not item[2]:
            logouts.insert(k, key)
        changes = self.changes
        for p in list(old):  # what stays; a point may stand twice, so one at a time
            if p in new:
                old.remove(p)
                new.remove(p)
        for p in old:
            at = bisect.bisect_left(changes, p)
            if at < len(changes) and changes[at] == p:
                del changes[at]
            else:  # a list not kept sorted (never expected): still exact
                changes.remove(p)
            pending.append((p[0], p[1], -p[2]))
        for p in new:
            bisect.insort(changes, p)
            pending.append(p)

    def forget_before(self, cut: int) -> bool:
        """Fold the events before ``cut`` into the open state; True when nothing is left
        (logged out, no events, no change points: exactly a new agent)."""
        ev = self.events
        n = bisect.bisect_left(ev, (cut,))
        if n:
            open_cls = self.open0
            for _ts, cls, delta in session_changes(ev[:n], self.open0):
                open_cls = cls if delta > 0 else None
            self.open0 = open_cls
            self.events = ev[n:]
            self._logouts = None
            self.changes = [p for p in self.changes if p[0] >= cut]
            return not self.events and self.open0 is None and not self.changes
        return False


def session_changes(events: list[AgentEvent], open_cls: int | None) -> list[ChangePoint]:
    """SPEC section 1, sessions: a login opens one when none is open, a logout closes it.

    ``open_cls`` is the rate class of the session open before ``events``, if any."""
    out: list[ChangePoint] = []
    for ts, _id, login, cls in events:
        if login:
            if open_cls is None:
                out.append((ts, cls, 1))
                open_cls = cls
        elif open_cls is not None:
            out.append((ts, open_cls, -1))
            open_cls = None
    return out


def forget_agents(agents: dict[str, Agent], cut: int) -> None:
    """Fold every agent's events before ``cut`` in, and forget agents with nothing left:
    every agent id ever seen (a new one per shift, in some systems) would stay for good."""
    gone = [name for name, agent in agents.items() if agent.forget_before(cut)]
    for name in gone:
        del agents[name]
