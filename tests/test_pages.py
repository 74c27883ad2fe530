"""The three pages in a real browser: the wallboard, the supervisor view and the alerts page.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) against the
gateway running as a subprocess on the real broker, with the ``sim-2h`` vector produced
into topics of this module's own and the worker running. The vector goes in in chunks
while the gateway and the worker run, so the pages that are open see it arrive as a
series of updates (trends have points, alerts fire), then the figures stop at the
vector's last instant and every page is compared with what ``/api/figures`` and
``/api/alerts`` serve.

:class:`Stack` is also what ``docs/screenshots.py`` runs.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.brokers import delete_topics, fresh_topics, unique_prefix
from tests.support.pages_stack import CENTRE, CUT, ROOT, TZ, Stack, view_url
from tests.support.ports import free_port
from tests.support.tools import CHROMIUM_ARGS, chromium

#: every test here drives Chromium; those on the broker are marked kafka by conftest.py
pytestmark = pytest.mark.browser


def fmt_money(v: float | None) -> str:
    """As the pages show money: two decimals, halves away from zero (JS toFixed on the
    exact value of the double), "–" for null."""
    if v is None:
        return "\u2013"
    return str(Decimal(v).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def fmt_big(v: float | None) -> str:
    """Money with thousands separators (the supervisor's totals)."""
    if v is None:
        return "\u2013"
    text = fmt_money(abs(v))
    whole, dec = text.split(".")
    return ("-" if v < 0 else "") + f"{int(whole):,}" + "." + dec


def js_round(v: float) -> int:
    """Math.round: halves up."""
    return int(Decimal(v).quantize(Decimal(1), rounding=ROUND_HALF_UP)) if v >= 0 else -js_round(-v)


def fmt_count(v: float | None) -> str:
    return "\u2013" if v is None else f"{js_round(v):,}"


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "\u2013"
    t = js_round(s)
    h, m, sec = t // 3600, (t % 3600) // 60, t % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fmt_percent(v: float | None) -> str:
    return "\u2013" if v is None else f"{js_round(v * 100)}%"


def local_clock(ms: int, tz: str = TZ) -> str:
    """As the pages show an instant: "11:00:00 CET" in the centre's zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    t = datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))
    return t.strftime("%H:%M:%S ") + (t.tzname() or "")


#: what the pages show for each status: the word, the shape, the tile's colour
WORDS = {"ok": "OK", "above": "ABOVE", "below": "BELOW", "insufficient": "FEW CALLS"}
SHAPES = {"ok": "\u2713", "above": "\u25b2", "below": "\u25bc", "insufficient": "\u25cb"}
TILE_COLOURS = {
    "ok": "rgb(15, 123, 63)",
    "above": "rgb(192, 38, 45)",
    "below": "rgb(31, 91, 184)",
    "insufficient": "rgb(58, 65, 75)",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The gateway and the worker on topics of this module's own (not yet any event)."""
    topics = fresh_topics(kafka_bootstrap, 4, prefix=unique_prefix("pages"))
    st = Stack(kafka_bootstrap, topics, tmp_path_factory.mktemp("pages"), free_port())
    try:
        st.start_gateway()
        st.start_worker()
        yield st
    finally:
        st.close()
        try:
            delete_topics(kafka_bootstrap, topics.values())
        except Exception as exc:  # cleanup only; the next session removes leftovers
            print(f"could not delete {sorted(topics.values())}: {exc}", file=sys.stderr)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # never skipped: no Chromium is a failure (./dev test installs Debian's chromium)
        b = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    ctx.set_default_timeout(20000)
    try:
        yield ctx
    finally:
        ctx.close()


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # checked by the tests: a script error is a failure
    page.goto(url)
    return page


@pytest.fixture(scope="module")
def loaded(stack: Stack, context: Any) -> dict[str, Any]:
    """The wallboard and the supervisor view open while the vector goes in, up to
    :data:`CUT` in chunks, so that they see it as a series of updates."""
    query = f"centre={CENTRE}&tz={TZ}"
    pages = {
        "wallboard": open_page(context, view_url(stack, "wallboard", query)),
        "supervisor": open_page(context, view_url(stack, "supervisor", query)),
    }
    for page in pages.values():
        page.wait_for_selector("#connection[data-state=live]")
    stack.produce_vector(until=CUT, chunks=16, pause_s=0.25)
    return pages


def shows_as_of(page: Any, ms: int, timeout: float = 20000) -> None:
    page.wait_for_function(
        "t => document.getElementById('as-of').textContent === t",
        arg=local_clock(ms),
        timeout=timeout,
    )


# --------------------------------------------------------------------------- tests


def test_the_stack_is_at_the_cut(stack: Stack, loaded: dict) -> None:
    """The gateway serves the vector's figures at CUT, as expected.json lists them (the
    state every page below is compared with)."""
    from tests.vectorcheck import expected, figure_mismatches

    want = [f for f in expected("sim-2h")["centres"][CENTRE]["figures"] if f["as_of"] == CUT]
    assert want and figure_mismatches(stack.figures(), want) == []


def test_landing_page_links_each_centre_to_its_views(
    stack: Stack, loaded: dict, context: Any
) -> None:
    page = open_page(context, stack.base + "/")
    item = page.wait_for_selector(f"#view-list li[data-centre={CENTRE}]")
    hrefs = {
        a.get_attribute("class"): a.get_attribute("href") for a in item.query_selector_all("a")
    }
    assert hrefs == {
        "to-wallboard": f"/wallboard?centre={CENTRE}",
        "to-supervisor": f"/supervisor?centre={CENTRE}",
        "to-alerts": f"/alerts?centre={CENTRE}",
    }
    assert page.errors == []
    page.close()


def check_tiles(page: Any, figures: list[dict]) -> set[str]:
    """Every tile shows its figure: cost per call, status (class, word, shape, colour),
    band, calls, AHT; returns the statuses seen."""
    tiles = page.eval_on_selector_all(
        ".tile",
        """els => els.map(t => ({
            scope: t.dataset.scope, key: t.dataset.key, status: t.dataset.status,
            cls: t.className, cpc: t.querySelector('.cpc').textContent,
            word: t.querySelector('.tile-status .word').textContent,
            shape: t.querySelector('.tile-status .shape').textContent,
            low: t.querySelector('.band-low').textContent,
            high: t.querySelector('.band-high').textContent,
            handled: t.querySelector('.handled').textContent,
            aht: t.querySelector('.aht').textContent,
            colour: getComputedStyle(t).backgroundColor}))""",
    )
    want = [f for f in figures if f["scope"] in ("centre", "queue") and f["window"] == "15m"]
    want.sort(key=lambda f: (f["scope"] != "centre", f["key"]))
    assert [(t["scope"], t["key"]) for t in tiles] == [(f["scope"], f["key"]) for f in want]
    for t, f in zip(tiles, want, strict=True):
        status = f["status"]
        assert t == {
            "scope": f["scope"], "key": f["key"], "status": status,
            "cls": f"tile st-{status}", "cpc": fmt_money(f["cost_per_call"]),
            "word": WORDS[status], "shape": SHAPES[status],
            "low": fmt_money(f["low"]), "high": fmt_money(f["high"]),
            "handled": fmt_count(f["handled"]), "aht": fmt_duration(f["aht_s"]),
            "colour": TILE_COLOURS[status],
        }, f"tile {f['scope']}/{f['key']}"  # fmt: skip
        # the status follows the band: judged from the numbers shown
        if status != "insufficient":
            v, low, high = f["cost_per_call"], f["low"], f["high"]
            assert status == ("above" if v > high else "below" if v < low else "ok")
    return {t["status"] for t in tiles}


def fits(page: Any) -> None:
    """No scrolling, and nothing in a tile spills out of it."""
    size = page.evaluate(
        "[document.scrollingElement.scrollHeight, innerHeight,"
        " document.scrollingElement.scrollWidth, innerWidth]"
    )
    assert size[0] <= size[1] and size[2] <= size[3], size
    spills = page.evaluate(
        """() => [...document.querySelectorAll('.tile')].flatMap(t => {
            const box = t.getBoundingClientRect();
            const parts = '.tile-key, .tile-status, .cpc, .tile-band, .tile-stats, .spark';
            return [...t.querySelectorAll(parts)]
              .filter(e => { const r = e.getBoundingClientRect();
                return r.right > box.right + 1 || r.bottom > box.bottom + 1
                  || r.left < box.left - 1; })
              .map(e => t.dataset.key + ' ' + e.getAttribute('class'));
        })"""
    )
    assert spills == []


def test_wallboard_shows_the_figures_the_api_serves(stack: Stack, loaded: dict) -> None:
    page = loaded["wallboard"]
    page.bring_to_front()
    shows_as_of(page, CUT)
    statuses = check_tiles(page, stack.figures())
    assert statuses >= {"ok", "below", "insufficient"}  # the cut has them side by side
    assert page.inner_text("#centre") == CENTRE
    # the banner names every alert firing for the centre
    firing = stack.get(f"/api/alerts?centre={CENTRE}")["alerts"]
    assert len(firing) == 3
    banner = page.eval_on_selector_all("#banner .b-item", "els => els.map(e => e.dataset.id)")
    assert sorted(banner) == sorted(a["id"] for a in firing)
    assert page.inner_text("#banner").startswith("\u26a0 3 ALERTS")
    # the sparkline: a point per update seen since the page loaded
    path = page.get_attribute(".tile[data-scope=centre] .spark .tr-line", "d")
    assert path is not None and path.count("L") >= 8, path
    assert "kept since this page loaded" in page.inner_text("#trend-note")
    assert page.get_attribute("#connection", "data-state") == "live"
    fits(page)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.wait_for_timeout(200)
    fits(page)
    page.set_viewport_size({"width": 1920, "height": 1080})
    assert page.errors == []


#: the supervisor's columns: what each cell shows for a figure
SUPERVISOR_CELLS: dict[str, Callable[[dict], str]] = {
    "scope": lambda f: f["scope"],
    "key": lambda f: f["key"],
    "cost_per_call": lambda f: fmt_money(f["cost_per_call"]),
    "status": lambda f: SHAPES[f["status"]] + WORDS[f["status"]],
    "band": lambda f: f"{fmt_money(f['low'])}\u2013{fmt_money(f['high'])}",
    "occupancy": lambda f: fmt_percent(f["occupancy"]),
    "aht_s": lambda f: fmt_duration(f["aht_s"]),
    "abandoned": lambda f: fmt_count(f["abandoned"]),
    "split": lambda f: "" if f["total"] > 0 else "\u2013",
    "total": lambda f: fmt_big(f["total"]),
    "labour": lambda f: fmt_big(f["labour"]),
    "overhead": lambda f: fmt_big(f["overhead"]),
    "telephony": lambda f: fmt_big(f["telephony"]),
    "offered": lambda f: fmt_count(f["offered"]),
    "handled": lambda f: fmt_count(f["handled"]),
    "conversions": lambda f: fmt_count(f["conversions"]),
    "cost_per_sale": lambda f: fmt_money(f["cost_per_sale"]),
    "handle_s": lambda f: fmt_duration(f["handle_s"]),
    "staffed_s": lambda f: fmt_duration(f["staffed_s"]),
}
#: every field of SPEC section 3 has its column (status and the band included)
SPEC_FIELDS = {
    "offered", "handled", "abandoned", "conversions", "handle_s", "aht_s", "labour",
    "overhead", "telephony", "total", "cost_per_call", "cost_per_sale", "staffed_s",
    "occupancy", "status",
}  # fmt: skip

READ_ROWS = """rows => rows.map(tr => Object.assign(
    {_scope: tr.dataset.scope, _key: tr.dataset.key, _window: tr.dataset.window,
     _split: [...tr.querySelectorAll('.seg')]
        .map(s => [s.dataset.part, parseFloat(s.style.width)])},
    Object.fromEntries([...tr.cells].map(td => [td.dataset.col, td.textContent]))))"""


def supervisor_rows(page: Any) -> list[dict]:
    return page.eval_on_selector_all("#figures tbody tr[data-key]", READ_ROWS)


def check_supervisor(page: Any, figures: list[dict], window: str) -> None:
    rows = supervisor_rows(page)
    want = {(f["scope"], f["key"]): f for f in figures if f["window"] == window}
    assert sorted((r["_scope"], r["_key"]) for r in rows) == sorted(want)
    for row in rows:
        f = want[(row["_scope"], row["_key"])]
        assert row["_window"] == window
        for col, show in SUPERVISOR_CELLS.items():
            assert row[col] == show(f), f"{f['scope']}/{f['key']}/{window} {col}"
        if f["total"] > 0:  # the split bar: each part's share of the total
            shares = dict(row["_split"])
            for part in ("labour", "overhead", "telephony"):
                assert shares[part] == pytest.approx(100 * f[part] / f["total"], abs=0.01)


def numbers(texts: list[str]) -> list[float | None]:
    return [None if t == "\u2013" else float(t.replace(",", "")) for t in texts]


def test_supervisor_table_trend_and_sorting(stack: Stack, loaded: dict) -> None:
    page = loaded["supervisor"]
    page.bring_to_front()
    shows_as_of(page, CUT)
    assert set(SUPERVISOR_CELLS) >= SPEC_FIELDS
    figures = stack.figures()
    check_supervisor(page, figures, "15m")
    rows = supervisor_rows(page)
    # the default order: the centre, then queues, channels, directions by key
    assert [r["_scope"] for r in rows][:2] == ["centre", "queue"]
    assert {r["_scope"] for r in rows} == {"centre", "queue", "channel", "direction"}

    # sort by cost per call, up then down; rows without a value stay last
    sort = "#figures th[data-col=cost_per_call] button"
    for direction in ("ascending", "descending"):
        page.click(sort)
        assert page.get_attribute("#figures th[data-col=cost_per_call]", "aria-sort") == direction
        got = numbers([r["cost_per_call"] for r in supervisor_rows(page)])
        values = [v for v in got if v is not None]
        assert values == sorted(values, reverse=direction == "descending")
        assert got[: len(values)] == values
    page.click("#figures th[data-col=key] button")
    keys = [r["key"] for r in supervisor_rows(page)]
    assert keys == sorted(keys)

    # another window; a scope left out
    page.select_option("#window", "1h")
    check_supervisor(page, figures, "1h")
    assert "window=1h" in page.url
    page.uncheck("input[name=scope][value=channel]")
    assert not page.query_selector_all("#figures tbody tr[data-scope=channel]")
    page.check("input[name=scope][value=channel]")
    page.select_option("#window", "15m")

    # a row's trend for the day, the band drawn in
    page.click("#figures tbody tr[data-scope=queue][data-key=billing]")
    assert page.is_visible("#trend")
    assert page.inner_text("#trend-title").startswith("billing \u00b7 queue \u00b7 15m")
    assert (
        page.get_attribute("#figures tbody tr[data-key=billing][data-scope=queue]", "aria-selected")
        == "true"
    )
    assert int(page.get_attribute("#trend-chart", "data-points") or 0) >= 8
    assert page.query_selector("#trend-chart polygon.tr-band") is not None
    assert (page.get_attribute("#trend-chart path.tr-line", "d") or "").count("L") >= 7
    billing = next(
        f for f in figures if (f["scope"], f["key"], f["window"]) == ("queue", "billing", "15m")
    )
    labels = page.eval_on_selector_all(
        "#trend-chart text.tr-high, #trend-chart text.tr-low", "els => els.map(e => e.textContent)"
    )
    assert labels == [fmt_money(billing["high"]), fmt_money(billing["low"])]
    assert page.errors == []


# the alerts page's sound and notifications, observed: the beeps (oscillators started),
# the notifications shown, the permission requests; and document.hidden under the test's
# control (a headless page is never in the background by itself)
INSTRUMENT = """
window.__beeps = 0; window.__notes = []; window.__asked = 0; window.__hidden = false;
Object.defineProperty(Document.prototype, "hidden",
  {configurable: true, get: () => window.__hidden});
const osc = BaseAudioContext.prototype.createOscillator;
BaseAudioContext.prototype.createOscillator = function () {
  window.__beeps += 1;
  return osc.call(this);
};
const Real = window.Notification;
const ask = Real.requestPermission.bind(Real);
window.Notification = new Proxy(Real, {
  construct(target, args) { window.__notes.push(args[0]); return Reflect.construct(target, args); },
  get(target, prop) {
    if (prop === "requestPermission") return (...a) => { window.__asked += 1; return ask(...a); };
    return Reflect.get(target, prop);
  },
});
"""


@pytest.fixture(scope="module")
def alerts_page(stack: Stack, loaded: dict, context: Any) -> Any:
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.add_init_script(INSTRUMENT)
    page.goto(view_url(stack, "alerts", f"tz={TZ}"))
    page.wait_for_selector("#connection[data-state=live]")
    return page


def alert_rows(page: Any, table: str) -> list[dict]:
    return page.eval_on_selector_all(
        f"#{table} tbody tr",
        """rows => rows.map(tr => ({id: tr.dataset.id, state: tr.dataset.state || 'firing',
            rule: tr.cells[tr.dataset.state ? 3 : 1].textContent,
            value: tr.querySelector('.value').textContent,
            ack: tr.querySelector('.ack-by') ? tr.querySelector('.ack-by').textContent : null,
            note: tr.querySelector('.ack-note') ? tr.querySelector('.ack-note').textContent : null,
            snooze: tr.querySelector('.snooze')
              ? tr.querySelector('.snooze').textContent : null}))""",
    )


def wait_rows(page: Any, table: str, count: int) -> list[dict]:
    page.wait_for_function(
        "([t, n]) => document.querySelectorAll(`#${t} tbody tr`).length === n", arg=[table, count]
    )
    return alert_rows(page, table)


def test_alerts_page_lists_firing_alerts_and_history_with_filters(
    stack: Stack, alerts_page: Any
) -> None:
    page = alerts_page
    page.bring_to_front()
    firing = stack.get("/api/alerts")["alerts"]
    everything = stack.get("/api/alerts?state=all")["alerts"]
    assert len(firing) == 3 and len(everything) == 9
    rows = wait_rows(page, "firing", len(firing))
    assert [r["id"] for r in rows] == [a["id"] for a in sorted(firing, key=lambda a: -a["at"])]
    assert [r["value"] for r in rows] == [
        fmt_money(a["value"]) for a in sorted(firing, key=lambda a: -a["at"])
    ]
    history = wait_rows(page, "history", len(everything))
    assert [(r["id"], r["state"]) for r in history] == [
        (a["id"], a["state"]) for a in reversed(everything)
    ]  # newest first
    assert page.inner_text("#firing-count") == "3"

    # filters: a rule, then a state; they go into the address
    page.select_option("#f-rule", "centre-15m")
    want = [a for a in everything if a["rule"] == "centre-15m"]
    assert {r["rule"] for r in wait_rows(page, "history", len(want))} == {"centre-15m"}
    assert [r["id"] for r in alert_rows(page, "firing")] == [
        a["id"] for a in firing if a["rule"] == "centre-15m"
    ]
    assert "rule=centre-15m" in page.url
    page.select_option("#f-state", "resolved")
    resolved = [a for a in want if a["state"] == "resolved"]
    assert {r["state"] for r in wait_rows(page, "history", len(resolved))} == {"resolved"}
    assert not page.is_visible("#firing")  # firing now: not with state=resolved
    page.select_option("#f-centre", CENTRE)
    page.select_option("#f-rule", "")
    page.select_option("#f-state", "")
    wait_rows(page, "history", len(everything))
    assert page.is_visible("#firing")

    # sound and notification: opt-in, and permission asked on that click only
    assert page.evaluate("window.__asked") == 0 and not page.is_checked("#notify")
    page.click("#notify")
    page.wait_for_function("window.__asked === 1")
    assert page.evaluate("window.__beeps") == 0  # nothing new has fired yet
    assert page.errors == []


def test_acknowledge_and_snooze_in_the_supervisor_show_on_the_alerts_page(
    stack: Stack, loaded: dict, alerts_page: Any
) -> None:
    sup, page = loaded["supervisor"], alerts_page
    sup.bring_to_front()  # clicks wait for animation frames, slow in a background tab
    firing = {a["key"]: a for a in stack.get(f"/api/alerts?centre={CENTRE}")["alerts"]}
    sales = firing["sales-out"]["id"]

    item = f'#alert-list li[data-id="{sales}"]'
    sup.click(f"{item} button.ack")
    assert sup.is_visible("#ack-dialog")
    sup.fill("#ack-by", "Eva Novak")
    sup.fill("#ack-note", "two agents on a break")
    sup.click("#ack-submit")
    sup.wait_for_selector("#ack-dialog", state="hidden")
    assert sup.inner_text(f"{item} .a-ack-by") == "Eva Novak"
    assert "two agents on a break" in sup.inner_text(f"{item} .a-ack")

    # the alerts page: the firing row and the firing message in the history
    page.wait_for_selector(f'#firing tr[data-id="{sales}"] .ack-by')
    row = page.query_selector(f'#firing tr[data-id="{sales}"]')
    assert row.query_selector(".ack-by").inner_text() == "Eva Novak"
    assert row.query_selector(".ack-note").inner_text() == ": two agents on a break"
    page.wait_for_selector(f'#history tr[data-id="{sales}"][data-state=firing] .ack-by')
    ack = next(a for a in stack.get("/api/alerts")["alerts"] if a["id"] == sales)["ack"]
    assert (ack["by"], ack["note"]) == ("Eva Novak", "two agents on a break")

    # snooze the billing rule for an hour (the name is remembered), then cancel it
    billing = firing["billing"]
    sup.click(f'#alert-list li[data-id="{billing["id"]}"] button.snooze')
    assert sup.input_value("#snooze-by") == "Eva Novak"
    sup.select_option("#snooze-for", "3600")
    sup.click("#snooze-submit")
    sup.wait_for_selector("#snooze-dialog", state="hidden")
    sup.wait_for_selector("#snooze-list li[data-rule=queue-15m][data-key=billing]")
    snoozes = stack.get(f"/api/snoozes?centre={CENTRE}")["snoozes"]
    assert [(s["rule"], s["key"], s["by"], s["until"] - s["at"]) for s in snoozes] == [
        ("queue-15m", "billing", "Eva Novak", 3_600_000)
    ]
    cell = f'#firing tr[data-id="{billing["id"]}"] .snooze'
    page.wait_for_function(
        "sel => document.querySelector(sel).textContent.startsWith('until ')", arg=cell
    )
    assert page.inner_text(cell).endswith("by Eva Novak")
    sup.click("#snooze-list li[data-key=billing] button.unsnooze")
    sup.click("#snooze-submit")
    sup.wait_for_selector("#snooze-list li", state="detached")
    page.wait_for_function("sel => document.querySelector(sel).textContent === '\u2013'", arg=cell)
    assert stack.get(f"/api/snoozes?centre={CENTRE}")["snoozes"] == []
    assert sup.errors == [] and page.errors == []


def test_wallboard_marks_stale_figures(loaded: dict) -> None:
    """The vector stopped at CUT: no update comes, and after 10 s the wallboard says so
    (and greys the tiles), while it stays connected."""
    page = loaded["wallboard"]
    page.wait_for_selector("#stale", state="visible", timeout=15000)
    assert page.inner_text("#stale").startswith("STALE \u00b7 no update for")
    assert page.evaluate("document.body.classList.contains('is-stale')")
    assert page.get_attribute("#connection", "data-state") == "live"


def test_pages_recover_after_the_gateway_restarts(
    stack: Stack, loaded: dict, alerts_page: Any, context: Any
) -> None:
    """SIGKILL the gateway, start it again on the same port: every page reconnects and
    subscribes again by itself (no reload), then follows the rest of the vector; the
    alerts page, in the background, beeps and notifies for each alert that fires."""
    pages = {**loaded, "alerts": alerts_page}
    for page in pages.values():
        page.evaluate("window.__notReloaded = true")
    context.grant_permissions(["notifications"], origin=stack.base)
    alerts_page.evaluate("window.__hidden = true")
    if not alerts_page.is_checked("#notify"):  # when this test runs alone
        alerts_page.click("#notify")
    before = stack.get("/api/alerts?state=all")["alerts"]

    stack.kill_gateway()
    for page in pages.values():
        page.wait_for_selector("#connection[data-state=down]")
    stack.start_gateway()
    for page in pages.values():
        page.wait_for_selector("#connection[data-state=live]", timeout=30000)

    last = stack.produce_vector(chunks=8, pause_s=0.2)
    figures = stack.figures()
    wallboard, supervisor = loaded["wallboard"], loaded["supervisor"]
    shows_as_of(wallboard, last)
    assert not wallboard.is_visible("#stale")  # live again
    check_tiles(wallboard, figures)
    shows_as_of(supervisor, last)
    check_supervisor(supervisor, figures, "15m")

    everything = stack.get("/api/alerts?state=all")["alerts"]
    firing = stack.get("/api/alerts")["alerts"]
    new = [a for a in everything[len(before) :] if a["state"] == "firing"]
    assert len(new) == 5
    rows = wait_rows(alerts_page, "history", len(everything))
    assert [(r["id"], r["state"]) for r in rows] == [
        (a["id"], a["state"]) for a in reversed(everything)
    ]
    rows = wait_rows(alerts_page, "firing", len(firing))
    assert sorted(r["id"] for r in rows) == sorted(a["id"] for a in firing)
    assert {r["id"]: r["ack"] for r in rows} == {
        a["id"]: a["ack"] and a["ack"]["by"] for a in firing
    }  # acks outlive the gateway (control topic)
    alerts_page.wait_for_function(f"window.__notes.length === {len(new)}")
    assert alerts_page.evaluate("window.__beeps") >= len(new)
    for page in pages.values():
        assert page.evaluate("window.__notReloaded === true")
        assert page.evaluate("window.callcostLive.reconnects") >= 1
        assert page.errors == []


#: what the gateway must say a static file is (a module script runs only as JavaScript)
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def test_every_static_file_is_served_and_every_reference_is_one(stack: Stack) -> None:
    """Each file of web/static/ comes back under /static/ as it is, with its content type;
    the pages' scripts and styles, and the modules each script imports, are among them."""
    static = ROOT / "web" / "static"
    names = {p.name for p in static.iterdir() if p.is_file()}
    assert {"live.js", "wallboard.js", "supervisor.js", "alerts.js", "landing.js"} <= names
    for name in sorted(names):
        with urllib.request.urlopen(f"{stack.base}/static/{name}", timeout=5) as r:
            assert r.headers["Content-Type"] == STATIC_TYPES[Path(name).suffix], name
            assert r.read() == (static / name).read_bytes(), name
        text = (static / name).read_text()
        if name.endswith(".html"):
            refs = [part.split('"', 1)[0] for part in text.split('="/static/')[1:]]
            assert all(ref in names for ref in refs), (name, refs)
            assert all('type="module"' in tag for tag in text.split("<script")[1:]), name
        if name.endswith(".js"):
            specs = [part.split('"', 1)[0] for part in text.split(' from "')[1:]]
            assert all(s.startswith("./") and s[2:] in names for s in specs), (name, specs)
