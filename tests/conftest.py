import os

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture_text(*parts: str) -> str:
    with open(os.path.join(FIXTURES, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture
def fixture():
    return fixture_text
