"""``callcost.streams.recovery``: the worker's recovery plan, pure (no Kafka, no clock).

What a restored partition replays from, which checkpoints and markers count, what the
output tails say was already sent, where the next restore must read them from, and
when an alert or a tail hold can be forgotten."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import orjson

from callcost.streams import recovery
from callcost.streams.recovery import Recovery, Tails


@dataclass
class Msg:
    topic: str
    value: bytes | None
    headers: list | None = None


def test_the_module_imports_no_io_and_reads_no_clock() -> None:
    code = ("import sys, callcost.streams.recovery\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('faust', 'mode', 'aiokafka', 'kafka', 'websockets', 'aiohttp', 'asyncio', "
            "'callcost.agents'))\nprint(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
    import inspect

    src = inspect.getsource(recovery)
    assert "time." not in src and "datetime" not in src


def test_marker_key() -> None:
    assert recovery.marker_key("call-events", 3) == "@offsets/call-events/3"


def test_pick_checkpoints_keeps_ours_and_says_what_it_ignores() -> None:
    marker = orjson.dumps({"partition": 1, "offset": 40})
    latest = {
        b"@offsets/ev/1": (marker, 0, 5),
        b"@offsets/ev/2": (orjson.dumps({"partition": 2, "offset": 9}), 0, 6),  # not asked
        b"@offsets/other/1": (marker, 0, 7),  # another events topic
        b"@offsets/ev/3": (b"{not json", 0, 8),
        b"gone": (None, 0, 9),  # a tombstone
        b"junk": (b"not a checkpoint", 0, 10),
    }
    blobs, markers, warnings = recovery.pick_checkpoints(latest, "ck", "ev", {1, 3})
    assert blobs == {}
    assert markers == {1: {"partition": 1, "offset": 40}}
    assert len(warnings) == 2
    assert "@offsets/ev/3" in warnings[0] and "unreadable" in warnings[0]
    assert "centre junk (ck[0]@10)" in warnings[1]


def test_replay_start() -> None:
    marker = {"offset": 100, "centres": {"a": 100, "b": 90}}
    # every centre restored at or after what the marker records: from the marker
    assert recovery.replay_start(marker, {"a": 100, "b": 90}, None, (0, 500)) == (
        100, None, [])
    # one checkpoint older than the marker records (an older writer): from there
    start, rebuild, notes = recovery.replay_start(marker, {"a": 100, "b": 70}, None, (0, 500))
    assert (start, rebuild) == (70, None) and notes[0][0] == "warning"
    # a centre the marker records has no usable checkpoint: rebuilt from the start
    start, rebuild, _ = recovery.replay_start(marker, {"a": 100}, None, (20, 500))
    assert start == 20 and rebuild == "no usable checkpoint for centres ['b']"
    # no marker; a checkpoint refused (that reason wins)
    assert recovery.replay_start(None, {}, None, (5, 9))[:2] == (5, "no checkpoint marker")
    assert recovery.replay_start(None, {}, "refused", (5, 9))[:2] == (5, "refused")
    # the events the checkpoint needs are gone: from the first offset left, an error
    start, rebuild, notes = recovery.replay_start({"offset": 3, "centres": {}}, {}, None,
                                                  (10, 50))
    assert (start, rebuild) == (10, None) and notes[0][0] == "error"


def test_tail_starts_take_the_smallest_end_and_none_means_everything() -> None:
    fields = {"al": "alerts_end", "fig": "figures_end"}
    a = {"alerts_end": {"0": 5, "1": 9}, "figures_end": {"0": 3}}
    b = {"alerts_end": {"0": 7, "1": 2}, "figures_end": {"0": 8}}
    assert recovery.tail_starts([a, b], fields) == {"al": {"0": 5, "1": 2}, "fig": {"0": 3}}
    assert recovery.tail_starts([a, None], fields) == {"al": {}, "fig": {}}
    assert recovery.tail_starts([a, {}], fields) == {"al": {}, "fig": {}}


def test_scan_tails() -> None:
    tails = Tails()
    dlq_headers = [("callcost-source-topic", b"ev"), ("callcost-source-partition", b"2"),
                   ("callcost-source-offset", b"17")]
    recovery.scan_tails([
        Msg("al", orjson.dumps({"id": "x", "state": "firing", "centre": "c", "at": 60})),
        Msg("fig", orjson.dumps({"centre": "c", "as_of": 120})),
        Msg("fig", orjson.dumps({"centre": "c", "as_of": 60})),
        Msg("fig", b"garbage"),
        Msg("dlq", b"whatever", dlq_headers),
        Msg("dlq", b"other", [("callcost-source-topic", b"elsewhere")]),
    ], tails, alerts="al", figures="fig", dlq="dlq", events="ev")
    assert tails.alerts == {("x", "firing"): ("c", 60)}
    assert tails.figures == {"c": 120}
    assert tails.dlq == {2: {17}}


def test_assign_drop_positions_and_skips() -> None:
    r = Recovery()
    dropped, gone, new = r.assign({0, 1})
    assert (dropped, gone, new) == ([], set(), {0, 1})
    assert r.positions() == {} and r.position(0) == 0  # not restored yet
    r.parts[0].next_offset = 10
    m = r.marks("a")
    m.partition, m.skip_below = 0, 15
    r.dirty.add("a")
    assert r.positions() == {0: 10}
    assert r.before_checkpoint(b"a", 14) and not r.before_checkpoint(b"a", 15)
    assert not r.before_checkpoint(None, 1) and not r.before_checkpoint(b"b", 1)
    r.skips_done()
    assert m.skip_below == 15  # the state is not past it yet
    r.parts[0].next_offset = 15
    r.skips_done()
    assert m.skip_below is None
    r.parts[1].gap_check = False
    dropped, gone, new = r.assign({1, 2})
    assert (dropped, gone, new) == (["a"], {0}, {2})
    assert r.owned == {1, 2} and "a" not in r.centres and "a" not in r.dirty
    assert r.parts[1].gap_check  # every assignment checks the next event for a gap


def test_figures_floor_passes_once() -> None:
    r = Recovery()
    r.marks("c").figures_floor = 100
    assert not r.figures_floor_passes("c", 99)
    assert not r.figures_floor_passes("c", None)
    assert r.figures_floor_passes("c", 100)
    assert r.figures_floor_passes("c", 50)  # the floor went once passed
    assert r.figures_floor_passes("other", 1)


def test_held_ends_and_their_release() -> None:
    r = Recovery()
    r.assign({0})
    s = r.parts[0]
    s.next_offset = 10
    names = ("al", "fig")
    ends = {"al": {"0": 50, "1": 40}, "fig": {"0": 30}}
    assert r.held_ends(0, ends, names) == ends
    s.tail_hold = {"al": {"0": 20}, "fig": {"0": 35}}
    assert r.held_ends(0, ends, names) == {"al": {"0": 20, "1": 0}, "fig": {"0": 30}}
    # held while anything of an earlier run is ahead of the state
    s.dlq_sent = {12}
    r.release_tail_holds()
    assert s.tail_hold is not None
    r.checkpointed(0)
    assert s.dlq_sent == {12}  # at or after the state: it may recur
    s.next_offset = 13
    r.checkpointed(0)
    assert s.dlq_sent == set()
    r.marks("c").partition = 0
    r.already_sent[("x", "firing")] = ("c", 60)
    r.release_tail_holds()
    assert s.tail_hold is not None
    r.forget_sent_alerts({"c": 60})  # the centre's last instant reached the alert's
    assert r.already_sent == {}
    r.release_tail_holds()
    assert s.tail_hold is None


def test_forget_sent_alerts_keeps_unknown_centres_while_replaying() -> None:
    r = Recovery()
    r.assign({0})
    r.parts[0].catch_up = recovery.CatchUp(0, 100, None, 0.0)
    r.already_sent = {("x", "firing"): ("elsewhere", 5), ("y", "firing"): ("c", 90)}
    other = r.marks("elsewhere")
    other.figures_floor = other.published_as_of = 7
    r.forget_sent_alerts({"c": 60})
    assert set(r.already_sent) == {("x", "firing"), ("y", "firing")}
    assert other.figures_floor == 7  # a centre being rebuilt may still appear
    r.parts[0].catch_up = None
    r.forget_sent_alerts({"c": 60})
    assert set(r.already_sent) == {("y", "firing")}
    assert other.figures_floor is None and other.published_as_of is None
    assert r.catching_up() == {}
