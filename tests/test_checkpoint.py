"""A centre checkpointed mid-stream and restored goes on exactly as if it never stopped."""

from __future__ import annotations

import pytest

from callcost.streams.checkpoint import CheckpointError, dump, load, read_header
from callcost.streams.config import load_settings, parse_settings
from callcost.streams.engine import Engine
from tests.vectorcheck import VECTORS, alert_mismatches, expected, figure_mismatches, instants


def lines(name: str) -> list[tuple[None, bytes]]:
    raw = (VECTORS / name / "events.jsonl").read_bytes().splitlines()
    return [(None, x) for x in raw if x.strip()]


@pytest.mark.parametrize("name", ["edge", "sim-2h", "two-centres"])
@pytest.mark.parametrize("cut", [0.13, 0.5, 0.91])
def test_restore_mid_stream_equals_an_uninterrupted_run(name: str, cut: float) -> None:
    settings = load_settings(VECTORS / name / "callcost.toml")
    exp = expected(name)
    at = instants(exp)
    records = lines(name)
    k = int(len(records) * cut)
    first = Engine(settings, check_key=False, snapshot_at=at)
    out1 = first.ingest(records[:k], publish=False)
    blobs = {c: dump(st, {"offset": k}) for c, st in first.centres.items()}
    second = Engine(settings, check_key=False, snapshot_at=at)
    for c, blob in blobs.items():
        assert load(second, blob).centre == c
        assert read_header(blob)["extra"] == {"offset": k}
    out2 = second.ingest(records[k:], publish=False)
    for cid, want in exp["centres"].items():
        figs = [
            f for o in (out1, out2) for s in o.snapshots if s["centre"] == cid for f in s["figures"]
        ]
        alerts = [a for o in (out1, out2) for a in o.alerts if a["centre"] == cid]
        assert want["last_instant"] == second.centres[cid].M
        assert figure_mismatches(figs, want["figures"]) == []
        assert alert_mismatches(alerts, want["alerts"]) == []


def test_checkpoint_under_other_settings_is_refused() -> None:
    e = Engine(parse_settings('[stream]\nwindows = ["15m"]\n'), check_key=False)
    e.ingest(lines("edge"))
    blob = dump(e.centres["edge"])
    other = Engine(parse_settings('[stream]\nwindows = ["1h"]\n'), check_key=False)
    with pytest.raises(CheckpointError, match="other windows"):
        load(other, blob)
    with pytest.raises(CheckpointError, match="bad magic"):
        load(other, b"garbage")
