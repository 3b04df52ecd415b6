"""Gold files: the post-mortem of fixed captures, byte for byte, with unstable text scrubbed.

A change to the page shows up here as a diff to review. To accept one on purpose:
    OOMSCOPE_UPDATE_GOLD=1 python -m pytest tests/unit/test_gold.py
"""

import os
import re

import pytest

from oomscope.report.formats import render_markdown
from oomscope.report.render import render_html

from .helpers import capture_from_fixture

GOLD = os.path.join(os.path.dirname(__file__), "..", "fixtures", "gold")
CASES = [("v1-6.18-hostile-sidecar.kmsg", 1), ("v2-6.1-anon.kmsg", 2), ("v2-6.1-global.kmsg", 2)]


def _scrub(text: str) -> str:
    """What changes from run to run or release to release, not with the page's content."""
    text = re.sub(r"oomscope \d+\.\d+\.\d+\S*", "oomscope VERSION", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", "TIMESTAMP", text)
    return text


@pytest.mark.parametrize("name,version", CASES)
@pytest.mark.parametrize("fmt", ["html", "md"])
def test_post_mortem_matches_its_gold_file(name, version, fmt):
    cap, _ = capture_from_fixture(name, version=version)
    cap.host.kernel_release = "KERNEL"
    cap.host.hostname = "HOST"
    got = _scrub(render_html(cap) if fmt == "html" else render_markdown(cap))
    path = os.path.join(GOLD, name.replace(".kmsg", f".{fmt}"))
    if os.environ.get("OOMSCOPE_UPDATE_GOLD") or not os.path.exists(path):
        with open(path, "w") as f:
            f.write(got)
        if not os.environ.get("OOMSCOPE_UPDATE_GOLD"):
            pytest.fail(f"gold file {path} did not exist; written now: review and commit it")
    with open(path) as f:
        want = f.read()
    assert got == want, f"{path} differs: review the change, then OOMSCOPE_UPDATE_GOLD=1 to accept it"
