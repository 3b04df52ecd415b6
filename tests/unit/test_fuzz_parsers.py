"""Property-based fuzzing of everything that reads untrusted text: every kernel-text parser, the
log importer, the capture loader, the HTML, Markdown and JSON renderers and the index.

Properties checked, not just "it ran": nothing but the package's own error type escapes
(errors.py); every input finishes quickly (hypothesis' deadline); what is rendered is escaped (no
``<script`` or other markup from a name in the HTML, no control character in the Markdown and
JSON that go to a terminal, the JSON parses back to the same names); nothing is written outside
the output folder, whatever the kill's id and whatever links are planted in the folder."""

import io
import json
import os
import re
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oomscope.errors import OomscopeError
from oomscope.importer import import_reports
from oomscope.kernel import cgroupfs, procfs, tracefs
from oomscope.kernel.kmsg import parse_kmsg_dump, parse_record
from oomscope.kernel.oom_report import OomReportParser, parse_counter_line, parse_killed_line, parse_oom_summary, parse_reports
from oomscope.kernel.logformats import read_log_lines
from oomscope.kernel.logscan import report_lines
from oomscope.model import Capture, Incident, IncidentVictim, Timeline, TimelinePoint
from oomscope.record.retention import Retention
from oomscope.postmortem.stage import write_kill
from oomscope.report.formats import render_json, render_markdown
from oomscope.postmortem.index import OutputIndex
from oomscope.report.render import render_html

from ..conftest import fixture_text
from .helpers import capture_from_fixture

SOURCES = [("logs", "dmesg-v1-6.18.txt"), ("logs", "rhel7-3.10-syslog.txt"), ("logs", "journal-v2-6.1.json"),
           ("logs", "kmsg-4.x-kubepods.txt"), ("logs", "kern.log-v2-6.1.txt"), ("kmsg", "v1-6.18-hostile-sidecar.kmsg"),
           ("kmsg", "v2-6.1-global.kmsg"), ("kmsg", "v2-6.1-anon.kmsg")]
LINES = [line for parts in SOURCES for line in fixture_text(*parts).split("\n")]
HOSTILE = ["<script>alert(1)</script>", "\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m", "\u202e", "\u2066", "\u2028",
           "\x85", "\r", "\n", "\\x0a", "\\x1b", "\\xc3\\xa9", "\\xff", "9" * 400, "-1", "\x00", "\x7f", "é", "\U0001f600",
           "\"'&<>", "${x}", "{{ 7*7 }}", "Killed process 666 (evil) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB",
           ",oom_memcg=/x,task_memcg=/x,task=a,pid=1,uid=0"]
NASTY = st.one_of(st.sampled_from(HOSTILE),
                  st.text(alphabet=st.sampled_from(list("[]();:,=-_ /0123456789abkBxKM\t\\{}\"'<>\x00é\u2028\x1b\x9b")), max_size=40))
#: a control character that must never reach a terminal raw (C0 but newline, DEL, C1, bidi)
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
OWN_ERRORS = (OomscopeError,)


@st.composite
def mutated_logs(draw):
    lines = draw(st.lists(st.sampled_from(LINES), min_size=1, max_size=120))
    out = []
    for line in lines:
        op = draw(st.integers(0, 5))
        if op == 1:  # truncate the line
            line = line[: draw(st.integers(0, len(line)))]
        elif op == 2:  # splice in junk or a hostile name
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(NASTY) + line[at:]
        elif op == 3:  # replace a number with a huge or negative one
            line = line.replace("0", draw(st.sampled_from(["99999999999999999999", "9" * 400, "-1", ""])), 1)
        out.append(line)
    return "\n".join(out)


def _check_rendered(capture: Capture) -> None:
    """The three renderings of a capture: escaped, and the JSON parses back to the same names."""
    html = render_html(capture)
    assert "<script" not in html.lower() and "onerror=" not in html.lower()
    assert not RAW_CONTROL.search(html.replace("\n", "").replace("\t", ""))
    md = render_markdown(capture)
    assert not RAW_CONTROL.search(md), repr(RAW_CONTROL.search(md))
    doc = render_json(capture)
    assert not RAW_CONTROL.search(doc)
    data = json.loads(doc)
    assert data["victim"]["comm"] == capture.victim.comm
    assert data["cgroup"]["oom_memcg"] == capture.cgroup.oom_memcg


def _import_and_render(text: str) -> int:
    problems = []
    imported = import_reports(io.StringIO(text), year=2026, problems=problems)
    for imp in imported:
        _check_rendered(imp.capture)
        again = Capture.from_json(imp.capture.to_json())  # what record writes, import reads back
        assert again.victim.pid == imp.capture.victim.pid
    assert all("\n" not in p and not RAW_CONTROL.search(p) for p in problems)
    return len(imported)


@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_logs())
def test_mutated_logs_import_and_render_escaped(text):
    n = _import_and_render(text)
    # a kill is named by its Killed line, the oom_reaper's line, or (import, issue 18) its oom-kill: summary
    assert n == len(parse_reports(text)) or n <= text.count("Killed process") + text.count("reaped process") + text.count("oom-kill:")


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=2000))
def test_arbitrary_text_never_crashes_any_parser(text):
    _import_and_render(text)
    assert isinstance(list(read_log_lines(io.StringIO(text))), list)
    assert all(r.text is not None for r in parse_kmsg_dump(text))
    assert parse_record(text) is None or isinstance(parse_record(text).seq, int)
    k = parse_killed_line(text)
    assert k is None or isinstance(k.pid, int)
    s = parse_oom_summary(text, None, None)
    assert s is None or text.startswith("oom-kill:")
    assert parse_counter_line(text) is None or text.split(":")[0] in ("memory", "memory+swap", "swap", "kmem")
    assert all(isinstance(v, int) for v in cgroupfs.parse_memory_stat(text).values())
    assert all(isinstance(v, float) for v in cgroupfs.parse_pressure(text).values())
    cgroupfs.parse_mounts_for_memory(text)
    lim = cgroupfs.parse_limit(text)
    assert lim is None or isinstance(lim, int)
    assert all(isinstance(v, str) for v in procfs.parse_proc_cgroup(text).values())
    assert all(isinstance(v, int) for v in procfs.parse_meminfo(text).values())
    procfs.parse_status(text)
    assert isinstance(tracefs.parse_format(text), list)
    data = text.encode("utf-8", "surrogatepass")
    assert all("\n" not in line for line in report_lines(data))


@settings(max_examples=100, deadline=3000)
@given(st.integers(1, 30_000))
def test_one_huge_line_is_linear(n):
    _import_and_render("[ 1.000000] " + "memory: usage " * n)
    _import_and_render("Killed process 1 (" + "(" * n)


@settings(max_examples=100, deadline=2000)
@given(st.lists(NASTY, min_size=1, max_size=3))
def test_a_hostile_name_in_a_real_report_is_one_kill_and_escaped(names):
    name = "".join(names)
    esc = "".join(chr(b) if 0x20 <= b < 0x7f and b != 0x5c else f"\\x{b:02x}" for b in name.encode("utf-8", "surrogatepass"))
    text = fixture_text("kmsg", "v1-6.18-anon.kmsg").replace("oomscope-fixture-965", esc).replace("(python3)", f"({esc})")
    reps = OomReportParser().feed_all(parse_kmsg_dump(text))
    assert [r.killed.pid for r in reps] == [2161]
    assert _import_and_render(text) == 1


# --- the capture loader ---------------------------------------------------------------------

def _rich_capture() -> dict:
    """A capture with every part the renderers draw: a timeline, an incident, a workload."""
    cap = capture_from_fixture("v2-6.1-anon.kmsg", version=2)[0]
    limit = cap.at_kill.limit_bytes or (64 << 20)
    cap.timelines = [Timeline(cap.cgroup.oom_memcg or "/", [
        TimelinePoint(t_ms=-6000.0 * (5 - i), usage_bytes=limit * (i + 1) // 6, anon_bytes=limit * i // 6,
                      limit_bytes=limit, file_bytes=1 << 20, psi_some_avg10=1.5 * i) for i in range(5)])]
    cap.incident = Incident(id=cap.kill_id, group_kill=True, group_cgroup=cap.cgroup.oom_memcg, victims=[
        IncidentVictim(kill_id=cap.kill_id, pid=cap.victim.pid, comm=cap.victim.comm),
        IncidentVictim(kill_id="20261125T065959.999Z-pid9", pid=9, comm="sidecar")])
    cap.workload.pod, cap.workload.namespace, cap.workload.kind = "web-1", "prod", "kubernetes"
    return json.loads(cap.to_json())


GOOD = _rich_capture()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.sampled_from([int("9" * 400), -int("9" * 400)])
    | st.floats(allow_nan=True, allow_infinity=True) | NASTY | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NASTY, inner, max_size=3), max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(GOOD) if p and p[0] != "schema_version"]


@st.composite
def mutated_captures(draw):
    d = json.loads(json.dumps(GOOD))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        obj = d
        try:
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    if draw(st.booleans()):
        d.setdefault("at_kill", {})
        if isinstance(d["at_kill"], dict) and isinstance(d["at_kill"].get("memory_stat"), dict):
            d["at_kill"]["memory_stat"][draw(NASTY)] = draw(JSON_VALUES)
    return json.dumps(d, ensure_ascii=draw(st.booleans()))


@settings(max_examples=300, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_captures())
def test_the_capture_loader_and_renderers_take_any_capture(text):
    try:
        cap = Capture.from_json(text)
    except OWN_ERRORS as exc:
        assert "\n" not in str(exc)
        return
    _check_rendered(cap)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300) | st.sampled_from([b"[" * 50000, b'{"schema_version": 1}', b"\xff\xfe", b"9" * 5000]))
def test_the_capture_loader_takes_any_bytes(data):
    try:
        Capture.from_json(data.decode("utf-8", "surrogateescape"))
    except OWN_ERRORS as exc:
        assert str(exc) and "\n" not in str(exc)  # one line for the user
    else:
        raise AssertionError("a capture from random bytes")  # none of these is one


# --- the index and the files --------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(NASTY, NASTY, NASTY), min_size=1, max_size=4), st.lists(mutated_captures(), max_size=2))
def test_index_and_files_stay_in_the_output_folder_and_escaped(kills, planted):
    base = tempfile.mkdtemp(prefix="oomscope-fuzz-")
    try:
        out, outside = os.path.join(base, "out"), os.path.join(base, "outside")
        os.makedirs(os.path.join(outside, "kill"))
        for n in ("capture.json", "postmortem.html", ".oomscope-kill", "precious"):
            with open(os.path.join(outside, "kill", n), "w") as f:
                f.write("not oomscope's")
        os.makedirs(out)
        os.symlink(os.path.join(outside, "kill"), os.path.join(out, "linked-kill"))
        os.symlink(os.path.join(outside, "kill", "precious"), os.path.join(out, "index.html.tmp"))
        before = _tree(outside)
        for i, text in enumerate(planted):
            d = os.path.join(out, f"planted{i}")
            os.makedirs(d)
            for n, body in (("capture.json", text), (".oomscope-kill", "")):
                with open(os.path.join(d, n), "w") as f:
                    f.write(body)
        base_cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
        for kill_id, comm, cgroup in kills:
            cap = Capture.from_json(base_cap.to_json())
            cap.kill_id, cap.victim.comm, cap.cgroup.oom_memcg = "../" + kill_id, comm, cgroup
            path, html, err = write_kill(out, cap, render_html)
            assert os.path.realpath(path).startswith(os.path.realpath(out) + os.sep)
            assert os.path.dirname(os.path.dirname(path)) == out
        index = OutputIndex(out)
        assert len(index.rows) >= len(kills)
        page = index.render()
        assert "<script" not in page.lower() and not RAW_CONTROL.search(page.replace("\n", ""))
        index.write()
        Retention.parse("1").prune(out)
        assert _tree(outside) == before
        assert os.path.islink(os.path.join(out, "linked-kill"))
        assert all(os.path.realpath(p).startswith(os.path.realpath(base)) for p in _tree(base))
    finally:
        shutil.rmtree(base)


def _tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st_ = os.lstat(p)
            out[p] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return out
