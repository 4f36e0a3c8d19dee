"""The docker/ tests use the service tests' model folders and in-process server."""

from ..service.conftest import REPO, model_dir, server  # noqa: F401  (fixtures, shared by name)

# Figures of the container test (tests/docker/test_container.py), printed after the run's summary.
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("container figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
