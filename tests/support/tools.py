"""The programs outside Python some tests drive (Chromium, openssl): found, or a clear
failure that says how to install them. The suite never skips for a missing tool."""

from __future__ import annotations

import os
import shutil

import pytest

#: how the tests launch Chromium (headless, in a container)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    """The Chromium executable: ``CALLCOST_CHROMIUM`` if set, else ``chromium`` or
    ``chromium-browser`` on PATH. Fails the test when there is none."""
    wanted = os.environ.get("CALLCOST_CHROMIUM", "")
    if wanted:
        found = shutil.which(wanted)
        if found is None:
            pytest.fail(f"CALLCOST_CHROMIUM={wanted!r} is not an executable", pytrace=False)
        return found
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium: the browser tests need it (sudo apt-get install chromium, "
                "which ./dev test does; or set CALLCOST_CHROMIUM to its path)", pytrace=False)


def openssl() -> str:
    """The openssl executable on PATH. Fails the test when there is none."""
    found = shutil.which("openssl")
    if found is None:
        pytest.fail("no openssl: the TLS tests make their certificates with it "
                    "(sudo apt-get install openssl)", pytrace=False)
    return found
