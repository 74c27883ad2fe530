"""Issue 4: bad rules and bad sinks stop start-up with a message that names them."""

from __future__ import annotations

import pytest

from callcost.errors import ConfigError
from callcost.streams.config import Sink, parse_settings

RULE = "[[rules]]\nname = 'queue-5m'\nscope = 'queue'\nwindow = '5m'\n"


def bad(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, source="cc.toml")
    return str(info.value)


@pytest.mark.parametrize(
    ("extra", "where", "what"),
    [
        # unknown scope
        ("scope = 'team'\n", "rules[0].scope", "unknown scope 'team'"),
        # a window that cannot be parsed
        ("window = 'fortnight'\n", "rules[0].window", "'fortnight'"),
        ("window = '0m'\n", "rules[0].window", "'0m'"),
        ("window = 15\n", "rules[0].window", "15"),
        # band with low >= high
        ("band = [5.6, 2.7]\n", "rules[0].band", "low must be below high"),
        ("band = [3.0, 3.0]\n", "rules[0].band", "low must be below high"),
        ("band = [-1.0, 3.0]\n", "rules[0].band", ">= 0"),
        # negative durations (and counts)
        ("for_s = -1\n", "rules[0].for_s", "must be >= 0, not -1"),
        ("for_s = 1.5\n", "rules[0].for_s", "whole number"),
        ("min_calls = -3\n", "rules[0].min_calls", "must be >= 0, not -3"),
        ("hysteresis = -0.1\n", "rules[0].hysteresis", ">= 0"),
        ("hysteresis = 1.0\n", "rules[0].hysteresis", "below 1"),
    ],
)
def test_bad_rule_names_the_rule(extra: str, where: str, what: str) -> None:
    # the later key wins in the message: put the bad one in place of the good one
    lines = [line for line in RULE.splitlines() if line.split(" ")[0] != extra.split(" ")[0]]
    text = "\n".join(lines) + "\n" + extra
    line = len(lines) + 1
    message = bad(text)
    assert f"cc.toml:{line}: {where}: rule 'queue-5m': " in message
    assert what in message


def test_bad_second_rule_is_the_one_named() -> None:
    text = RULE + RULE.replace("queue-5m", "late").replace("'5m'", "'5m'\nfor_s = -60")
    message = bad(text)
    assert "cc.toml:9: rules[1].for_s: rule 'late'" in message


def test_rule_named_twice() -> None:
    assert "rule name 'queue-5m' is used twice" in bad(RULE + RULE)


# --------------------------------------------------------------------------- sinks


def test_sinks_defaults_and_options() -> None:
    s = parse_settings(
        RULE
        + "[[sinks]]\nurl = 'https://hooks.example/T1/B2/xyz'\n"
        + "[[sinks]]\nurl = 'http://127.0.0.1:9/x'\nname = 'ops'\ncentre = 'prg'\n"
        + "scope = 'queue'\nrule = 'queue-5m'\nstate = 'firing'\nsecret = 'k'\n"
        + "timeout_s = 2\nmax_attempts = 3\nbackoff_s = 0.25\nqueue_size = 10\n"
        + "replay_horizon_s = 0\n",
        source="cc.toml",
    )
    first, ops = s.sinks
    assert first == Sink(url="https://hooks.example/T1/B2/xyz")
    assert first.id.startswith("url-") and len(first.id) == 20
    assert "hooks" not in first.id  # the URL, a secret itself, is not shown
    assert ops.id == "ops" and ops.centre == "prg" and ops.rule == "queue-5m"
    assert (ops.timeout_s, ops.max_attempts, ops.backoff_s, ops.queue_size) == (2, 3, 0.25, 10)
    assert ops.replay_horizon_s == 0 and ops.secret == "k"


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ("name = 'x'\n", "cc.toml: sinks[0].url: missing"),
        ("url = 'ftp://x/y'\n", "sinks[0].url: must be an http:// or https:// URL"),
        ("url = 'http://x/'\nscope = 'team'\n", "sinks[0].scope: unknown scope 'team'"),
        ("url = 'http://x/'\nstate = 'pending'\n", "sinks[0].state: must be 'firing' or"),
        ("url = 'http://x/'\nrule = 'queue-15m'\n", "no rule 'queue-15m' (rules: queue-5m)"),
        ("url = 'http://x/'\ncentre = 'a b'\n", "sinks[0].centre"),
        ("url = 'http://x/'\nname = 'a/b'\n", "sinks[0].name"),
        ("url = 'http://x/'\ntimeout_s = 0\n", "sinks[0].timeout_s: must be above 0"),
        ("url = 'http://x/'\nmax_attempts = 0\n", "sinks[0].max_attempts: must be >= 1"),
        ("url = 'http://x/'\nqueue_size = 0\n", "sinks[0].queue_size: must be >= 1"),
        ("url = 'http://x/'\nreplay_horizon_s = -1\n", "sinks[0].replay_horizon_s"),
        ("url = 'http://x/'\nretries = 3\n", "sinks[0].retries: unknown key"),
    ],
)
def test_bad_sink(sink: str, message: str) -> None:
    assert message in bad(RULE + "[[sinks]]\n" + sink)


def test_two_sinks_with_one_url_need_names() -> None:
    two = "[[sinks]]\nurl = 'http://x/'\n" * 2
    assert "sinks[1].url: sink 'url-" in bad(two) and "give each" in bad(two)
    named = "[[sinks]]\nurl = 'http://x/'\nname = 'a'\n[[sinks]]\nurl = 'http://x/'\nname = 'b'\n"
    assert [s.id for s in parse_settings(named).sinks] == ["a", "b"]
    same = named.replace("'b'", "'a'")
    assert "sinks[1].name: sink 'a' is the same as sinks[0]" in bad(same)
