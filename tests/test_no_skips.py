"""The conftest's no-skips plugin (``tests/support/no_skips.py``): each kind of skip fails
the run, while passing tests and expected failures stay as they are."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "tests.support.no_skips")


def test_a_skip_in_a_test_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_passes():
            pass

        def test_skips():
            pytest.skip("no frobnicator")
        """
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_skips skipped: Skipped: no frobnicator*",
                                 "*the suite never skips*"])


def test_a_skip_mark_and_a_skip_in_a_fixture_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def tool():
            pytest.skip("no tool")

        @pytest.mark.skipif(True, reason="not here")
        def test_marked():
            pass

        @pytest.mark.skip(reason="later")
        def test_later():
            pass

        def test_needs_tool(tool):
            pass
        """
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=3)  # skipped at setup: an error at setup
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*not here*", "*later*", "*no tool*"])


def test_a_skipped_module_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gone="""
        import pytest

        pytest.importorskip("no_such_module_anywhere")

        def test_never():
            pass
        """,
        test_fine="""
        def test_fine():
            pass
        """,
    )
    result = pytester.runpytest(*PLUGIN)
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run
    result.stdout.fnmatch_lines(["*test_gone.py skipped*no_such_module_anywhere*"])


def test_without_the_plugin_the_same_skip_passes(pytester: pytest.Pytester) -> None:
    """The control: the inner run does fail because of the plugin alone."""
    pytester.makepyfile(
        """
        import pytest

        def test_skips():
            pytest.skip("no frobnicator")

        @pytest.mark.xfail(reason="known", strict=True)
        def test_xfails():
            assert False
        """
    )
    plain = pytester.runpytest()
    plain.assert_outcomes(skipped=1, xfailed=1)
    assert plain.ret == pytest.ExitCode.OK
    strict = pytester.runpytest(*PLUGIN)
    strict.assert_outcomes(failed=1, xfailed=1)
