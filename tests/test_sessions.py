"""Agent sessions: the incremental change points against a full recomputation from SPEC
section 1's rule, in any arrival order, and the work one event costs (issue 12 item 1)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from callcost.streams import sessions
from callcost.streams.sessions import Agent, session_changes


def full(events: list, open0: int | None = None) -> Counter:
    """The change points of the sorted events, recomputed from scratch."""
    return Counter(session_changes(sorted(events), open0))


def random_events(rng: random.Random, n: int) -> list:
    # few distinct instants, so that ties on ts (broken by id) are common
    return [
        (rng.randrange(0, max(2, n // 3)) * 1000, f"e{k:04d}", rng.random() < 0.5,
         rng.randrange(2))
        for k in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(300))
def test_incremental_points_equal_a_full_recomputation_in_any_order(seed: int) -> None:
    rng = random.Random(seed)
    events = random_events(rng, rng.randrange(1, 40))
    rng.shuffle(events)
    agent = Agent()
    booked: Counter = Counter()  # staffed deltas booked, by (ts, rate class)
    for e in events:
        pending: list = []
        agent.add(e, pending)
        for ts, cls, delta in pending:
            booked[ts, cls] += delta
        assert Counter(agent.changes) == full(agent.events), e
        assert agent.changes == sorted(agent.changes)
    # what was booked adds up to the final points' deltas
    final: Counter = Counter()
    for ts, cls, delta in agent.changes:
        final[ts, cls] += delta
    assert {k: n for k, n in booked.items() if n} == {k: n for k, n in final.items() if n}


def test_a_duplicate_event_changes_nothing() -> None:
    agent = Agent()
    agent.add((1000, "a", True, 0), [])
    pending: list = []
    agent.add((1000, "a", True, 0), pending)
    assert pending == [] and agent.changes == [(1000, 0, 1)]


def test_restored_agent_with_unsorted_points_stays_exact() -> None:
    """A checkpoint of an older worker keeps its points in event order."""
    events = [(1000, "b", True, 1), (1000, "c", False, 1), (2000, "d", True, 0)]
    agent = Agent()
    agent.events = sorted(events)
    agent.changes = session_changes(agent.events, None)[::-1]
    agent.add((1500, "x", False, 0), [])
    agent.add((500, "y", True, 1), [])
    assert Counter(agent.changes) == full(agent.events)


def test_one_agent_flapping_costs_constant_work_per_event(monkeypatch) -> None:
    """2,000 logins and logouts of one agent, in any order: each event looks at a few
    events, not at the agent's whole history (it was every event, every time)."""
    looked = []
    real = sessions.session_changes

    def counting(events, open_cls):
        looked.append(len(events))
        return real(events, open_cls)

    monkeypatch.setattr(sessions, "session_changes", counting)
    rng = random.Random(7)
    events = [(k * 1000, f"f{k:05d}", k % 2 == 0, 0) for k in range(2000)]
    rng.shuffle(events)
    agent = Agent()
    for e in events:
        agent.add(e, [])
    assert max(looked) <= 3 and sum(looked) <= 6 * len(events)
    monkeypatch.setattr(sessions, "session_changes", real)
    assert Counter(agent.changes) == full(agent.events)
