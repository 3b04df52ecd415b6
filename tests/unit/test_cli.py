import subprocess
import sys

from typer.testing import CliRunner

from oomscope.cli import app

from .helpers import capture_from_fixture

runner = CliRunner()


def _oomscope(*args, **kw):
    return subprocess.run([sys.executable, "-m", "oomscope", *args], capture_output=True, text=True, timeout=60, **kw)


def test_report_writes_the_html(tmp_path):
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    p = tmp_path / "capture.json"
    p.write_text(cap.to_json())
    out = tmp_path / "pm.html"
    r = runner.invoke(app, ["report", str(p), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "python3" in out.read_text()


def test_corrupt_capture_is_one_line_and_keeps_the_file(tmp_path):
    p = tmp_path / "capture.json"
    p.write_text('{"schema_version": 1, "kill_id": "x", "victim": {"pid": "nope"}}')
    r = _oomscope("report", str(p))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["oomscope: error: capture.victim.pid: expected an integer"]
    assert "Traceback" not in r.stderr and p.exists()


def test_missing_capture(tmp_path):
    r = _oomscope("report", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "cannot read" in r.stderr


def test_bad_size(tmp_path):
    r = _oomscope("lab", "anon", "--limit", "lots")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "not a size" in r.stderr


def test_unknown_scenario_is_one_line():
    r = _oomscope("lab", "nosuch")
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("oomscope: error:")
