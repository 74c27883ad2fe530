"""The gateway's pure core: stores, the websocket protocol, conflation (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callcost.web.messages import parse_alert, parse_figures
from callcost.web.queries import alerts_query, figures_query
from callcost.web.session import MAX_SUBSCRIPTIONS
from callcost.web.stores import AlertFilter, AlertStore, FigureStore
from callcost.web.wire import ERRORS, BadMessage, RequestError
from tests.support.messages import (
    T0,
    alert,
    centre_figures,
    figure,
    figures_value,
    message,
    parsed_alert,
)
from tests.support.sessions import ask, drain, feed, new_session

# --------------------------------------------------------------------------- messages


def test_parse_figures_keeps_every_field() -> None:
    figs = centre_figures("prg", T0)
    figs[0]["low"], figs[0]["high"] = 2.7, 5.6
    msg = parse_figures(figures_value("prg", T0, figs))
    assert msg.centre == "prg" and msg.as_of == T0
    assert list(msg.figures) == figs


@pytest.mark.parametrize(
    ("value", "reason", "named"),
    [
        (b"{not json", "invalid_json", "not JSON"),
        (b"[1, 2]", "not_an_object", "[1,2]"),
        (b'{"type": "figures", "centre": "prg", "figures": []}', "missing_field", "as_of"),
        (b'{"type": "alert", "centre": "prg", "as_of": 1, "figures": []}', "invalid_value", "type"),
        (b'{"type": "figures", "centre": "p r g", "as_of": 1, "figures": []}', "invalid_value",
         '"p r g"'),
        (b'{"type": "figures", "centre": "prg", "as_of": 1.5, "figures": []}', "invalid_value",
         "1.5"),
        (b'{"type": "figures", "centre": "prg", "as_of": 1, "figures": {}}', "invalid_value",
         "figures"),
        (b'{"type": "figures", "centre": "prg", "as_of": 1, "figures": [3]}', "not_an_object",
         "figure 0"),
    ],
)
def test_parse_figures_rejects(value: bytes, reason: str, named: str) -> None:
    with pytest.raises(BadMessage) as info:
        parse_figures(value)
    assert info.value.reason == reason
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("change", "reason", "named"),
    [
        ({"scope": "team"}, "invalid_value", '"team"'),
        ({"centre": "brn"}, "invalid_value", '"brn"'),
        ({"key": ""}, "invalid_value", "key"),
        ({"window": None}, "invalid_value", "window"),
        ({"as_of": "now"}, "invalid_value", "as_of"),
    ],
)
def test_parse_figures_checks_each_figure(change: dict, reason: str, named: str) -> None:
    figs = centre_figures("prg", T0)
    figs[3].update(change)
    with pytest.raises(BadMessage) as info:
        parse_figures(figures_value("prg", T0, figs))
    assert info.value.reason == reason
    assert named in str(info.value) and "figure 3" in str(info.value)


def test_parse_figures_missing_identity_field() -> None:
    figs = centre_figures("prg", T0)
    del figs[1]["key"]
    with pytest.raises(BadMessage) as info:
        parse_figures(figures_value("prg", T0, figs))
    assert info.value.reason == "missing_field" and "'key'" in str(info.value)


def test_parse_alert() -> None:
    a = alert()
    assert parse_alert(json.dumps(a).encode()) == a


@pytest.mark.parametrize(
    ("change", "reason", "named"),
    [
        ({"state": "pending"}, "invalid_value", "pending"),
        ({"type": "figures"}, "invalid_value", "type"),
        ({"id": ""}, "invalid_value", "id"),
        ({"centre": 7}, "invalid_value", "centre"),
        ({"direction": "up"}, "invalid_value", "up"),
        ({"value": "high"}, "invalid_value", "value"),
        ({"at": 1.5}, "invalid_value", "at"),
        ({"since": None}, "invalid_value", "since"),
    ],
)
def test_parse_alert_rejects(change: dict, reason: str, named: str) -> None:
    a = alert()
    a.update(change)
    with pytest.raises(BadMessage) as info:
        parse_alert(json.dumps(a))
    assert info.value.reason == reason and named in str(info.value)


def test_parse_alert_missing_field() -> None:
    a = alert()
    del a["rule"]
    with pytest.raises(BadMessage) as info:
        parse_alert(json.dumps(a))
    assert info.value.reason == "missing_field" and "'rule'" in str(info.value)


# --------------------------------------------------------------------------- stores


def test_figure_store_keeps_newest_message_per_centre() -> None:
    store = FigureStore()
    assert store.apply(message("prg", T0, total=40.0))
    assert store.apply(message("brn", T0 - 5000, total=10.0))
    assert store.apply(message("prg", T0 + 1000, total=50.0))
    assert not store.apply(message("prg", T0 + 500, total=99.0))  # older: ignored
    assert store.as_of("prg") == T0 + 1000
    assert store.as_of("brn") == T0 - 5000
    assert store.as_of("ost") is None
    assert store.centres() == ["brn", "prg"]
    prg = store.query("prg")
    assert len(prg) == 15 and {f["as_of"] for f in prg} == {T0 + 1000}
    assert {f["total"] for f in prg if f["scope"] == "centre"} == {50.0}
    assert len(store) == 30
    # an equal as_of replaces (a republished instant)
    assert store.apply(message("prg", T0 + 1000, total=60.0))
    assert {f["total"] for f in store.query("prg", "centre")} == {60.0}


def test_figure_store_query_filters() -> None:
    store = FigureStore()
    store.apply(message("prg", T0))
    store.apply(message("brn", T0))
    queues = store.query("prg", scope="queue")
    assert [(f["key"], f["window"]) for f in queues] == [
        ("billing", "15m"), ("sales", "15m"), ("billing", "1h"), ("sales", "1h"),
        ("billing", "today"), ("sales", "today"),
    ]
    assert {f["centre"] for f in store.query(window="1h")} == {"prg", "brn"}
    assert len(store.query(window="1h")) == 10
    assert [f["centre"] for f in store.query(scope="centre", window="15m")] == ["brn", "prg"]
    assert store.query("ost") == []
    assert len(store.query()) == 30


def test_figure_store_message_is_the_whole_state() -> None:
    """A key absent from the newer message is gone; a key twice keeps its last figure."""
    store = FigureStore()
    store.apply(message("prg", T0, queues=("billing", "sales")))
    figs = centre_figures("prg", T0 + 1000, queues=("billing",))
    figs.append(figure("prg", "queue", "billing", "15m", T0 + 1000, handled=99))
    store.apply(parse_figures(figures_value("prg", T0 + 1000, figs)))
    keys = {f["key"] for f in store.query("prg", "queue")}
    assert keys == {"billing"}
    billing_15m = [f for f in store.query("prg", "queue", "15m")]
    assert len(billing_15m) == 1 and billing_15m[0]["handled"] == 99


def test_alert_store_firing_resolved_and_history() -> None:
    store = AlertStore()
    a1 = parsed_alert(key="billing", since=T0, at=T0 + 60000)
    a2 = parsed_alert(key="sales", since=T0 + 1000, at=T0 + 61000)
    b1 = parsed_alert(centre="brn", key="q", since=T0 - 9000, at=T0 + 51000)
    for a in (a1, a2, b1):
        assert store.apply(a)
    assert [a["id"] for a in store.query()] == [a1["id"], a2["id"], b1["id"]]
    assert store.firing_count == 3
    r1 = parsed_alert(key="billing", since=T0, at=T0 + 120000, state="resolved")
    assert store.apply(r1)
    assert [a["id"] for a in store.query(state="firing")] == [a2["id"], b1["id"]]
    assert [a["id"] for a in store.query("prg", "firing")] == [a2["id"]]
    # all: every message, oldest first by `at`
    assert [(a["id"], a["state"]) for a in store.query(state="all")] == [
        (b1["id"], "firing"), (a1["id"], "firing"), (a2["id"], "firing"), (a1["id"], "resolved"),
    ]
    assert [a["state"] for a in store.query("prg", "all")] == ["firing", "firing", "resolved"]
    assert len(store) == 4


def test_alert_store_ignores_duplicates() -> None:
    store = AlertStore()
    a = parsed_alert()
    assert store.apply(a)
    assert not store.apply(dict(a))  # a restarted worker published it again
    r = parsed_alert(state="resolved", at=a["at"] + 5000)
    assert store.apply(r)
    assert not store.apply(dict(a))  # late duplicate of the firing: still resolved
    assert not store.apply(dict(r))
    assert store.query(state="firing") == []
    assert len(store) == 2


def test_alert_store_resolved_before_firing_never_fires() -> None:
    store = AlertStore()
    store.apply(parsed_alert(state="resolved", at=T0 + 90000))
    store.apply(parsed_alert(state="firing"))
    assert store.query(state="firing") == []
    assert [a["state"] for a in store.query(state="all")] == ["firing", "resolved"]


# --------------------------------------------------------------------------- requests


def test_ping_pong_echoes_id() -> None:
    session, _, _ = new_session()
    assert ask(session, {"op": "ping"}) == [{"type": "pong"}]
    assert ask(session, {"op": "ping", "id": [1, "a"]}) == [{"type": "pong", "id": [1, "a"]}]


def test_figures_snapshot_then_updates() -> None:
    session, figures, _ = new_session()
    figures.apply(message("prg", T0))
    figures.apply(message("brn", T0))
    [snap] = ask(
        session, {"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "queue"}
    )
    assert snap == {
        "type": "snapshot",
        "sub": "s1",
        "channel": "figures",
        "seq": 0,
        "centre": "prg",
        "scope": "queue",
        "window": None,
        "as_of": T0,
        "figures": figures.query("prg", "queue"),
    }
    assert len(snap["figures"]) == 6
    feed(session, figures, message("brn", T0 + 1000))  # another centre: nothing
    assert drain(session) == []
    for n in (1, 2, 3):
        feed(session, figures, message("prg", T0 + n * 1000, total=40.0 + n))
        [update] = drain(session)
        assert update["type"] == "update" and update["sub"] == "s1"
        assert update["channel"] == "figures" and update["centre"] == "prg"
        assert update["seq"] == n
        assert update["as_of"] == T0 + n * 1000
        assert len(update["figures"]) == 6
        assert {f["scope"] for f in update["figures"]} == {"queue"}
        assert {f["total"] for f in update["figures"]} == {(40.0 + n) / 2}
    feed(session, figures, message("prg", T0))  # older than held: not sent
    assert drain(session) == []


def test_figures_snapshot_of_unknown_centre_is_empty_then_fills() -> None:
    session, figures, _ = new_session()
    [snap] = ask(session, {"op": "subscribe", "channel": "figures", "centre": "ost",
                           "window": "1h", "sub": "mine"})
    assert snap["sub"] == "mine" and snap["figures"] == [] and snap["as_of"] is None
    assert snap["window"] == "1h" and snap["scope"] is None
    feed(session, figures, message("ost", T0))
    [update] = drain(session)
    assert update["seq"] == 1 and update["sub"] == "mine"
    assert len(update["figures"]) == 5 and {f["window"] for f in update["figures"]} == {"1h"}


def test_every_figures_subscription_gets_its_own_selection_and_seq() -> None:
    session, figures, _ = new_session()
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg"})
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "centre"})
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "centre",
                  "window": "today"})
    feed(session, figures, message("prg", T0))
    updates = {u["sub"]: u for u in drain(session)}
    assert {s: u["seq"] for s, u in updates.items()} == {"s1": 1, "s2": 1, "s3": 1}
    assert [len(updates[s]["figures"]) for s in ("s1", "s2", "s3")] == [15, 3, 1]


def test_alerts_snapshot_has_firing_then_every_alert() -> None:
    session, _, alerts = new_session()
    firing = parsed_alert(key="billing")
    alerts.apply(firing)
    alerts.apply(parsed_alert(key="sales"))
    alerts.apply(parsed_alert(key="sales", state="resolved"))
    alerts.apply(parsed_alert(centre="brn"))
    [snap] = ask(session, {"op": "subscribe", "channel": "alerts", "centre": "prg"})
    assert snap == {
        "type": "snapshot", "sub": "s1", "channel": "alerts", "seq": 0, "centre": "prg",
        "scope": None, "rule": None, "key": None, "state": None,
        "alerts": [{**firing, "ack": None, "snooze": None}], "snoozes": [],
    }
    [everywhere] = ask(session, {"op": "subscribe", "channel": "alerts", "sub": "all"})
    assert everywhere["centre"] is None and len(everywhere["alerts"]) == 2
    new = parsed_alert(key="sales", since=T0 + 5000)
    alerts.apply(new)
    session.on_alert(new)
    other = parsed_alert(centre="brn", since=T0 + 7000)
    alerts.apply(other)
    session.on_alert(other)
    out = drain(session)
    assert [(m["sub"], m["seq"], m["id"]) for m in out] == [
        ("s1", 1, new["id"]), ("all", 1, new["id"]), ("all", 2, other["id"]),
    ]
    assert out[0] == {"type": "alert", "sub": "s1", "seq": 1,
                      **{k: v for k, v in new.items() if k != "type"}}


def test_server_assigned_ids_skip_ids_in_use() -> None:
    session, _, _ = new_session()
    ask(session, {"op": "subscribe", "channel": "alerts", "sub": "s1"})
    [snap] = ask(session, {"op": "subscribe", "channel": "alerts", "centre": "prg"})
    assert snap["sub"] == "s2"


def test_unsubscribe_by_sub_and_by_filters() -> None:
    session, figures, _ = new_session()
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg", "sub": "a"})
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg", "window": "1h"})
    ask(session, {"op": "subscribe", "channel": "alerts"})
    assert ask(session, {"op": "unsubscribe", "sub": "a"}) == [
        {"type": "unsubscribed", "sub": "a"}
    ]
    assert ask(
        session, {"op": "unsubscribe", "channel": "figures", "centre": "prg", "window": "1h",
                  "scope": None}
    ) == [{"type": "unsubscribed", "sub": "s1"}]
    assert ask(session, {"op": "unsubscribe", "channel": "alerts"}) == [
        {"type": "unsubscribed", "sub": "s2"}
    ]
    assert session.subscriptions == {}
    feed(session, figures, message("prg", T0))
    assert drain(session) == []


def test_unsubscribe_drops_what_was_waiting_and_resubscribe_starts_at_seq_0() -> None:
    session, figures, _ = new_session()
    session.receive(json.dumps({"op": "subscribe", "channel": "figures", "centre": "prg",
                                "sub": "x"}))
    feed(session, figures, message("prg", T0))
    session.receive(json.dumps({"op": "unsubscribe", "sub": "x"}))
    out = drain(session)
    assert [m["type"] for m in out] == ["unsubscribed"]  # snapshot and update dropped
    [snap] = ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg",
                           "sub": "x"})
    assert snap["seq"] == 0 and snap["as_of"] == T0
    feed(session, figures, message("prg", T0 + 1000))
    assert [m["seq"] for m in drain(session)] == [1]


def test_replies_keep_request_order() -> None:
    session, _, _ = new_session()
    for request in ({"op": "ping", "id": 1}, {"op": "nope"},
                    {"op": "subscribe", "channel": "alerts"}, {"op": "ping", "id": 2}):
        session.receive(json.dumps(request))
    assert [m["type"] for m in drain(session)] == ["pong", "error", "snapshot", "pong"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("frame", "code", "op", "named"),
    [
        ("{oops", "invalid_json", None, "not JSON"),
        (b"\xff\xfe", "invalid_json", None, "not JSON"),
        ("[1]", "not_an_object", None, "[1]"),
        ('"ping"', "not_an_object", None, '"ping"'),
        ({"channel": "figures"}, "missing_field", None, "'op'"),
        ({"op": 3}, "wrong_type", None, "3"),
        ({"op": "subscrib"}, "unknown_op", "subscrib", '"subscrib"'),
        ({"op": "subscribe"}, "missing_field", "subscribe", "'channel'"),
        ({"op": "subscribe", "channel": ["figures"]}, "wrong_type", "subscribe", "channel"),
        ({"op": "subscribe", "channel": "figure", "centre": "prg"}, "unknown_channel",
         "subscribe", '"figure"'),
        ({"op": "subscribe", "channel": "figures"}, "missing_field", "subscribe", "'centre'"),
        ({"op": "subscribe", "channel": "figures", "centre": 5}, "wrong_type", "subscribe",
         "centre"),
        ({"op": "subscribe", "channel": "figures", "centre": "pr g"}, "invalid_value",
         "subscribe", '"pr g"'),
        ({"op": "subscribe", "channel": "figures", "centre": "x" * 65}, "invalid_value",
         "subscribe", "centre"),
        ({"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "team"},
         "unknown_scope", "subscribe", '"team"'),
        ({"op": "subscribe", "channel": "figures", "centre": "prg", "scope": 1},
         "wrong_type", "subscribe", "scope"),
        ({"op": "subscribe", "channel": "figures", "centre": "prg", "window": "15 minutes"},
         "invalid_value", "subscribe", '"15 minutes"'),
        ({"op": "subscribe", "channel": "figures", "centre": "prg", "window": 15},
         "wrong_type", "subscribe", "window"),
        ({"op": "subscribe", "channel": "alerts", "centre": "a/b"}, "invalid_value",
         "subscribe", '"a/b"'),
        ({"op": "subscribe", "channel": "alerts", "sub": 7}, "wrong_type", "subscribe", "sub"),
        ({"op": "subscribe", "channel": "alerts", "sub": ""}, "invalid_value", "subscribe",
         "sub"),
        ({"op": "unsubscribe"}, "missing_field", "unsubscribe", "'sub' or 'channel'"),
        ({"op": "unsubscribe", "sub": "zz"}, "unknown_sub", "unsubscribe", '"zz"'),
        ({"op": "unsubscribe", "channel": "figures", "centre": "prg"}, "unknown_sub",
         "unsubscribe", '"prg"'),
        ({"op": "unsubscribe", "channel": "tv"}, "unknown_channel", "unsubscribe", '"tv"'),
    ],
)
def test_bad_requests(frame: Any, code: str, op: str | None, named: str) -> None:
    assert code in ERRORS
    session, _, _ = new_session()
    [error] = ask(session, frame)
    assert error["type"] == "error"
    assert error["error"] == code
    assert error["request"] == op
    assert named in error["message"]
    # the session goes on
    assert ask(session, {"op": "ping"}) == [{"type": "pong"}]


def test_error_names_the_sub_of_the_request() -> None:
    session, _, _ = new_session()
    [error] = ask(session, {"op": "subscribe", "channel": "nope", "sub": "w1"})
    assert error["sub"] == "w1" and error["error"] == "unknown_channel"


def test_duplicate_sub_and_already_subscribed() -> None:
    session, _, _ = new_session()
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg", "sub": "a"})
    [error] = ask(session, {"op": "subscribe", "channel": "alerts", "sub": "a"})
    assert error["error"] == "duplicate_sub" and '"a"' in error["message"]
    [error] = ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg",
                            "scope": None, "sub": "b"})
    assert error["error"] == "already_subscribed" and '"a"' in error["message"]
    # a different filter is a different subscription
    [snap] = ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg",
                           "scope": "queue", "sub": "b"})
    assert snap["type"] == "snapshot"
    assert sorted(session.subscriptions) == ["a", "b"]


def test_subscription_limit() -> None:
    session, _, _ = new_session()
    for i in range(MAX_SUBSCRIPTIONS):
        [snap] = ask(session, {"op": "subscribe", "channel": "figures", "centre": f"c{i}"})
        assert snap["type"] == "snapshot"
    [error] = ask(session, {"op": "subscribe", "channel": "figures", "centre": "one-more"})
    assert error["error"] == "too_many_subscriptions" and "64" in error["message"]
    ask(session, {"op": "unsubscribe", "sub": "s1"})
    [snap] = ask(session, {"op": "subscribe", "channel": "figures", "centre": "one-more"})
    assert snap["type"] == "snapshot"


# --------------------------------------------------------------------------- conflation


def test_figures_updates_conflate_once_the_outbox_is_full() -> None:
    session, figures, _ = new_session(soft_limit=3, hard_limit=10)
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg", "scope": "centre"})
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "brn"})
    for n in range(1, 41):
        feed(session, figures, message("prg", T0 + n * 1000, total=float(n)))
        feed(session, figures, message("brn", T0 + n * 1000, total=float(n)))
    assert not session.overflowed
    assert session.pending <= 4  # never more than one waiting update per subscription
    out = drain(session)
    # below the soft limit the first updates queue up; then each subscription keeps
    # one waiting update, replaced by every newer one
    by_sub: dict[str, list[dict]] = {}
    for m in out:
        by_sub.setdefault(m["sub"], []).append(m)
    for sub, messages in by_sub.items():
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1)), sub
        assert messages[-1]["as_of"] == T0 + 40 * 1000
        assert {f["total"] for f in messages[-1]["figures"] if f["scope"] == "centre"} == {40.0}
    assert len(out) < 80
    assert session.conflated == 80 - len(out)
    # after draining, updates queue normally again, seq going on
    feed(session, figures, message("prg", T0 + 41000))
    [update] = drain(session)
    assert update["seq"] == len(by_sub["s1"]) + 1 and update["as_of"] == T0 + 41000


def test_no_conflation_below_the_soft_limit() -> None:
    session, figures, _ = new_session(soft_limit=100)
    ask(session, {"op": "subscribe", "channel": "figures", "centre": "prg"})
    for n in range(1, 11):
        feed(session, figures, message("prg", T0 + n * 1000))
    out = drain(session)
    assert [m["as_of"] for m in out] == [T0 + n * 1000 for n in range(1, 11)]
    assert session.conflated == 0


def test_alerts_are_never_conflated_and_overflow_marks_the_session() -> None:
    session, _, alerts = new_session(soft_limit=2, hard_limit=20)
    ask(session, {"op": "subscribe", "channel": "alerts"})
    for n in range(20):
        a = parsed_alert(key=f"q{n}")
        alerts.apply(a)
        session.on_alert(a)
    assert session.pending == 20 and not session.overflowed
    out = drain(session)
    assert [m["key"] for m in out] == [f"q{n}" for n in range(20)]
    assert [m["seq"] for m in out] == list(range(1, 21))
    for n in range(21):
        session.on_alert(parsed_alert(key=f"r{n}"))
    assert session.overflowed
    assert session.pending == 21
    session.on_alert(parsed_alert(key="late"))  # nothing is queued once overflowed
    session.receive('{"op": "ping"}')
    assert session.pending == 21


def test_replies_count_toward_the_hard_limit() -> None:
    session, _, _ = new_session(hard_limit=5)
    for _ in range(5):
        session.receive('{"op": "ping"}')
    assert not session.overflowed
    session.receive('{"op": "ping"}')
    assert session.overflowed


# --------------------------------------------------------------------------- HTTP queries


def test_http_queries() -> None:
    assert figures_query({}) == (None, None, None)
    assert figures_query({"centre": ["prg"], "scope": ["queue"], "window": ["15m"]}) == (
        "prg", "queue", "15m",
    )
    assert figures_query({"centre": [""]}) == (None, None, None)
    assert alerts_query({}) == (None, "firing", None, None)
    assert alerts_query({"state": ["all"], "centre": ["brn"]}) == ("brn", "all", None, None)
    assert alerts_query({"since": [str(T0)], "until": ["-5"]}) == (None, "firing", T0, -5)


@pytest.mark.parametrize(
    ("query", "code", "named"),
    [
        ({"centre": ["p r g"]}, "invalid_value", '"p r g"'),
        ({"scope": ["team"]}, "unknown_scope", '"team"'),
        ({"window": ["1d"]}, "invalid_value", '"1d"'),
        ({"center": ["prg"]}, "unknown_parameter", '"center"'),
    ],
)
def test_bad_figures_query(query: dict, code: str, named: str) -> None:
    with pytest.raises(RequestError) as info:
        figures_query(query)
    assert info.value.code == code and named in info.value.message


def test_bad_alerts_query() -> None:
    with pytest.raises(RequestError) as info:
        alerts_query({"state": ["resolved"]})
    assert info.value.code == "invalid_value" and '"resolved"' in info.value.message
    with pytest.raises(RequestError) as info:
        alerts_query({"scope": ["queue"]})
    assert info.value.code == "unknown_parameter"


# --------------------------------------------------------------------------- issue 4


def test_alert_store_time_range_filters_and_lookups() -> None:
    store = AlertStore()
    a1 = parsed_alert(key="billing", since=T0, at=T0 + 60000)
    a2 = parsed_alert(key="sales", since=T0 + 1000, at=T0 + 61000, rule="other")
    r1 = parsed_alert(key="billing", since=T0, at=T0 + 120000, state="resolved")
    for a in (a1, a2, r1):
        store.apply(a)
    assert store.query(state="all", since=T0 + 61000) == [a2, r1]
    assert store.query(state="all", until=T0 + 61000) == [a1]
    assert store.query(state="all", since=T0 + 60000, until=T0 + 120000) == [a1, a2]
    assert store.query(state="all", match=AlertFilter(rule="other")) == [a2]
    assert store.query(state="all", match=AlertFilter(state="resolved")) == [r1]
    assert store.query(match=AlertFilter(key="billing")) == []  # resolved
    assert store.firing(a2["id"]) == a2 and store.firing(a1["id"]) is None
    assert store.known(a1["id"]) and not store.known("prg/x/y/1")


@pytest.mark.parametrize(
    ("query", "named"),
    [({"since": ["yesterday"]}, '"yesterday"'), ({"until": ["1.5"]}, '"1.5"')],
)
def test_bad_alerts_time_range(query: dict, named: str) -> None:
    with pytest.raises(RequestError) as info:
        alerts_query(query)
    assert info.value.code == "invalid_value" and named in info.value.message


def test_control_ops_need_the_clock_and_answer_in_order() -> None:
    session, _, alerts = new_session()
    alerts.apply(parsed_alert())
    with pytest.raises(ValueError, match="now_ms"):
        session.receive(json.dumps({"op": "ack", "id": parsed_alert()["id"], "by": "eva"}))
    # a bad control request is answered at once, like any other
    reply = session.receive(json.dumps({"op": "snooze", "by": "eva"}), T0)
    assert isinstance(reply, dict) and reply["error"] == "missing_field"
    assert [m["type"] for m in drain(session)] == ["error"]
