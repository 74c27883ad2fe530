"""A pytest plugin: a skipped test, or a skipped module, fails the run. The project
forbids skips: a missing tool or service is an error that says how to get it."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

RULE = "the suite never skips: install what the test needs, or fix the test"


def _reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, line, message = longrepr
        return f"{message} ({path}:{line})"
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} skipped: {_reason(report.longrepr)}\n{RULE}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped: {_reason(report.longrepr)}\n{RULE}"
    return report
