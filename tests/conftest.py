import os

import pytest

from .requires import STRICT_ENV, strict, strict_skip_report

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture_text(*parts: str) -> str:
    with open(os.path.join(FIXTURES, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture
def fixture():
    return fixture_text


def pytest_report_header(config):
    if strict():
        return (f"{STRICT_ENV}=1: a test skipped because a package is not installed fails "
                "(tests/requires.py); skips for what the machine is stay skips")
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    strict_skip_report(outcome.get_result())
