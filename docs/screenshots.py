"""Screenshots of the three pages at 1920x1080: docs/wallboard.png, docs/supervisor.png,
docs/alerts.png.

The same setup as the browser tests (``tests/test_pages.py``): a local broker, topics of
its own, ``callcost worker`` and ``callcost gateway`` as subprocesses, and the ``sim-2h``
vector produced up to 11:00 Prague time while the pages are open, so that the trends have
their points and the alerts fire live. One alert is acknowledged in the supervisor view
so that the pictures show an acknowledgement.

    .venv/bin/python docs/screenshots.py [--broker-port 39690] [--port 39600] [--out docs]

A broker already running on ``--broker-port`` (home ``var/screenshots-broker``) is used
and left running; one started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcost import broker, broker_config  # noqa: E402
from tests.support.brokers import delete_topics, fresh_topics, unique_prefix  # noqa: E402
from tests.support.pages_stack import (  # noqa: E402
    CENTRE,
    CUT,
    TZ,
    Stack,
    view_url,
)
from tests.support.tools import CHROMIUM_ARGS, chromium  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker-port", type=int, default=39690)
    ap.add_argument("--port", type=int, default=39600, help="the gateway's port")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--logs", type=Path, help="keep the worker's and gateway's logs here")
    args = ap.parse_args()

    cfg = broker_config.BrokerConfig(
        home=ROOT / "var" / "screenshots-broker",
        port=args.broker_port,
        controller_port=args.broker_port + 1,
    )
    ours = not broker.status(cfg, check=False).get("running")
    t0 = time.monotonic()
    broker.start(cfg, timeout_s=120, fresh=True)
    topics = fresh_topics(cfg.bootstrap, 4, prefix=unique_prefix("screenshots"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.logs or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            stack = Stack(cfg.bootstrap, topics, work, args.port)
            try:
                stack.start_gateway()
                stack.start_worker()
                shoot(stack, args.out)
            finally:
                stack.close()
    finally:
        delete_topics(cfg.bootstrap, topics.values())
        if ours:
            broker.stop(cfg)
    print(f"screenshots in {args.out} ({time.monotonic() - t0:.0f} s)")
    return 0


def shoot(stack: Stack, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    query = f"centre={CENTRE}&tz={TZ}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
            pages = {name: ctx.new_page() for name in ("wallboard", "supervisor", "alerts")}
            for name, page in pages.items():
                page.goto(view_url(stack, name, query if name != "alerts" else f"tz={TZ}"))
                page.wait_for_selector("#connection[data-state=live]")
            stack.produce_vector(until=CUT, chunks=72, pause_s=0.12)

            sup = pages["supervisor"]
            sup.bring_to_front()
            sup.click("#figures tbody tr[data-scope=queue][data-key=billing]")
            alert = sup.get_attribute("#alert-list li[data-id*=sales-out]", "data-id")
            sup.click(f'#alert-list li[data-id="{alert}"] button.ack')
            sup.fill("#ack-by", "Eva Novak")
            sup.fill("#ack-note", "two agents on a break until 11:15")
            sup.click("#ack-submit")
            sup.wait_for_selector("#ack-dialog", state="hidden")
            pages["alerts"].wait_for_selector(f'#firing tr[data-id="{alert}"] .ack-by')

            # within 10 s of the last update, before the STALE marker
            for name in ("wallboard", "supervisor", "alerts"):
                page = pages[name]
                page.bring_to_front()
                page.wait_for_timeout(300)
                assert not page.is_visible("#stale"), f"{name} went stale"
                path = out / f"{name}.png"
                page.screenshot(path=str(path))
                print(f"{path}")
        finally:
            browser.close()


if __name__ == "__main__":
    raise SystemExit(main())
