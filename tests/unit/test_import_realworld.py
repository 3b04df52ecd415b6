"""oomscope import on the logs people really paste (issue 18): host facts only from the log,
group kills, vendor summaries, undated and foreign-dated logs, filtered and elided excerpts."""

import io
import os
import re

import pytest

from oomscope.analysis.result import analyse_kill
from oomscope.importer import import_reports
from oomscope.report.render import render_html

from ..conftest import FIXTURES, fixture_text

LOGS = sorted(os.listdir(os.path.join(FIXTURES, "logs")))


def _imp(name, **kw):
    return import_reports(io.StringIO(fixture_text("logs", name)), year=2026, **kw)


@pytest.mark.parametrize("name", LOGS)
def test_no_imported_capture_states_a_host_fact_the_log_lacks(name):
    text = fixture_text("logs", name)
    imps = _imp(name)
    assert imps
    for imp in imps:
        h = imp.capture.host
        # this machine's settings never leak into a capture of another host
        assert (h.thp_enabled, h.thp_defrag, h.thp_shmem_enabled) == (None, None, None)
        assert (h.overcommit_memory, h.oom_dump_tasks, h.panic_on_oom) == (None, None, None)
        assert h.kernel_release == "" or h.kernel_release in text
        assert h.swap_total_bytes is None or "Total swap" in text
        assert h.mem_total_bytes is None or "pages RAM" in text
        if h.page_size_bytes is not None:  # from the architecture or Mem-Info, never this machine
            assert re.search(r"RIP: |x86_64|amd64|Node \d+ active_anon", text)
        html = render_html(imp.capture, analyse_kill(imp.capture))
        if "Total swap = 0kB" not in text:
            assert "the host has no swap" not in html and "The host has no swap" not in html
        assert any(n.startswith(("Host facts read from the log", "The log states no host facts")) for n in imp.capture.notes)


def test_host_facts_are_read_from_the_report():
    (imp,) = _imp("kern.log-v2-6.1.txt")
    h = imp.capture.host
    assert h.kernel_release == "6.1.0-56-amd64" and h.page_size_bytes == 4096
    note = next(n for n in imp.capture.notes if n.startswith("Host facts"))
    assert "architecture x86_64" in note and "host swap" in note.split("unknown:")[1]
    html = render_html(imp.capture, analyse_kill(imp.capture))
    assert "Swap: unknown" in html


def test_global_oom_swap_ram_and_page_size_from_mem_info():
    text = fixture_text("kmsg", "v2-6.1-global.kmsg")
    (imp,) = import_reports(io.StringIO(text))
    h = imp.capture.host
    assert h.swap_total_bytes is not None and h.page_size_bytes == 4096
    note = next(n for n in imp.capture.notes if n.startswith("Host facts"))
    assert "page size 4 KiB (Mem-Info" in note
