"""Test isolation for process-wide torch settings (no test module may change them at import time:
collection imports every module before the first test runs).

``Trainer`` applies ``train.threads`` with ``torch.set_num_threads`` (process-wide, as a training
run wants). Several tests train with one thread; without this fixture the rest of the session would
run on one thread, which changes the summation order of PyTorch's own kernels: the official
StyleGAN3-R fixture's input-affine bias gradient (a reduction over every pixel) then moves by
2.7e-4 relative, beyond the 1e-4 tolerance, with the reference ops as with the compiled ones.
"""
import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def registry():
    """Every installed plugin's parts (a module that needs another set defines its own ``registry``)."""
    from stylegan_core.plugins import load_plugins

    return load_plugins().registry


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of many small networks: the machine's cores are shared, and oversubscribed
    OpenMP threads spin. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A comparison with the official code's outputs must not pass by skipping: every module holding `fixtures` tests
# runs at least one of them, and in CI (STYLEGAN_CI=1) missing fixture files are a failure, not a skip.
_fixture_runs: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report):
    if "fixtures" not in report.keywords or not (report.when == "call" or report.skipped):
        return
    counts = _fixture_runs.setdefault(report.nodeid.split("::")[0], {"ran": 0, "skipped": 0, "missing": 0})
    if report.skipped:
        counts["skipped"] += 1
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        counts["missing"] += "fixtures at" in reason
    else:
        counts["ran"] += 1


def pytest_sessionfinish(session, exitstatus):
    import os

    problems = [f"{module}: every comparison with the official outputs was skipped ({c['skipped']} tests)"
                for module, c in sorted(_fixture_runs.items()) if c["skipped"] and not c["ran"]]
    if os.environ.get("STYLEGAN_CI") == "1":
        problems += [f"{module}: {c['missing']} tests skipped for missing fixture files (CI has them)"
                     for module, c in sorted(_fixture_runs.items()) if c["missing"]]
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line("")
            reporter.write_sep("=", "official fixtures not compared", red=True)
        for line in problems:
            reporter.write_line(line, red=True) if reporter else print(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
