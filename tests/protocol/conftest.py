"""A failed conformance test shows the tail of the master's and agent's logs, as the e2e suite's do."""

from tests.e2e.conftest import pytest_runtest_makereport  # noqa: F401 (a pytest hook, registered by name)
