"""What the workers wrote on their output topics (figures, alerts, dead letters), read as
it comes and, once they have stopped, to the end offsets; checked against a vector's
``expected.json``: right figures and alerts, ``as_of`` never backwards, nothing twice."""

from __future__ import annotations

from collections import Counter

import orjson

from tests.support.brokers import TopicReader
from tests.vectorcheck import alert_mismatches, figure_mismatches


class Outputs:
    """Readers of this test's ``cost-figures``, ``cost-alerts`` and ``call-events-dlq``."""

    def __init__(self, bootstrap: str, names: dict[str, str]) -> None:
        self.figures = TopicReader(bootstrap, names["cost-figures"])
        self.alerts = TopicReader(bootstrap, names["cost-alerts"])
        self.dlq = TopicReader(bootstrap, names["call-events-dlq"])

    def _readers(self) -> tuple[TopicReader, ...]:
        return (self.figures, self.alerts, self.dlq)

    def poll(self) -> None:
        for r in self._readers():
            r.poll()

    def read_to_end(self) -> None:
        """Each topic up to its end offsets: call it once every worker has stopped."""
        for r in self._readers():
            r.read_to_end()

    def close(self) -> None:
        for r in self._readers():
            r.close()

    def alert_marks(self) -> list[tuple[str, str]]:
        return [(a["id"], a["state"]) for a in map(orjson.loads, _values(self.alerts))]

    def last_figures(self) -> dict[str, dict]:
        last: dict[str, dict] = {}
        for f in map(orjson.loads, _values(self.figures)):
            last[f["centre"]] = f
        return last

    def complete(self, exp: dict) -> bool:
        """Whether everything ``exp`` lists is there (more may come)."""
        last = self.last_figures()
        marks = set(self.alert_marks())
        want = {(a["id"], a["state"]) for c in exp["centres"].values() for a in c["alerts"]}
        return (
            all(last.get(c, {}).get("as_of") == w["last_instant"]
                for c, w in exp["centres"].items())
            and want <= marks
            and len(self.dlq.messages) >= exp["rejected"]
        )  # fmt: skip

    def finished(self, exp: dict) -> bool:
        """Poll, then :meth:`complete`: a condition to wait for."""
        self.poll()
        return self.complete(exp)


def _values(reader: TopicReader) -> list[bytes]:
    return [m.value for m in reader.messages if m.value is not None]


def check_outputs(out: Outputs, exp: dict) -> None:
    """The end state every recovery and fault test asks for. Call it once every worker
    has stopped (each has sent all it ever will): it reads each output topic to its end
    offsets, so nothing sent twice can still be on its way.

    * the last figures message of each centre is ``exp``'s at the last instant, and
      ``as_of`` never goes backwards on the topic;
    * no ``(id, state)`` is on the alerts topic twice, and each centre's alerts are the
      expected ones in order;
    * the dead-letter topic holds each bad line once."""
    out.read_to_end()
    # figures: the last message of each centre, and as_of never backwards
    as_ofs: dict[str, list[int]] = {}
    for f in map(orjson.loads, _values(out.figures)):
        as_ofs.setdefault(f["centre"], []).append(f["as_of"])
    last = out.last_figures()
    for c, want in exp["centres"].items():
        at_last = [f for f in want["figures"] if f["as_of"] == want["last_instant"]]
        assert last[c]["as_of"] == want["last_instant"], c
        assert figure_mismatches(last[c]["figures"], at_last) == [], c
        back = [(a, b) for a, b in zip(as_ofs[c], as_ofs[c][1:], strict=False) if b < a]
        assert back == [], f"{c}: as_of went backwards on the figures topic: {back[:3]}"
    # alerts: no (id, state) twice; each centre's sequence is the expected one
    marks = out.alert_marks()
    twice = [m for m, n in Counter(marks).items() if n > 1]
    assert twice == [], f"sent twice: {twice}"
    alerts = [orjson.loads(v) for v in _values(out.alerts)]
    for c, want in exp["centres"].items():
        got = [a for a in alerts if a["centre"] == c]
        assert alert_mismatches(got, want["alerts"]) == [], c
    # dead letters: each bad line once
    sources = Counter((dict(m.headers)["callcost-source-partition"],
                       dict(m.headers)["callcost-source-offset"]) for m in out.dlq.messages)
    assert len(out.dlq.messages) == exp["rejected"] == len(sources)
