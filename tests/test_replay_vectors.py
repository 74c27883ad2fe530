"""Every vector through `callcost replay`: figures to 1e-6 at every listed instant, exact alerts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from callcost.cli import main
from tests.vectorcheck import (
    NAMES,
    VECTORS,
    alert_mismatches,
    expected,
    figure_mismatches,
    instants,
)


def run_replay(name: str, *extra: str) -> dict:
    buf = io.StringIO()
    d = VECTORS / name
    with redirect_stdout(buf):
        # replay writes bytes to sys.stdout.buffer; give it one
        sys.stdout.buffer = io.BytesIO()  # type: ignore[misc]
        rc = main(
            [
                "replay",
                str(d / "events.jsonl"),
                "--config",
                str(d / "callcost.toml"),
                "--quiet",
                *extra,
            ]
        )
        raw = sys.stdout.buffer.getvalue()  # type: ignore[attr-defined]
    assert rc == 0
    return json.loads(raw)


@pytest.mark.parametrize("name", NAMES)
def test_vector_through_replay(name: str) -> None:
    exp = expected(name)
    at = [str(t) for t in instants(exp)]
    got = run_replay(name, "--at", *at)
    assert got["rejected"] == exp["rejected"]
    assert sorted(got["centres"]) == sorted(exp["centres"])
    for cid, want in exp["centres"].items():
        g = got["centres"][cid]
        assert g["last_instant"] == want["last_instant"]
        assert figure_mismatches(g["figures"], want["figures"]) == []
        assert alert_mismatches(g["alerts"], want["alerts"]) == []


@pytest.mark.parametrize("name", NAMES)
def test_default_is_the_last_instant(name: str) -> None:
    exp = expected(name)
    got = run_replay(name)
    for cid, want in exp["centres"].items():
        g = got["centres"][cid]
        assert {f["as_of"] for f in g["figures"]} == {want["last_instant"]}
        last = [f for f in want["figures"] if f["as_of"] == want["last_instant"]]
        if last:
            assert figure_mismatches(g["figures"], last) == []


def test_replay_reads_stdin_as_a_real_process() -> None:
    d = VECTORS / "edge"
    with open(d / "events.jsonl", "rb") as f:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "callcost.cli",
                "replay",
                "-",
                "--config",
                str(d / "callcost.toml"),
            ],
            stdin=f,
            capture_output=True,
            check=True,
        )
    doc = json.loads(proc.stdout)
    assert doc["rejected"] == 3
    assert (
        doc["centres"]["edge"]["last_instant"]
        == expected("edge")["centres"]["edge"]["last_instant"]
    )


def test_replay_bad_config_stops_with_line(tmp_path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[defaults]\nfixed_per_hour = 'lots'\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "callcost.cli",
            "replay",
            str(VECTORS / "edge" / "events.jsonl"),
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "bad.toml:2: defaults.fixed_per_hour" in proc.stderr
