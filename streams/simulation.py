"""Simulated contact-centre traffic: a pure, seeded discrete-event generator.

``Simulator(seed, centres, rate, start_ms).events_until(t_ms)`` returns every event with
``ts < t_ms`` that it has not returned yet, in time order. It reads no clock and does no
I/O: the same arguments always give the same events, so tests, benchmarks and the
``callcost simulate`` shell (which paces it against the wall clock) share one model.

The model, per centre:

- Contacts arrive by a Poisson process whose rate follows a daily curve in the centre's
  local time (a morning and an afternoon peak, a quiet night), normalised so that the
  average over a day is ``rate`` contacts a minute.
- Queues: ``billing`` and ``support`` (inbound voice, team ``care``), ``sales-out``
  (outbound voice, team ``sales``: the dialer calls out when an agent is free, the
  customer answers or not, outcomes sale/lead/unresolved) and ``chat`` (inbound chat,
  team ``digital``, two chats at a time per agent).
- An inbound contact waits for a free agent of its team (first come, first served);
  a caller whose patience runs out first hangs up (abandoned). Talk and wrap times are
  lognormal.
- Agents work shifts of 8 or 4 hours with one break (a logout and a login); staffing
  follows the forecast load at a target occupancy, checked every 15 minutes and when a
  shift ends. At the start the whole current staff logs in within 3 seconds
  ("fast start"), so figures appear at once instead of after the first shift starts.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["CENTRE_NAMES", "QUEUES", "Simulator", "daily_curve"]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000

#: Default centre ids, in order, with their time zones; centres past these are c7, c8, ...
CENTRE_NAMES: tuple[tuple[str, str], ...] = (
    ("prg", "Europe/Prague"),
    ("nyc", "America/New_York"),
    ("lon", "Europe/London"),
    ("sgp", "Asia/Singapore"),
    ("mex", "America/Mexico_City"),
    ("syd", "Australia/Sydney"),
)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    team: str
    direction: str  # inbound | outbound
    channel: str  # voice | chat
    share: float  # share of the centre's contacts
    talk_median_s: float
    talk_sigma: float
    wrap_median_s: float
    patience_mean_s: float  # caller's patience (inbound) or the dialer's hold (outbound)
    outcomes: tuple[tuple[str, float], ...]  # (outcome, probability); the rest: none


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(
        "billing",
        "care",
        "inbound",
        "voice",
        0.34,
        210,
        0.55,
        30,
        120,
        (("resolved", 0.78), ("unresolved", 0.17)),
    ),
    QueueSpec(
        "support",
        "care",
        "inbound",
        "voice",
        0.30,
        330,
        0.60,
        45,
        150,
        (("resolved", 0.70), ("unresolved", 0.25)),
    ),
    QueueSpec(
        "sales-out",
        "sales",
        "outbound",
        "voice",
        0.18,
        170,
        0.70,
        40,
        120,
        (("sale", 0.14), ("lead", 0.22), ("unresolved", 0.64)),
    ),
    QueueSpec(
        "chat",
        "digital",
        "inbound",
        "chat",
        0.18,
        480,
        0.50,
        20,
        300,
        (("resolved", 0.85), ("unresolved", 0.15)),
    ),
)

#: contacts an agent of the team handles at once
CONCURRENCY = {"care": 1, "sales": 1, "digital": 2}
TARGET_OCCUPANCY = 0.85
MIN_AGENTS = 2
STAFF_CHECK_MS = 15 * MINUTE_MS
OUTBOUND_CONNECT_P = 0.62
OUTBOUND_RING_MEDIAN_S = 12.0


def _bump(h: float, mu: float, s: float) -> float:
    d = (h - mu) / s
    return math.exp(-0.5 * d * d)


def _raw_curve(hour: float) -> float:
    return (
        0.15
        + 1.00 * _bump(hour, 10.5, 2.0)
        + 0.85 * _bump(hour, 14.5, 2.3)
        + 0.25 * _bump(hour, 19.5, 1.5)
    )


_SAMPLES = [_raw_curve(m / 60.0) for m in range(1440)]
_MEAN = sum(_SAMPLES) / len(_SAMPLES)
CURVE_MAX = max(_SAMPLES) / _MEAN * 1.001


def daily_curve(hour: float) -> float:
    """Traffic multiplier at a local hour of day (0-24); its mean over a day is 1."""
    return _raw_curve(hour % 24.0) / _MEAN


def _mean_busy_s(q: QueueSpec) -> float:
    """Expected agent-seconds one contact of the queue takes."""
    talk = q.talk_median_s * math.exp(q.talk_sigma**2 / 2)
    wrap = q.wrap_median_s * math.exp(0.5**2 / 2)
    if q.direction == "outbound":
        ring = OUTBOUND_RING_MEDIAN_S * math.exp(0.4**2 / 2)
        return ring + OUTBOUND_CONNECT_P * (talk + wrap)
    return 2.5 + talk + wrap


# Call states
_WAITING, _ACTIVE, _GONE = 0, 1, 2


class _Call:
    __slots__ = ("agent", "answered", "id", "queue", "state")

    def __init__(self, call_id: str, queue: QueueSpec) -> None:
        self.id = call_id
        self.queue = queue
        self.state = _WAITING
        self.agent: _Agent | None = None
        self.answered = False


class _Agent:
    __slots__ = ("break_ms", "busy", "id", "leaving", "logged_in", "shift_end", "team")

    def __init__(self, agent_id: str, team: _Team, shift_end: int) -> None:
        self.id = agent_id
        self.team = team
        self.shift_end = shift_end
        self.busy = 0
        self.logged_in = False
        self.leaving = ""  # "", "break" or "shift": takes no new work, leaves when idle
        self.break_ms = 0

    def available(self) -> bool:
        return self.logged_in and not self.leaving and self.busy < self.team.concurrency


class _Team:
    __slots__ = ("centre", "concurrency", "free", "name", "on_shift", "queues", "waiting")

    def __init__(self, centre: _Centre, name: str, queues: list[QueueSpec]) -> None:
        self.centre = centre
        self.name = name
        self.queues = queues
        self.concurrency = CONCURRENCY.get(name, 1)
        self.free: deque[_Agent] = deque()  # one entry per free slot (checked when taken)
        self.waiting: deque[_Call] = deque()
        self.on_shift = 0


class _Centre:
    __slots__ = ("agents", "arrival_clock", "calls", "n_agents", "name", "teams", "tz")

    def __init__(self, name: str, tz: str) -> None:
        self.name = name
        self.tz = ZoneInfo(tz)
        self.teams: dict[str, _Team] = {}
        for q in QUEUES:
            if q.team not in self.teams:
                self.teams[q.team] = _Team(self, q.team, [])
            self.teams[q.team].queues.append(q)
        self.agents: list[_Agent] = []
        self.n_agents = 0
        self.calls = 0
        self.arrival_clock = 0.0


def _centre_list(centres: int | Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(centres, int):
        if centres < 1:
            raise ValueError(f"centres must be >= 1, got {centres}")
        named = list(CENTRE_NAMES[:centres])
        named += [(f"c{i + 1}", "UTC") for i in range(len(named), centres)]
        return named
    zones = dict(CENTRE_NAMES)
    return [(name, zones.get(name, "UTC")) for name in centres]


class Simulator:
    """Seeded generator of SPEC section 1 events for ``centres`` contact centres.

    ``centres``: a count (ids from :data:`CENTRE_NAMES`) or a list of ids.
    ``rate``: contacts a minute per centre, averaged over a day.
    ``start_ms``: simulated time of the start, ms since the epoch.
    """

    def __init__(self, seed: int, centres: int | Sequence[str], rate: float, start_ms: int) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 contacts a minute, got {rate}")
        if not 0 < start_ms < 2**53:
            raise ValueError(f"start_ms out of range: {start_ms}")
        self.seed = seed
        self.rate = float(rate)
        self.start_ms = int(start_ms)
        self._rng = random.Random(seed)
        # Ids are unique per (seed, start): two runs from different starts never collide,
        # while the same run replayed gives the same ids (and so counts as duplicates).
        self._run = f"{self.start_ms:x}s{seed}"
        self._heap: list[tuple[int, int, Callable[..., None], tuple]] = []
        self._seq = 0
        self._events = 0
        self._now = self.start_ms
        self._out: list[dict] = []
        self.centres = [_Centre(name, tz) for name, tz in _centre_list(centres)]
        self._shares = [q.share for q in QUEUES]
        self._lam_max = self.rate * CURVE_MAX / MINUTE_MS  # per ms
        for c in self.centres:
            self._fast_start(c)
            c.arrival_clock = float(self.start_ms)
            self._next_arrival(c)
            self._at(self.start_ms + STAFF_CHECK_MS, self._staff_check, c)

    # ------------------------------------------------------------------ public

    def events_until(self, t_ms: int) -> list[dict]:
        """Every event with ``ts < t_ms`` not returned yet, in time order."""
        heap = self._heap
        while heap and heap[0][0] < t_ms:
            t, _, fn, args = heapq.heappop(heap)
            self._now = t
            fn(*args)
        out, self._out = self._out, []
        return out

    def close(self, t_ms: int) -> list[dict]:
        """The events before ``t_ms``, then a logout at ``t_ms`` of every agent logged in.

        For a clean stop: a wallboard shows no staff left behind by a finished run.
        """
        out = self.events_until(t_ms)
        self._now = max(t_ms, self._now)
        for c in self.centres:
            for a in c.agents:
                if a.logged_in:
                    a.logged_in = False
                    self._emit(c, "agent.logout", agent=a.id)
            c.agents.clear()
        out.extend(self._out)
        self._out = []
        self._heap.clear()
        return out

    def rate_at(self, centre: str, t_ms: int) -> float:
        """The expected contacts a minute of ``centre`` at ``t_ms``."""
        c = next(c for c in self.centres if c.name == centre)
        return self.rate * self._curve(c, t_ms)

    # ------------------------------------------------------------------ machinery

    def _at(self, t: int, fn: Callable[..., None], *args: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def _emit(self, c: _Centre, etype: str, **fields: str) -> None:
        self._events += 1
        ev = {
            "id": f"{c.name}-{self._run}-{self._events}",
            "type": etype,
            "ts": self._now,
            "centre": c.name,
        }
        ev.update(fields)
        self._out.append(ev)

    def _curve(self, c: _Centre, t_ms: int) -> float:
        local = datetime.fromtimestamp(t_ms / 1000, UTC).astimezone(c.tz)
        hour = local.hour + local.minute / 60 + local.second / 3600
        return daily_curve(hour)

    def _lognormal_ms(self, median_s: float, sigma: float) -> int:
        return max(1000, int(self._rng.lognormvariate(math.log(median_s), sigma) * 1000))

    # ------------------------------------------------------------------ staffing

    def _target(self, team: _Team, t_ms: int) -> int:
        m = self._curve(team.centre, t_ms)
        erlangs = sum(self.rate * m * q.share / 60 * _mean_busy_s(q) for q in team.queues)
        erlangs /= team.concurrency
        # + 7 %: the share of a shift spent on breaks
        return max(MIN_AGENTS, math.ceil(erlangs / TARGET_OCCUPANCY * 1.07 + 1))

    def _fast_start(self, c: _Centre) -> None:
        rng = self._rng
        for team in c.teams.values():
            for _ in range(self._target(team, self.start_ms)):
                login = self.start_ms + rng.randrange(0, 3000)
                remaining = rng.randrange(30 * MINUTE_MS, 8 * HOUR_MS)
                self._new_shift(team, login, login + remaining)

    def _staff_check(self, c: _Centre) -> None:
        for team in c.teams.values():
            self._staff(team)
        self._at(self._now + STAFF_CHECK_MS, self._staff_check, c)

    def _staff(self, team: _Team) -> None:
        need = max(self._target(team, self._now), self._target(team, self._now + STAFF_CHECK_MS))
        rng = self._rng
        for _ in range(need - team.on_shift):
            login = self._now + rng.randrange(0, 120_000)
            length = 8 * HOUR_MS if rng.random() < 0.7 else 4 * HOUR_MS
            self._new_shift(team, login, login + length)

    def _new_shift(self, team: _Team, login: int, end: int) -> None:
        c = team.centre
        c.n_agents += 1
        agent = _Agent(f"{team.name}-{c.n_agents:03d}", team, end)
        c.agents.append(agent)
        team.on_shift += 1
        self._at(login, self._login, agent)
        self._at(end, self._shift_end, agent)
        length = end - login
        if length >= 2 * HOUR_MS:  # one break around the middle of the shift
            brk = 30 * MINUTE_MS if length > 5 * HOUR_MS else 15 * MINUTE_MS
            at = login + length // 2 + self._rng.randrange(-30 * MINUTE_MS, 30 * MINUTE_MS)
            at = min(at, end - brk - 10 * MINUTE_MS)
            if at > login:
                self._at(at, self._break_start, agent, brk)

    def _login(self, agent: _Agent) -> None:
        if agent.logged_in or self._now >= agent.shift_end:
            return
        agent.logged_in = True
        agent.leaving = ""
        self._emit(agent.team.centre, "agent.login", agent=agent.id, team=agent.team.name)
        for _ in range(agent.team.concurrency - agent.busy):
            agent.team.free.append(agent)
        self._dispatch(agent.team)

    def _leave(self, agent: _Agent, why: str) -> None:
        """Stop taking work; log out as soon as idle."""
        if not agent.logged_in or agent.leaving == "shift":
            return
        agent.leaving = why
        team = agent.team
        team.free = deque(a for a in team.free if a is not agent)
        if agent.busy == 0:
            self._logout(agent)

    def _logout(self, agent: _Agent) -> None:
        agent.logged_in = False
        c = agent.team.centre
        self._emit(c, "agent.logout", agent=agent.id)
        if agent.leaving == "shift":
            c.agents.remove(agent)
        else:  # a break
            self._at(self._now + agent.break_ms, self._login, agent)

    def _break_start(self, agent: _Agent, length: int) -> None:
        if not agent.logged_in or agent.leaving:
            return
        # The break's length starts when the agent actually logs out.
        agent.break_ms = length
        self._leave(agent, "break")

    def _shift_end(self, agent: _Agent) -> None:
        team = agent.team
        team.on_shift -= 1
        if agent.logged_in:
            self._leave(agent, "shift")
        else:  # on a break, or the login never happened
            agent.leaving = "shift"
            if agent in team.centre.agents:
                team.centre.agents.remove(agent)
        self._staff(team)

    # ------------------------------------------------------------------ contacts

    def _next_arrival(self, c: _Centre) -> None:
        """Schedule the next contact of ``c`` (thinning of a Poisson process)."""
        rng = self._rng
        clock = c.arrival_clock
        while True:
            clock += rng.expovariate(self._lam_max)
            if rng.random() * CURVE_MAX <= self._curve(c, int(clock)):
                break
        c.arrival_clock = clock
        self._at(max(self._now, math.ceil(clock)), self._arrive, c)

    def _arrive(self, c: _Centre) -> None:
        self._next_arrival(c)
        q = self._rng.choices(QUEUES, weights=self._shares)[0]
        c.calls += 1
        call = _Call(f"{q.name}-{self._run}-{c.calls}", q)
        team = c.teams[q.team]
        if q.direction == "inbound":
            self._emit(
                c,
                "call.offered",
                call=call.id,
                queue=q.name,
                direction=q.direction,
                channel=q.channel,
            )
        # An outbound contact is a dial request: it is offered when an agent dials it.
        team.waiting.append(call)
        patience = int(self._rng.expovariate(1.0 / q.patience_mean_s) * 1000) + 1
        self._at(self._now + patience, self._give_up, c, call)
        self._dispatch(team)

    def _give_up(self, c: _Centre, call: _Call) -> None:
        if call.state != _WAITING:
            return
        call.state = _GONE
        if call.queue.direction == "inbound":
            self._emit(c, "call.ended", call=call.id)  # abandoned in the queue
        # else: the dialer drops a request no agent was free for; nothing was dialled

    def _dispatch(self, team: _Team) -> None:
        free, waiting = team.free, team.waiting
        while free and waiting:
            call = waiting[0]
            if call.state != _WAITING:
                waiting.popleft()
                continue
            agent = free.popleft()
            if not agent.available():
                continue
            waiting.popleft()
            self._start(call, agent)

    def _start(self, call: _Call, agent: _Agent) -> None:
        rng = self._rng
        c = agent.team.centre
        call.state = _ACTIVE
        call.agent = agent
        agent.busy += 1
        q = call.queue
        if q.direction == "outbound":
            self._emit(
                c,
                "call.offered",
                call=call.id,
                queue=q.name,
                direction=q.direction,
                channel=q.channel,
            )
            ring = self._lognormal_ms(OUTBOUND_RING_MEDIAN_S, 0.4)
            self._at(self._now + ring, self._pickup, c, call)
        else:
            voice = q.channel == "voice"
            delay = rng.randrange(1000, 4000) if voice else rng.randrange(2000, 10000)
            self._at(self._now + delay, self._answer, c, call)

    def _pickup(self, c: _Centre, call: _Call) -> None:
        if self._rng.random() < OUTBOUND_CONNECT_P:
            self._answer(c, call)
        else:  # no answer: the call ends unanswered and the agent is free again
            self._emit(c, "call.ended", call=call.id)
            self._release(call)

    def _answer(self, c: _Centre, call: _Call) -> None:
        assert call.agent is not None
        call.answered = True
        self._emit(c, "call.answered", call=call.id, agent=call.agent.id)
        q = call.queue
        self._at(self._now + self._lognormal_ms(q.talk_median_s, q.talk_sigma), self._end, c, call)

    def _end(self, c: _Centre, call: _Call) -> None:
        self._emit(c, "call.ended", call=call.id)
        wrap = self._lognormal_ms(call.queue.wrap_median_s, 0.5)
        self._at(self._now + wrap, self._wrap, c, call)

    def _wrap(self, c: _Centre, call: _Call) -> None:
        self._emit(c, "call.wrapped", call=call.id)
        r = self._rng.random()
        for outcome, p in call.queue.outcomes:
            if r < p:
                self._emit(c, "call.outcome", call=call.id, outcome=outcome)
                break
            r -= p
        self._release(call)

    def _release(self, call: _Call) -> None:
        agent = call.agent
        assert agent is not None
        call.state = _GONE
        agent.busy -= 1
        if agent.leaving:
            if agent.busy == 0 and agent.logged_in:
                self._logout(agent)
            return
        if agent.logged_in:
            agent.team.free.append(agent)
            self._dispatch(agent.team)
