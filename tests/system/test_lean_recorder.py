"""The long-running recorder holds BPF and the sampler, not the analysis nor the command line's
parser: pandas, jinja2 and pydantic are never mapped in it (record replaces its process, same
pid, once typer has parsed the options: record/main.py); post-mortems come from its worker process (postmortem/finisher.py), and a worker
that dies is said, started again, and costs no capture."""

import glob
import json
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
    # orjson: import's one-line JSON only (3 MiB of anonymous memory once imported: model.to_json)
    return {name for name in ("pandas", "markupsafe", "numpy", "jinja2", "pydantic_core", "orjson") if f"/{name}/" in text}


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
    assert _mapped(rec.proc.pid) == set(), "the recorder itself never imports the analysis, nor pydantic, nor orjson"
    # the pid started as `python -m oomscope record` (typer) and is now the lean one
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


def _no_child_for(pid, seconds):
    """True if record has no child (its worker) at any look over ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _children(pid):
            return False
        time.sleep(0.05)
    return True


def _idle(rec, timeout=30):
    deadline = time.monotonic() + timeout
    while _children(rec.proc.pid):
        assert time.monotonic() < deadline, f"the worker never exited when idle: {rec.stderr()}"
        time.sleep(0.1)


def test_a_worker_gone_idle_comes_back_for_each_kill_and_loses_none(recorder, sandbox, monkeypatch):
    """Issue 29: the worker exits when idle (60 s by default, 3 s here) and the next kill in record's
    --cgroup starts it again: three real kills, each after it left, each with its capture, its
    post-mortem and its line, no error said. A kill outside --cgroup (elsewhere on the host) does
    not start it: such kills, a soak's every 5 s beside bench/lean.py, kept it for good."""
    monkeypatch.setenv("OOMSCOPE_WORKER_IDLE_EXIT_S", "3")
    name, path = sandbox(limit=64 << 20)
    _elsewhere, elsewhere_path = sandbox(limit=64 << 20)  # a cgroup of its own, outside --cgroup
    rec = recorder("--cgroup", name)
    _idle(rec)
    for _ in range(5):  # one kill may be joined within the drain that read it, before any wake is looked at
        outside = run_in_cgroup(elsewhere_path, HOG)
        assert outside.returncode == -9
        assert _no_child_for(rec.proc.pid, 1.0), "a kill outside --cgroup started the worker"
    pids = []
    for _ in range(3):
        _idle(rec)
        killed = run_in_cgroup(path, HOG)
        assert killed.returncode == -9
        pid = int(killed.stdout.split()[0])
        pids.append(pid)
        [(cap_path, _cap)] = rec.wait_for(lambda c, pid=pid: c["victim"]["pid"] == pid)
        assert os.path.getsize(os.path.join(os.path.dirname(cap_path), "postmortem.html")) > 1000
        deadline = time.monotonic() + 10
        while f"pid={pid} " not in rec.stdout():
            assert time.monotonic() < deadline, rec.stdout()
            time.sleep(0.1)
    victims = {c["victim"]["pid"] for _p, c in rec.captures()}
    assert victims == set(pids), "only the kills within --cgroup are recorded, every one of them"
    assert "post-mortem worker" not in rec.stderr(), rec.stderr()
    assert rec.stop() == 0
    assert os.path.isfile(os.path.join(rec.out_dir, "kills", "index.html"))
    # each start after an idle exit read the rows its last one kept (postmortem/index.py
    # INDEX_CACHE), not every capture again: all three kills are in them, and in the index
    with open(os.path.join(rec.out_dir, "kills", ".oomscope-index.json")) as f:
        kept = json.load(f)["kills"]
    assert sorted(kept) == sorted(os.path.basename(os.path.dirname(p)) for p, _c in rec.captures())
    with open(os.path.join(rec.out_dir, "kills", "index.html")) as f:
        page = f.read()
    assert all(folder in page for folder in kept)


CLIMB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "climb.py")  # 76%, still, then a slow climb


def test_a_worker_is_started_and_kept_while_a_cgroup_climbs_near_its_limit(recorder, sandbox, monkeypatch):
    """Issue 29: a storm's first kills waited for the worker's start-up after its idle exit (~0.8 s).
    Now the worker is started once a watched cgroup is at 80% of its limit and growing (the growth
    sites' test), before any kill, kept past its idle exit while it stays so, and renders the kill
    that comes; once nothing is near, it exits when idle again. Before, a cgroup woke it only at
    most 10 s from its limit at its growth over the sampler's ring (this one is 18 s or more away),
    and nothing kept it."""
    import subprocess
    import sys

    monkeypatch.setenv("OOMSCOPE_WORKER_IDLE_EXIT_S", "3")
    limit = 64 << 20
    name, path = sandbox(limit=limit)
    usage_file = os.path.join(path, "memory.current")
    if not os.path.exists(usage_file):
        usage_file = os.path.join(path, "memory.usage_in_bytes")  # v1
    rec = recorder("--cgroup", name)
    _idle(rec)
    climb = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" "$3" "$4" "$5" "$6"', "sh",
                              os.path.join(path, "cgroup.procs"), sys.executable, CLIMB, usage_file, str(limit), "12"],
                             stdout=subprocess.PIPE, text=True)
    try:
        pid = int(climb.stdout.readline())
        assert _no_child_for(rec.proc.pid, 9.0), "started at 76% of the limit, not growing: not near"
        # 80% within ~3 s of the climb's start, read by the sampler within a second, looked at by
        # record's next health tick
        deadline = time.monotonic() + 8
        while not _children(rec.proc.pid):
            assert time.monotonic() < deadline, "no worker started for a cgroup near its limit and growing"
            time.sleep(0.05)
        [worker] = _children(rec.proc.pid)
        assert climb.stdout.readline().strip() == "fast"  # ~8 s later: past two idle exits of 3 s
        assert _children(rec.proc.pid) == [worker], "kept while near its limit, not left and started again"
        assert climb.wait(timeout=30) == -9
    finally:
        climb.kill()
        climb.wait()
    [(cap_path, _cap)] = rec.wait_for(lambda c: c["victim"]["pid"] == pid)
    assert os.path.getsize(os.path.join(os.path.dirname(cap_path), "postmortem.html")) > 1000
    _idle(rec)  # nothing near once the hog is gone: it leaves when idle as before
    assert "post-mortem worker" not in rec.stderr(), rec.stderr()
    assert rec.stop() == 0
