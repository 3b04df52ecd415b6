"""System tests: root, the real kernel, real OOM kills in sandbox cgroups.

Every sandbox cgroup is named ``oomscope-test-<pid>-<random>...`` and removed at teardown, even
when the test fails; only the tasks inside it are ever killed. Every hog runs under a limit.
"""

import contextlib
import glob
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from oomscope.kernel.cgroupfs import MemoryHierarchy, create_cgroup, kill_tasks, parse_flat_keyed, remove_cgroup
from oomscope.kernel.kmsg import KmsgFollower, KmsgReader
from oomscope.kernel.oom_report import OomReportParser

PREFIX = "oomscope-test-"
# Waits for record's start-up (interpreter, imports, BPF compile and attach) are this many times
# longer in the VMs: under software emulation the start-up takes 10-20x the host's (README, Tests).
TIME_SCALE = 3.0 if os.environ.get("OOMSCOPE_IN_VM") == "1" else 1.0
STARTUPS = []  # seconds from starting record to its "recording OOM kills" line, for the summary
MEASURED = []  # what passing tests measured (accuracy, counts), repeated in the summary: a passing VM's log is not kept


def measured(line: str) -> None:
    """Say what a test measured: now on stderr, and again in the run's summary (run-matrix prints it)."""
    MEASURED.append(line)
    sys.stderr.write(line + "\n")


def pytest_terminal_summary(terminalreporter):
    if STARTUPS:
        s = sorted(STARTUPS)
        terminalreporter.write_line(
            f"record start-up (interpreter, imports, BPF compile and attach): {len(s)} starts, "
            f"min {s[0]:.1f} s, median {s[len(s) // 2]:.1f} s, max {s[-1]:.1f} s, {sum(s):.0f} s in all")
    for line in MEASURED:
        terminalreporter.write_line(f"measured: {line}")


def _skip_reason():
    if os.geteuid() != 0:
        return "system tests need root (real cgroups, BPF, /dev/kmsg)"
    try:
        MemoryHierarchy.detect()
    except Exception as exc:
        return f"no memory cgroup hierarchy: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    for item in items:
        if "tests/system" in str(item.fspath):
            item.add_marker(pytest.mark.system)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def hier():
    return MemoryHierarchy.detect()


@pytest.fixture
def sandbox(hier):
    """Factory: make_cgroup(suffix, limit) -> (kernel path, fs path); all removed at teardown."""
    made = []

    def make(suffix="", limit=64 << 20, parent=None):
        name = f"{parent or ''}/{PREFIX}{os.getpid()}-{secrets.token_hex(3)}{suffix}"
        path = create_cgroup(hier, name, limit)
        made.append(path)
        return name, path

    make.made = made  # the shared recorder's view waits until record has read these
    yield make
    for path in reversed(made):
        remove_cgroup(path)


def run_in_cgroup(fs_path, code, timeout=60, env=None):
    """Run python code inside the cgroup from its first instruction (joins before exec)."""
    return subprocess.run(
        ["/bin/sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3"', "sh", os.path.join(fs_path, "cgroup.procs"), sys.executable, code],
        capture_output=True, timeout=timeout, env=env,
    )


# An OOM storm: a parent spared by oom_score_adj=-1000 keeps three children allocating until
# killed, for argv[2] seconds, on until argv[3] children were killed and, where argv[4] names a
# file, until that file exists; never past argv[5] seconds. Their pids are written into argv[1].
STORM = r"""
import os, sys, time
os.makedirs(sys.argv[1], exist_ok=True)
open('/proc/self/oom_score_adj', 'w').write('-1000')   # the parent is spared; its children are not
start = time.monotonic()
end, hard_end, min_kills, stop = start + float(sys.argv[2]), start + float(sys.argv[5]), int(sys.argv[3]), sys.argv[4]
children = set()
kills = 0
def going():
    now = time.monotonic()
    return now < hard_end and (now < end or kills < min_kills or (stop and not os.path.exists(stop)))
while going():
    while len(children) < 3:
        pid = os.fork()
        if pid == 0:
            open('/proc/self/oom_score_adj', 'w').write('0')
            open('/proc/self/comm', 'w').write('storm-child')
            a = []
            while True:
                a.append(bytearray(1 << 20))
        children.add(pid)
        open(os.path.join(sys.argv[1], str(pid)), 'w').close()
    pid, status = os.wait()
    children.discard(pid)
    kills += os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def run_storm(fs_path, script_path, pids_dir, seconds, timeout=90, min_kills=0, until=None, longest=None):
    """Run STORM in the cgroup and wait for its end. At least ``seconds``, on until ``min_kills``
    children were killed and, with ``until`` (polled in this thread every 0.2 s), until it returns
    true: a test whose storm must exercise something says so instead of guessing a length. Never
    past ``longest`` seconds (3x ``seconds`` by default).

    Under the VMs' emulation a child takes several times longer to fill the cgroup, so every length
    is TIME_SCALE times longer there (6.1 VM on a busy day: 16 kills in 6 s, too few to be a storm;
    CI's 6.12 VM, 2026-12-07: a fixed-length storm too slow for the kernel's report rate limit)."""
    seconds *= TIME_SCALE
    longest = (longest * TIME_SCALE) if longest is not None else 3 * seconds
    timeout = max(timeout * TIME_SCALE, longest + 30 * TIME_SCALE)
    script_path.write_text(STORM)
    stop = str(script_path) + ".stop" if until is not None else ""
    if stop and os.path.exists(stop):
        os.unlink(stop)  # an earlier storm's: this one would stop at once
    proc = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", os.path.join(fs_path, "cgroup.procs"),
                             sys.executable, str(script_path), str(pids_dir), str(seconds), str(min_kills), stop, str(longest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if until is not None:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not until():
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                time.sleep(0.2)
            open(stop, "w").close()
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        # the storm's parent and its children (all ours, in the sandbox cgroup): the children hold
        # the pipes, so the parent's end alone would leave communicate() waiting on them
        proc.kill()
        _kill_tasks(fs_path)
        proc.communicate(timeout=30)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_tasks(fs_path):
    """SIGKILL to every task in this sandbox cgroup (only ever one of ours: PREFIX)."""
    assert os.path.basename(fs_path).startswith(PREFIX), fs_path
    kill_tasks(fs_path)


def oom_kills(fs_path):
    """How many tasks the kernel OOM-killed in this cgroup (v2 memory.events, v1 memory.oom_control)."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(os.path.join(fs_path, name)) as f:
                counts = parse_flat_keyed(f.read())
        except FileNotFoundError:
            continue
        if "oom_kill" in counts:
            return counts["oom_kill"]
    raise AssertionError(f"{fs_path}: no oom_kill counter")


class Recorder:
    def __init__(self, out_dir, extra=()):
        self.out_dir = str(out_dir)
        self.stdout_path = os.path.join(self.out_dir, "record.stdout")
        self.stderr_path = os.path.join(self.out_dir, "record.stderr")
        os.makedirs(self.out_dir, exist_ok=True)
        self._out = open(self.stdout_path, "w")
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "oomscope", "record", "-o", os.path.join(self.out_dir, "kills"), *extra],
                                     stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)
        started = time.monotonic()
        deadline = started + 90 * TIME_SCALE
        while "recording OOM kills" not in self.stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"record did not start: {self.stderr()}")
            time.sleep(0.1)
        STARTUPS.append(time.monotonic() - started)

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def stdout(self):
        with open(self.stdout_path) as f:
            return f.read()

    def captures(self, skip=frozenset()):
        """(path, capture) of every capture written, but those in ``skip``. A capture is replaced
        whole, by rename (an incident's head is rewritten as members arrive): each version is
        parsed once, known by its inode and mtime."""
        out = []
        cache = self.__dict__.setdefault("_parsed", {})
        for p in sorted(glob.glob(os.path.join(self.out_dir, "kills", "*", "capture.json"))):
            if p in skip:
                continue
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            version = (st.st_ino, st.st_mtime_ns, st.st_size)
            if cache.get(p, (None,))[0] != version:
                with open(p) as f:
                    cache[p] = (version, json.load(f))
            out.append((p, cache[p][1]))
        return out

    def settle(self, timeout=60):
        """Wait until every capture written so far has its post-mortem (an earlier test's storm
        can leave the worker a backlog), so a test's own kill is not queued behind it."""
        settled = self.__dict__.setdefault("_settled", set())
        deadline = time.monotonic() + timeout * TIME_SCALE
        while time.monotonic() < deadline:
            dirs = {os.path.dirname(p) for p in glob.glob(os.path.join(self.out_dir, "kills", "*", "capture.json"))} - settled
            settled |= {d for d in dirs if os.path.exists(os.path.join(d, "postmortem.html"))}
            if dirs <= settled:
                return
            time.sleep(0.2)

    def wait_for(self, predicate, timeout=30):
        """Captures matching predicate, once their post-mortem is written too (it comes second)."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while time.monotonic() < deadline:
            caps = [c for c in self.captures() if predicate(c[1])
                    and os.path.exists(os.path.join(os.path.dirname(c[0]), "postmortem.html"))]
            if caps:
                return caps
            time.sleep(0.1)
        raise AssertionError(f"no matching capture in {timeout}s; record said: {self.stdout()} {self.stderr()}")

    def wait_for_output(self, text, timeout=30):
        deadline = time.monotonic() + timeout * TIME_SCALE
        while text not in self.stdout():
            if time.monotonic() > deadline:
                raise AssertionError(f"record never printed {text!r}; it printed: {self.stdout()}")
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._err.close()
        return self.proc.returncode


class SharedRecorderView:
    """One test's view of the recorder the session shares: its captures are the ones written
    after the view was made (tests also pick theirs by their own sandbox's name or pids); record's
    output is all of it. Starting record is most of a test's time in the VMs (under emulation,
    24 s a start, 16 starts: 416 s of the 6.12 VM's 883 s, 2026-11-28), so the tests that need
    nothing of a fresh start share one; a test that stops record, passes options, or must not
    depend on an earlier test's record, starts its own (``recorder(own=True)``)."""

    def __init__(self, rec, sandboxes=()):
        self.rec = rec
        self.out_dir = rec.out_dir
        self.proc = rec.proc
        rec.settle()
        # A fresh record finds the test's sandbox in its first pass; a running one finds new
        # cgroups within a second (record/sampler.py, discover_interval): the test's fill must not
        # start before that (a slow hog fills 96 MiB in 1.2 s). Under emulation a busy sampler
        # took longer (6.1 VM: a timeline began 5 s into its fill), so the view waits until record
        # holds the sandboxes' usage files open (it keeps them from its first reading on:
        # MemoryHierarchy._read_kept), 1.5 s at least, 15 s at most (then the test goes on).
        deadline = time.monotonic() + 15 * TIME_SCALE
        time.sleep(1.5 * TIME_SCALE)
        while sandboxes and not self._has_read(sandboxes) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._before = frozenset(glob.glob(os.path.join(rec.out_dir, "kills", "*", "capture.json")))

    def _has_read(self, paths) -> bool:
        opened = set()
        for fd in glob.glob(f"/proc/{self.proc.pid}/fd/*"):
            with contextlib.suppress(OSError):  # closed since it was listed
                opened.add(os.path.dirname(os.readlink(fd)))
        return all(os.path.realpath(p) in opened for p in paths)

    def stderr(self):
        return self.rec.stderr()

    def stdout(self):
        return self.rec.stdout()

    def captures(self):
        return self.rec.captures(skip=self._before)

    def wait_for(self, predicate, timeout=30):
        return Recorder.wait_for(self, predicate, timeout)

    def wait_for_output(self, text, timeout=30):
        return Recorder.wait_for_output(self, text, timeout)

    def stop(self):
        raise AssertionError("a shared recorder is stopped by the session: use recorder(own=True)")


_SHARED = {}


@pytest.fixture(scope="session")
def shared_recorder(tmp_path_factory):
    """The session's recorder, started on first use and again if it died (said on stderr)."""
    def get():
        r = _SHARED.get("rec")
        if r is not None and r.proc.poll() is not None:
            sys.stderr.write(f"shared recorder exited ({r.proc.returncode}); starting another: {r.stderr()[-1500:]}\n")
            r = None
        if r is None:
            r = _SHARED["rec"] = Recorder(tmp_path_factory.mktemp("shared-record"))
        return r

    yield get
    if _SHARED.get("rec") is not None:
        _SHARED.pop("rec").stop()


@pytest.fixture
def recorder(request, tmp_path, shared_recorder):
    started = []

    def start(*extra, own=False):
        if not extra and not own:
            made = request.getfixturevalue("sandbox").made if "sandbox" in request.fixturenames else ()
            return SharedRecorderView(shared_recorder(), list(made))
        r = Recorder(tmp_path / f"rec{len(started)}", extra)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


class KernelLog:
    """The test's own, independent reader of the kernel's OOM reports. It follows /dev/kmsg in a
    thread (KmsgFollower): in a storm the kernel's log buffer wraps within seconds."""

    def __init__(self):
        self.follower = KmsgFollower(KmsgReader())
        self.parser = OomReportParser()
        self.reports = []

    @property
    def lost_records(self):
        return self.follower.lost_records

    def read(self):
        for rec in self.follower.take():
            self.reports.extend(self.parser.feed(rec))
        return list(self.reports)

    def report_for(self, pid, timeout=10):
        deadline = time.monotonic() + timeout * TIME_SCALE
        while time.monotonic() < deadline:
            for r in self.read():
                if r.killed and r.killed.pid == pid and r.has_header:
                    return r
            time.sleep(0.1)
        raise AssertionError(f"the kernel printed no full OOM report for pid {pid}")

    def close(self):
        self.follower.close()


@pytest.fixture
def kernel_log():
    log = KernelLog()
    yield log
    log.close()
