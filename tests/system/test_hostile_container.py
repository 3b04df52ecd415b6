"""What a container controls must never stop the recorder (issue 24), against the real recorder
and real kills: a process named java whose /tmp holds a planted hsperfdata file, in a cgroup past
half its limit, where the JVM reader looks. Before the fix its count of spaces (2**62) drove
range() in the sampler thread: no reading of any cgroup on the host from then on."""

import os
import shutil
import struct
import subprocess
import sys
import tempfile

from .conftest import TIME_SCALE

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "hsperfdata", "openjdk-17.hsperfdata")

# Runs as "java" in a private /tmp: plants the file, holds 40 of 64 MiB for 3 s (the reader looks
# at a cgroup's JVMs from half its limit), then grows until killed.
PLANTED = r"""
import os, sys, time
os.makedirs('/tmp/hsperfdata_root', exist_ok=True)
with open(sys.argv[1], 'rb') as f, open(f'/tmp/hsperfdata_root/{os.getpid()}', 'wb') as out:
    out.write(f.read())
held = [bytearray(b'x' * (1 << 20)) for _ in range(40)]
print('ready', flush=True)
time.sleep(3)
while True:
    held.append(bytearray(b'x' * (1 << 20)))
"""


def _planted_file(tmp_path, spaces: int) -> str:
    data = bytearray(open(FIXTURE, "rb").read())
    entry_offset, num = struct.unpack_from("<ii", data, 24)
    pos = entry_offset
    for _ in range(num):
        length, name_off, _v, _t, _f, _u, _var, data_off = struct.unpack_from("<iiiBBBBi", data, pos)
        end = data.index(b"\0", pos + name_off)
        if data[pos + name_off:end] == b"sun.gc.generation.0.spaces":
            struct.pack_into("<q", data, pos + data_off, spaces)
            break
        pos += length
    path = tmp_path / "planted.hsperfdata"
    path.write_bytes(bytes(data))
    return str(path)


def test_a_planted_hsperfdata_file_neither_stops_the_sampler_nor_reaches_the_capture(recorder, sandbox):
    name, path = sandbox(suffix="-planted", limit=64 << 20)
    # outside /tmp, which the process replaces with its own
    here = tempfile.mkdtemp(prefix="oomscope-test-", dir="/var/tmp")
    try:
        _planted_process_is_killed(recorder, name, path, here)
    finally:
        shutil.rmtree(here)


def _planted_process_is_killed(recorder, name, path, here):
    from pathlib import Path
    tmp_path = Path(here)
    java = tmp_path / "java"  # the reader takes a process whose executable is named java for a JVM
    shutil.copy2(os.path.realpath(sys.executable), java)
    rec = recorder()
    p = subprocess.Popen(
        ["/bin/sh", "-c", 'echo $$ > "$1" && exec unshare --mount --propagation private sh -c '
         '"mount -t tmpfs tmpfs /tmp && exec \\"\\$0\\" -c \\"\\$1\\" \\"\\$2\\"" "$2" "$3" "$4"',
         "sh", os.path.join(path, "cgroup.procs"), str(java), PLANTED, _planted_file(tmp_path, 1 << 62)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        p.wait(timeout=60 * TIME_SCALE)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
    assert p.returncode == -9, (p.returncode, p.stderr.read()[-500:])
    ((cpath, data),) = rec.wait_for(lambda c: c["cgroup"]["oom_memcg"] == name and c["victim"]["pid"] == p.pid, timeout=60)
    # the reader looked and said why it could not read the file
    (jvm,) = [r for r in data["runtimes"] if r["pid"] == p.pid]
    assert jvm["why_not"] and "implausible space count" in jvm["why_not"], jvm
    # and the sampler went on: the cgroup was read in the last seconds before the kill
    (tl,) = [t for t in data["timelines"] if t["cgroup"] == name]
    assert tl["points"] and tl["points"][-1]["t_ms"] >= -2000 * TIME_SCALE, tl["points"][-3:]
    assert "no progress" not in rec.stderr()
    # and doctor, asked about this recorder, says its threads make progress
    res = subprocess.run([sys.executable, "-m", "oomscope", "doctor", "--no-load", "-o", os.path.dirname(os.path.dirname(cpath))],
                         capture_output=True, text=True, timeout=60)
    assert "recorder: the recorder (pid" in res.stdout and "threads make progress" in res.stdout, res.stdout
