"""In CI no test may skip: the optional tools the tests use must be there.

Outside CI a test that needs PyTorch skips when it is missing (the README's test command
installs the ``test`` extra only; ``pip install -e '.[test,torch]'`` adds it). With ``CI`` set
(``.ci/run`` sets it) a missing PyTorch stops the run at start-up instead of skipping, and any
skip that happens anyway fails the run.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.fixture(scope="session")
def torch():
    """PyTorch, for the tests that compare with it or check PyTorch code: a test that takes
    this fixture skips without PyTorch outside CI (the README's test command installs the
    ``test`` extra only), and every other test of its module still runs."""
    return pytest.importorskip("torch")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and importlib.util.find_spec("torch") is None:
        raise pytest.UsageError(
            "CI is set but PyTorch is not installed; "
            "install it as .ci/run does: pip install -e '.[test,torch]'"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        message = f"CI: {len(skipped)} test(s) skipped; in CI no test may skip."
        reporter.ensure_newline()
        reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: A test that needs PyTorch (the torch extra): it skips without it outside CI, and the other
#: tests of its module still run (CI refuses any skip).
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is not installed (pip install 'bnsym[torch]')",
)
