"""SPEC section 2: settings, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcost.errors import ConfigError
from callcost.streams.config import Rates, Settings, load_settings, parse_settings
from callcost.streams.vocabulary import parse_window

VECTORS = Path(__file__).parent / "vectors"


def test_defaults() -> None:
    s = Settings()
    assert s.rates_for("any") == Rates()
    assert s.defaults.band == (2.70, 5.60)
    assert s.stream.lateness_ms == 5000
    assert [w.name for w in s.published_windows] == ["15m", "1h", "today"]
    assert [r.name for r in s.rules] == ["centre-15m", "queue-15m"]


def test_centre_overrides_merge_key_by_key() -> None:
    s = load_settings(VECTORS / "two-centres" / "callcost.toml")
    nyc, prg = s.rates_for("nyc"), s.rates_for("prg")
    assert nyc.labour_per_hour == 31.0 and prg.labour_per_hour == 24.0
    assert dict(nyc.telephony_per_minute) == {"inbound": 0.012, "outbound": 0.009}
    assert dict(nyc.labour_per_hour_by_team) == {"sales": 30.0}
    assert nyc.billing_increment_s == 60 and nyc.band == (3.5, 7.0)
    assert prg.timezone == "Europe/Prague" and nyc.timezone == "America/New_York"


def test_rule_windows_are_computed_but_not_published() -> None:
    s = load_settings(VECTORS / "edge" / "callcost.toml")
    assert [w.name for w in s.published_windows] == ["1m", "5m", "today"]
    assert [w.name for w in s.all_windows] == ["1m", "5m", "today", "2m"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[defaults]\nlabour_per_hour = 'x'\n",
            "x.toml:2: defaults.labour_per_hour: must be a number",
        ),
        ("[defaults]\nlabour_per_hour = -1.0\n", "x.toml:2: defaults.labour_per_hour"),
        ("[defaults]\nwage = 3\n", "x.toml:2: defaults.wage: unknown key"),
        (
            "[centres.prg]\n\ntimezone = 'Europe/Prag'\n",
            "x.toml:3: centres.prg.timezone: unknown time zone 'Europe/Prag'",
        ),
        ("[defaults]\nband = [5.0, 2.0]\n", "x.toml:2: defaults.band: low must be below high"),
        ("[defaults]\nbilling_increment_s = 0\n", "x.toml:2: defaults.billing_increment_s"),
        (
            "[defaults.telephony_per_minute]\nsideways = 1.0\n",
            "x.toml:2: defaults.telephony_per_minute.sideways",
        ),
        (
            "[[rules]]\nname='a'\nscope='queue'\nwindow='1m'\n[[rules]]\nname='b'\nscope='team'\nwindow='1m'\n",
            "x.toml:7: rules[1].scope: rule 'b': unknown scope 'team'",
        ),
        (
            "[[rules]]\nname='a'\nscope='queue'\nwindow='fortnight'\n",
            "x.toml:4: rules[0].window: rule 'a'",
        ),
        ("[[rules]]\nname='a'\nscope='queue'\nwindow='1m'\nfor_s=-1\n", "x.toml:5: rules[0].for_s"),
        (
            "[[rules]]\nname='a'\nscope='queue'\nwindow='1m'\nband=[3.0, 3.0]\n",
            "x.toml:5: rules[0].band",
        ),
        ("[[rules]]\nname='a'\nscope='queue'\n", "rules[0].window: missing"),
        ("[stream]\nwindows = ['15m', '15m']\n", "x.toml:2: stream.windows"),
        ("[stream]\nlateness_ms = 5.5\n", "x.toml:2: stream.lateness_ms: must be a whole number"),
        ("[strem]\n", "strem: unknown key"),
        ("[defaults\n", "x.toml: not valid TOML"),
    ],
)
def test_bad_config_names_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, source="x.toml")
    assert message in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings("nope.toml")


def test_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCOST_CONFIG", str(VECTORS / "edge" / "callcost.toml"))
    assert load_settings().defaults.fixed_per_hour == 36.0


@pytest.mark.parametrize(
    ("name", "ms"),
    [("15m", 900_000), ("1h", 3_600_000), ("8h", 28_800_000), ("90s", 90_000), ("today", None)],
)
def test_windows(name: str, ms: int | None) -> None:
    assert parse_window(name).length_ms == ms


@pytest.mark.parametrize("name", ["0m", "15", "1d", "-1h", "1.5h", "", "TODAY"])
def test_bad_windows(name: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(name)
