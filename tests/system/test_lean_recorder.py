"""The long-running recorder holds BPF and the sampler, not the analysis nor the command line's
parser: pandas, jinja2 and pydantic are never mapped in it (record replaces its process, same
pid, once typer has parsed the options: record/main.py); post-mortems come from its worker process (postmortem/finisher.py), and a worker
that dies is said, started again, and costs no capture."""

import glob
import os
import signal
import time

from .conftest import run_in_cgroup

HOG = "import os\nprint(os.getpid(), flush=True)\na = []\nwhile True: a.append(bytearray(1 << 20))\n"


def _children(pid):
    out = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(task) as f:
            out += [int(x) for x in f.read().split()]
    return out


def _mapped(pid):
    with open(f"/proc/{pid}/maps") as f:
        text = f.read()
    return {name for name in ("pandas", "markupsafe", "numpy", "jinja2", "pydantic_core") if f"/{name}/" in text}


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def test_record_maps_no_analysis_and_survives_its_worker_dying(recorder, sandbox):
    name, path = sandbox(limit=64 << 20)
    rec = recorder("--cgroup", name)
    [worker] = _children(rec.proc.pid)
    first = run_in_cgroup(path, HOG)
    assert first.returncode == -9
    pid1 = int(first.stdout.split()[0])
    rec.wait_for(lambda c: c["victim"]["pid"] == pid1)
    assert _mapped(rec.proc.pid) == set(), "the recorder itself never imports the analysis, nor pydantic"
    # the pid started as `python -m oomscope record` (typer, pydantic) and is now the lean one
    assert b"oomscope.record.main" in _cmdline(rec.proc.pid) and b"-P" in _cmdline(rec.proc.pid)
    assert b"-P" in _cmdline(worker), "the worker never searches the working folder for modules"
    with open(f"/proc/{rec.proc.pid}/comm") as f:
        assert f.read().strip() == "oomscope", "found by ps -C oomscope as before the exec"
    # its worker renders (jinja2's markupsafe); no pandas anywhere (analysis/advice.py fits a
    # timeline's trend with numpy: issue 29)
    assert "markupsafe" in _mapped(worker), "its worker renders the post-mortem"

    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "the post-mortem worker was killed by signal 9" not in rec.stderr():
        assert time.monotonic() < deadline, rec.stderr()
        time.sleep(0.1)
    second = run_in_cgroup(path, HOG)
    assert second.returncode == -9
    pid2 = int(second.stdout.split()[0])
    [(cap_path, cap)] = rec.wait_for(lambda c: c["victim"]["pid"] == pid2)
    assert os.path.getsize(os.path.join(os.path.dirname(cap_path), "postmortem.html")) > 1000
    [new_worker] = _children(rec.proc.pid)
    assert new_worker != worker
    # the line follows the worker's answer, a drain of record's loop after the page is on disk
    deadline = time.monotonic() + 10
    while f"pid={pid2} " not in rec.stdout():
        assert time.monotonic() < deadline, rec.stdout()
        time.sleep(0.1)
    assert "starting it again" in rec.stderr()
    assert rec.stop() == 0
    assert os.path.isfile(os.path.join(rec.out_dir, "kills", "index.html"))
