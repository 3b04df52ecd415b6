"""Nothing a workload chose reaches a terminal raw (issue 14): one function, terminal.py's
terminal_safe, for every output that can reach one. The report cases failed on the code before."""

import json
import os
import subprocess
import sys

import pytest

from oomscope.terminal import json_safe, terminal_safe

from .helpers import capture_from_fixture

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CONTROLS = (["\x00", "\x07", "\x08", "\x0d", "\x1b", "\x7f", "\x85", "\x9b", "\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
            + [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)])
EVIL_COMM = "\x1b]0;pwned\x07\x1b[31mred\x9b2J\u202eevil\x7f"
EVIL_CGROUP = "/pod\x1b[2J\u2066x\u2069\x85"


def _raw(text: str) -> list:
    return [c for c in CONTROLS if c in text]


@pytest.mark.parametrize("ch", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_terminal_safe_escapes_every_control(ch):
    out = terminal_safe(f"a{ch}b")
    assert ch not in out and out.isprintable() and out.isascii()


def test_terminal_safe_keeps_printable_text_and_newlines_when_asked():
    assert terminal_safe("/café/pod-1 (java)") == "/café/pod-1 (java)"
    assert terminal_safe("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


def test_json_safe_parses_to_the_same_data():
    data = {"comm": EVIL_COMM, "cg": EVIL_CGROUP, "tag": "\U000e0041", "ok": "café"}
    doc = json_safe(json.dumps(data, ensure_ascii=False))
    assert json.loads(doc) == data and not _raw(doc) and "café" in doc


def _evil_capture(tmp_path):
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    cap.victim.comm = EVIL_COMM
    cap.cgroup.oom_memcg = cap.cgroup.task_memcg = EVIL_CGROUP
    cap.notes.append("note " + EVIL_COMM)
    p = tmp_path / "capture.json"
    p.write_text(cap.to_json())
    return p


def _oomscope(*args):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT))
    return subprocess.run([sys.executable, "-m", "oomscope", *args], capture_output=True, text=True, timeout=60, env=env)


def test_report_md_to_stdout_has_no_control_characters(tmp_path):
    r = _oomscope("report", str(_evil_capture(tmp_path)), "-f", "md")
    assert r.returncode == 0, r.stderr
    assert _raw(r.stdout) == [] and "x1b" in r.stdout and "pwned" in r.stdout


def test_report_json_to_stdout_has_no_control_characters_and_parses_back(tmp_path):
    r = _oomscope("report", str(_evil_capture(tmp_path)), "-f", "json")
    assert r.returncode == 0, r.stderr
    assert _raw(r.stdout) == []
    assert json.loads(r.stdout)["victim"]["comm"] == EVIL_COMM


def test_report_html_escapes_markup(tmp_path):
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    cap.victim.comm = "<script>alert(1)</script>"
    cap.cgroup.oom_memcg = '/a"><img src=x onerror=alert(1)>'
    p = tmp_path / "capture.json"
    p.write_text(cap.to_json())
    r = _oomscope("report", str(p), "-o", str(tmp_path / "pm.html"))
    html = (tmp_path / "pm.html").read_text()
    assert r.returncode == 0 and "<script" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_an_error_message_does_not_echo_a_raw_key(tmp_path):
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    d = json.loads(cap.to_json())
    d["at_kill"]["memory_stat"]["\x1b[2J\x9b\u202e"] = "x"
    p = tmp_path / "capture.json"
    p.write_text(json.dumps(d, ensure_ascii=False))
    r = _oomscope("report", str(p))
    assert r.returncode == 2 and len(r.stderr.strip().split("\n")) == 1
    assert _raw(r.stderr) == [] and "memory_stat.\\x1b[2J\\x9b\\u202e: expected an integer" in r.stderr


def test_the_import_line_of_a_kill_has_no_control_characters(tmp_path):
    from ..conftest import fixture_text
    esc = "".join(chr(b) if 0x20 <= b < 0x7f and b != 0x5c else f"\\x{b:02x}" for b in EVIL_COMM.encode())
    text = fixture_text("kmsg", "v1-6.18-anon.kmsg").replace("(python3)", f"({esc})").replace("task=python3", f"task={esc}")
    log = tmp_path / "log.kmsg"
    log.write_text(text)
    r = _oomscope("import", str(log), "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert _raw(r.stdout + r.stderr) == [] and "\\x1b]0;pwned" in r.stdout
