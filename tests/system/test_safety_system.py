"""record as root beside what others planted (issue 14), with real OOM kills in sandbox cgroups:
an output folder another user owns is refused before anything is loaded, a bad capture planted
in the output folder does not stop record's start-up, and --keep removes only oomscope's own
kill folders, never through a link (a FIFO planted as a capture is not removed either)."""

import json
import os
import re
import stat
import subprocess
import sys

from oomscope.safefs import MARKER

OOMSCOPE = [sys.executable, "-m", "oomscope"]
NOBODY = 65534


def _run(args, timeout=180):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_record_refuses_an_output_folder_of_another_user(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    r = _run(OOMSCOPE + ["record", "-o", str(out), "--duration", "1"], timeout=60)
    assert r.returncode == 5, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"oomscope: error: {out}: the folder belongs to user 65534, who could redirect what oomscope writes there "
        "as root; use a folder of root's, or --allow-shared-output"]
    assert list(out.iterdir()) == []


def test_record_starts_beside_planted_captures_and_keep_removes_only_its_own(tmp_path):
    out = tmp_path / "out"
    victim = tmp_path / "victim"
    victim.mkdir()
    for n in ("capture.json", "postmortem.html", MARKER, "precious"):
        (victim / n).write_text("not oomscope's")
    planted = {"nested": b"[" * 100000 + b"]" * 100000, "huge": b'{"schema_version": 1, "x": ' + b"9" * 5000 + b"}"}
    for name, body in planted.items():
        (out / name).mkdir(parents=True)
        (out / name / MARKER).write_text("")
        (out / name / "capture.json").write_bytes(body)
        os.utime(out / name / "capture.json", (1, 1))
    (out / "fifo").mkdir()
    (out / "fifo" / MARKER).write_text("")
    os.mkfifo(out / "fifo" / "capture.json")
    os.utime(out / "fifo" / MARKER, (1, 1))
    os.symlink(victim, out / "20000101T000000.000Z-pid1")
    notes = out / "notes"
    notes.mkdir()
    (notes / "capture.json").write_text("my own")
    # --keep 7d, not a count: on a shared host other kills may be recorded meanwhile
    r = _run(OOMSCOPE + ["record", "--lab", "anon", "-o", str(out), "--keep", "7d"])
    assert r.returncode == 0, r.stderr
    skipped = sorted(re.findall(r"/out/(\w+): left out of the index", r.stderr))
    assert skipped == ["fifo", "huge", "nested"], r.stderr
    html = r.stdout.strip().split("\n")[-1].split(": ", 1)[1]
    assert os.path.isfile(html)
    assert sorted(p.name for p in victim.iterdir()) == sorted(["capture.json", "postmortem.html", MARKER, "precious"])
    assert os.path.islink(out / "20000101T000000.000Z-pid1") and (notes / "capture.json").read_text() == "my own"
    assert not (out / "nested").exists() and not (out / "huge").exists(), "old kill folders of ours are removed"
    assert stat.S_ISFIFO(os.lstat(out / "fifo" / "capture.json").st_mode) and not (out / "fifo" / MARKER).exists()
    cap = json.loads(open(os.path.join(os.path.dirname(html), "capture.json")).read())
    assert oct(os.stat(html).st_mode & 0o777) == "0o644" and cap["victim"]["pid"] > 0
