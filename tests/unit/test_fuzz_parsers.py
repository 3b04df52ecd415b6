"""Property-based fuzzing of every kernel-log parser: mutated, truncated and shuffled logs.

Nothing but the package's own error type may escape, every input finishes quickly (hypothesis'
deadline), and whatever is parsed still makes a capture that renders."""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oomscope.errors import OomscopeError
from oomscope.importer import import_reports
from oomscope.kernel.kmsg import parse_kmsg_dump, parse_killed_line, parse_oom_summary, parse_reports
from oomscope.kernel.logformats import read_log_lines
from oomscope.report.formats import render_markdown

from ..conftest import fixture_text

SOURCES = [("logs", "dmesg-v1-6.18.txt"), ("logs", "rhel7-3.10-syslog.txt"), ("logs", "journal-v2-6.1.json"),
           ("logs", "kmsg-4.x-kubepods.txt"), ("logs", "kern.log-v2-6.1.txt"), ("kmsg", "v1-6.18-hostile-sidecar.kmsg"),
           ("kmsg", "v2-6.1-global.kmsg")]
LINES = [line for parts in SOURCES for line in fixture_text(*parts).splitlines()]
NASTY = st.text(alphabet=st.sampled_from(list("[]();:,=-_ /0123456789abkBxKM\t\\{}\"'<>\x00é")), max_size=40)


@st.composite
def mutated_logs(draw):
    lines = draw(st.lists(st.sampled_from(LINES), min_size=1, max_size=120))
    out = []
    for line in lines:
        op = draw(st.integers(0, 5))
        if op == 1:  # truncate the line
            line = line[: draw(st.integers(0, len(line)))]
        elif op == 2:  # splice in junk
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(NASTY) + line[at:]
        elif op == 3:  # replace a number with a huge or negative one
            line = line.replace("0", draw(st.sampled_from(["99999999999999999999", "-1", ""])), 1)
        out.append(line)
    return "\n".join(out)


def _run(text):
    try:
        for imp in import_reports(io.StringIO(text), year=2026):
            render_markdown(imp.capture)
        parse_reports(text)
    except OomscopeError:
        pass


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_logs())
def test_mutated_logs_never_crash_the_importer(text):
    _run(text)


@settings(max_examples=300, deadline=1000)
@given(st.text(max_size=2000))
def test_arbitrary_text_never_crashes_any_parser(text):
    _run(text)
    list(read_log_lines(io.StringIO(text)))
    parse_kmsg_dump(text)
    parse_killed_line(text)
    parse_oom_summary(text, None, None)


@settings(max_examples=100, deadline=3000)
@given(st.integers(1, 30_000))
def test_one_huge_line_is_linear(n):
    _run("[ 1.000000] " + "memory: usage " * n)
    _run("Killed process 1 (" + "(" * n)
