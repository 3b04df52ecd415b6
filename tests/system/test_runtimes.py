"""The JVM's own view, read from outside a real JVM (Debian's OpenJDK), against jstat -gc."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from oomscope.runtimes.java import is_java, read_jvm

from ..requires import require_tools

JAVA = shutil.which("java")
JSTAT = shutil.which("jstat")

HOLD = r"""
import java.util.*;
public class Hold {
    public static void main(String[] a) throws Exception {
        List<byte[]> keep = new ArrayList<>();
        for (int i = 0; i < 12; i++) keep.add(new byte[1 << 20]);
        System.out.println("ready " + ProcessHandle.current().pid());
        System.out.flush();
        Thread.sleep(Long.parseLong(a[0]));
        System.out.println(keep.size());
    }
}
"""


@pytest.fixture
def jvm(sandbox, tmp_path):
    require_tools("java", "jstat", "javac", packages={t: "openjdk-17-jdk-headless" for t in ("java", "jstat", "javac")})
    name, path = sandbox(suffix="-jvm", limit=256 << 20)
    (tmp_path / "Hold.java").write_text(HOLD)
    subprocess.run(["javac", "-d", str(tmp_path), str(tmp_path / "Hold.java")], check=True, timeout=120)

    def start(*flags):
        p = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", os.path.join(path, "cgroup.procs"),
                              JAVA, "-Xmx48m", *flags, "-cp", str(tmp_path), "Hold", "30000"],
                             stdout=subprocess.PIPE, text=True)
        started.append(p)
        line = p.stdout.readline()
        assert line.startswith("ready"), line
        return p

    started = []
    yield start
    for p in started:
        p.kill()
        p.wait(timeout=30)


def _jstat(pid):
    out = subprocess.run([JSTAT, "-gc", str(pid)], capture_output=True, text=True, timeout=60, check=True).stdout
    head, values = out.strip().split("\n")[:2]
    return dict(zip(head.split(), (None if v == "-" else float(v) for v in values.split())))


def test_heap_read_from_outside_equals_jstat(jvm):
    p = jvm()
    assert is_java(p.pid)
    for _ in range(3):  # within one GC: the same collection counts on both sides
        before = _jstat(p.pid)
        r = read_jvm(p.pid)
        after = _jstat(p.pid)
        if before["YGC"] == after["YGC"] and before["FGC"] == after["FGC"]:
            break
        time.sleep(0.5)
    m = r.memory
    assert m is not None, r.why_not
    kib = 1024
    assert m.young_gc_count == after["YGC"] and m.full_gc_count == after["FGC"]
    assert abs(m.old_used_bytes - after["OU"] * kib) <= 256 * kib
    assert m.heap_used_bytes >= 12 << 20  # the 12 MiB the program keeps
    assert abs(m.heap_committed_bytes - (after["EC"] + after["S0C"] + after["S1C"] + after["OC"]) * kib) <= 64
    assert abs(m.heap_max_bytes - (48 << 20)) <= 64 and m.vm_args.startswith("-Xmx48m")


def test_no_perf_data_is_said(jvm):
    p = jvm("-XX:-UsePerfData")
    r = read_jvm(p.pid)
    assert r.memory is None and "-XX:-UsePerfData" in r.why_not


def test_a_planted_link_is_not_followed(tmp_path):
    """A process whose /tmp/hsperfdata_<user>/<pid> is a link (to a file it may not read) gets no
    reading: the link is not followed. Shown with this test's own process and a private /tmp."""
    victim = tmp_path / "secret"
    victim.write_bytes(b"\xca\xfe\xc0\xc0" + bytes(64))
    code = ("import os, sys, time\nos.makedirs('/tmp/hsperfdata_root', exist_ok=True)\n"
            "os.symlink(sys.argv[1], f'/tmp/hsperfdata_root/{os.getpid()}')\nprint('ready', flush=True)\ntime.sleep(30)\n")
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          'mount -t tmpfs tmpfs /tmp && exec "$0" -c "$1" "$2"', sys.executable, code, str(victim)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        r = read_jvm(p.pid)
    finally:
        p.kill()
        p.wait(timeout=30)
    # the link itself is looked at (O_PATH|O_NOFOLLOW) and refused, never followed (issue 24)
    assert r.memory is None and "is not a regular file of the process's user" in r.why_not, r.why_not
