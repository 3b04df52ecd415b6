"""One bad input costs only itself (issue 14): oversized numbers and dates become unknown with a
note, deeply nested JSON is one line, a capture planted in the output folder is left out of the
index with one line, and no input gives a traceback or "internal error" (exit 70). Each failed on
the code before the fix."""

import json
import os
import re
import subprocess
import sys

import pytest

from oomscope.importer import kills as importer
from oomscope.errors import CaptureError
from oomscope.importer import import_reports, open_log
from oomscope.model import Capture
from oomscope.postmortem.index import OutputIndex
from oomscope.safefs import MARKER

from ..conftest import FIXTURES, fixture_text
from .helpers import capture_from_fixture

HUGE = "9" * 400
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _oomscope(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT))
    return subprocess.run([sys.executable, "-m", "oomscope", *args], capture_output=True, text=True, timeout=timeout, env=env)


def _good() -> dict:
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    return json.loads(cap.to_json())


def _with(path, value):
    d = _good()
    obj = d
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value
    return json.dumps(d)


def test_a_400_digit_number_in_a_capture_is_unknown_with_a_note():
    cap = Capture.from_json(_with(("at_kill", "usage_bytes"), int(HUGE)))
    assert cap.at_kill.usage_bytes is None
    assert any("at_kill.usage_bytes" in n and "about 400 digits" in n for n in cap.notes)


def test_a_400_digit_memory_stat_entry_is_left_out_with_a_note():
    cap = Capture.from_json(_with(("at_kill", "memory_stat", "rss"), int(HUGE)))
    assert "rss" not in cap.at_kill.memory_stat and any("memory_stat.rss" in n for n in cap.notes)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_float_no_kernel_prints_is_unknown(value):
    text = _with(("at_kill", "age_ms"), 1.5).replace('"age_ms": 1.5', f'"age_ms": {value}')
    assert Capture.from_json(text).at_kill.age_ms is None


def test_a_400_digit_pid_is_refused_in_one_line():
    with pytest.raises(CaptureError, match=r"capture.victim.pid: a number of about 400 digits"):
        Capture.from_json(_with(("victim", "pid"), int(HUGE)))


def test_deeply_nested_json_is_a_capture_error():
    text = _with(("notes",), []).rstrip()[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}"
    with pytest.raises(CaptureError, match="nested too deeply"):
        Capture.from_json(text)


def test_report_of_a_capture_with_a_400_digit_number_renders(tmp_path):
    p = tmp_path / "capture.json"
    p.write_text(_with(("at_kill", "usage_bytes"), int(HUGE)))
    for fmt in ("html", "md", "json"):
        r = _oomscope("report", str(p), "-f", fmt, "-o", str(tmp_path / f"out.{fmt}"))
        assert r.returncode == 0, r.stderr
        assert "digits" in (tmp_path / f"out.{fmt}").read_text()


def test_report_of_deeply_nested_json_is_one_line(tmp_path):
    p = tmp_path / "capture.json"
    p.write_text("[" * 100000 + "]" * 100000)
    r = _oomscope("report", str(p))
    # one line, naming the file (issue 15: which capture is bad, at 2 AM)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"oomscope: error: {p}: not valid JSON: nested too deeply"]


def _log(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _dmesg():
    return fixture_text("logs", "dmesg-v1-6.18.txt")


@pytest.mark.parametrize("case", ["usage", "seconds", "journal-date", "journal-monotonic", "iso-year-1", "stat", "pid"])
def test_import_of_a_log_with_an_absurd_number_or_date(tmp_path, case):
    if case == "usage":
        text = _dmesg().replace("memory: usage 65536kB", f"memory: usage {HUGE}kB", 1)
    elif case == "seconds":
        text = re.sub(r"\[13321\.", f"[{HUGE}.", _dmesg())
    elif case == "stat":
        text = re.sub(r"\] rss \d+", f"] rss {HUGE}", _dmesg())
    elif case == "pid":
        text = _dmesg().replace("Killed process 27307", f"Killed process {HUGE}")
    elif case == "iso-year-1":
        text = re.sub(r"^\S+", "0001-01-01T00:00:00-23:59", fixture_text("logs", "syslog-iso-v2-6.1.txt"), flags=re.M)
    else:
        lines = []
        for line in fixture_text("logs", "journal-v2-6.1.json").split("\n"):
            if line:
                o = json.loads(line)
                o["__REALTIME_TIMESTAMP" if case == "journal-date" else "_SOURCE_MONOTONIC_TIMESTAMP"] = str(10 ** 30)
                lines.append(json.dumps(o))
        text = "\n".join(lines) + "\n"
    out = tmp_path / "out"
    r = _oomscope("import", _log(tmp_path, "log", text), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert (out / "index.html").exists() or case == "pid"
    if case == "pid":  # a kill that cannot be told apart: skipped in one line, counted
        assert "0 kill(s), 1 skipped" in r.stderr and "<a number of 400 digits>" in r.stderr
    if case == "usage":
        (cap,) = [json.loads((out / d / "capture.json").read_text()) for d in os.listdir(out) if (out / d).is_dir()]
        assert cap["at_kill"]["usage_bytes"] is None and any("digits" in n for n in cap["notes"])


def test_one_kill_that_fails_costs_only_itself(monkeypatch):
    real = importer._capture
    calls = []

    def flaky(rep, *a, **kw):
        calls.append(rep.killed.pid)
        if len(calls) == 1:
            raise OverflowError("boom")
        return real(rep, *a, **kw)

    monkeypatch.setattr(importer, "_capture", flaky)
    text = fixture_text("kmsg", "v1-6.18-storm.kmsg")
    problems = []
    got = import_reports(text.split("\n"), problems=problems)
    assert len(calls) > 2 and len(got) == len(calls) - 1
    assert len(problems) == 1 and "was skipped (OverflowError: boom)" in problems[0]


def _plant(out, name, content=None, fifo=False):
    d = out / name
    d.mkdir(parents=True)
    (d / MARKER).write_text("planted\n")
    if fifo:
        os.mkfifo(d / "capture.json")
    else:
        (d / "capture.json").write_bytes(content)


def _planted_folder(tmp_path):
    out = tmp_path / "out"
    _plant(out, "huge", _with(("at_kill", "usage_bytes"), int(HUGE)).encode())
    _plant(out, "nested", b"[" * 100000 + b"]" * 100000)
    _plant(out, "digits5000", b'{"schema_version": 1, "x": ' + b"9" * 5000 + b"}")
    _plant(out, "latin1", b'{"a": "\xff"}')
    _plant(out, "notjson", b"hello")
    _plant(out, "fifo", fifo=True)
    return out


def test_a_planted_bad_capture_does_not_break_the_index(tmp_path):
    out = _planted_folder(tmp_path)
    index = OutputIndex(str(out))
    assert sorted(index.rows) == ["huge"]
    assert sorted(n for n, _ in index.skipped) == ["digits5000", "fifo", "latin1", "nested", "notjson"]


def test_a_planted_bad_capture_does_not_break_a_later_import(tmp_path):
    out = _planted_folder(tmp_path)
    r = _oomscope("import", os.path.join(FIXTURES, "logs", "dmesg-v1-6.18.txt"), "-o", str(out), timeout=60)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "left out of the index" in line]
    assert len(warnings) == 5
    assert "27307" in (out / "index.html").read_text()


def test_import_output_lines_are_one_per_problem(tmp_path):
    log = _log(tmp_path, "log", _dmesg() + _dmesg().replace("Killed process 27307", f"Killed process {HUGE}"))
    got = import_reports(open_log(log), problems=(problems := []), year=2026)
    assert len(got) == 1 and len(problems) == 1 and "\n" not in problems[0]


def test_an_integer_beyond_any_float_in_a_float_field_is_unknown():
    """Found by the fuzz test: a 400-digit psi_some_avg10 in a timeline point raised OverflowError."""
    import json

    from oomscope.model import Capture

    from .helpers import capture_from_fixture

    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    from oomscope.model import Timeline, TimelinePoint

    cap.timelines = [Timeline("/x", [TimelinePoint(t_ms=-1000.0, usage_bytes=1, psi_some_avg10=1.0)])]
    data = json.loads(cap.to_json())
    data["timelines"][0]["points"][0]["psi_some_avg10"] = int("9" * 400)
    again = Capture.from_json(json.dumps(data))
    assert again.timelines[0].points[0].psi_some_avg10 is None
    assert any("psi_some_avg10" in n for n in again.notes)


# --- issue 24: what report reads, and what the error lines show -------------------------------

def test_report_of_a_fifo_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "capture.json"
    os.mkfifo(fifo)
    r = _oomscope("report", str(fifo), timeout=30)  # a plain open() waited for a writer forever
    assert r.returncode == CaptureError.exit_code
    assert r.stderr.strip().splitlines() == [f"oomscope: error: cannot read {fifo}: a FIFO, not a regular file"]


def test_report_of_an_oversized_capture_is_one_line(tmp_path):
    from oomscope.safefs import MAX_READ

    big = tmp_path / "capture.json"
    with open(big, "wb") as f:
        f.truncate(MAX_READ + 1)  # sparse: no disk used
    r = _oomscope("report", str(big), timeout=60)
    assert r.returncode == CaptureError.exit_code
    assert r.stderr.strip().splitlines() == [
        f"oomscope: error: cannot read {big}: {MAX_READ + 1} bytes, more than the {MAX_READ >> 20} MiB a capture can be"]


def test_report_follows_a_link_to_a_capture(tmp_path):
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    (tmp_path / "real.json").write_text(cap.to_json())
    os.symlink(tmp_path / "real.json", tmp_path / "capture.json")
    r = _oomscope("report", str(tmp_path / "capture.json"), "-f", "md")
    assert r.returncode == 0, r.stderr


ESC_NAME = "log\x1b]0;pwned\x07\x1b[2J"


def test_a_damaged_gz_named_with_escapes_puts_no_escape_on_stderr(tmp_path):
    import gzip

    log = tmp_path / f"{ESC_NAME}.gz"
    data = gzip.compress(fixture_text("logs", "dmesg-v1-6.18.txt").encode() * 4)
    log.write_bytes(data[:len(data) // 2])  # truncated: gzip's error names the file's end
    r = _oomscope("import", str(log), "-o", str(tmp_path / "out"))
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr and "\x1b" not in r.stdout
    assert "the rest of the file is skipped" in r.stderr and "\\x1b]0;pwned" in r.stderr


def test_the_recorders_error_lines_put_no_escape_on_stderr():
    import io

    from oomscope.record.announce import Announcer, Losses

    err = io.StringIO()
    a = Announcer(io.StringIO(), err)
    # collector.py: "kill of pid N not recorded: {type(exc).__name__}: {exc}": an exception naming a cgroup
    a.error("collector", f"oomscope: error: kill of pid 7 not recorded: KeyError: '/{ESC_NAME}'")
    said = Losses().update({}, OSError(f"read {ESC_NAME}"), 0)
    assert "\x1b" not in err.getvalue() and "\x07" not in err.getvalue()
    assert all("\x1b" not in s for s in said)
