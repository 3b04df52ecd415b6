"""The JVM reader against what a container can plant in its own /tmp (issue 24): each test failed
before its fix. The process's tree is a folder laid out like /proc/<pid> (``read_jvm``'s ``proc``
argument), so no JVM and no root are needed."""

import os
import struct
import threading
import time

import pytest

from oomscope.runtimes import java
from oomscope.runtimes.hsperfdata import (HsperfdataError, MAX_ENTRIES, MAX_SPACES, jvm_memory, memory_flags,
                                          parse_counters)

HERE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "hsperfdata")
PID = 4242


def _fixture(name="openjdk-17.hsperfdata") -> bytes:
    with open(os.path.join(HERE, name), "rb") as f:
        return f.read()


def _proc(tmp_path, uid=None):
    """A fake /proc/<PID> whose root holds an empty /tmp; returns (proc, the root's /tmp)."""
    uid = os.getuid() if uid is None else uid
    base = tmp_path / "proc" / str(PID)
    (base / "root" / "tmp").mkdir(parents=True)
    (base / "status").write_text(f"Name:\tjava\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nNSpid:\t{PID}\n")
    return str(tmp_path / "proc"), base / "root" / "tmp"


def _set_long(data: bytes, name: str, value: int) -> bytes:
    """The file with the long counter ``name`` set to ``value`` (found by walking its entries)."""
    out = bytearray(data)
    order = "<" if data[4] == 1 else ">"
    entry_offset, num = struct.unpack_from(order + "ii", data, 24)
    pos = entry_offset
    for _ in range(num):
        length, name_off, _vlen, _t, _f, _u, _v, data_off = struct.unpack_from(order + "iiiBBBBi", data, pos)
        end = data.index(b"\0", pos + name_off)
        if data[pos + name_off:end].decode() == name:
            struct.pack_into(order + "q", out, pos + data_off, value)
            return bytes(out)
        pos += length
    raise KeyError(name)


# --- the counters: a planted count must not drive a loop -------------------------------------

@pytest.mark.parametrize("spaces", [1 << 62, 1 << 31, MAX_SPACES + 1, -1])
def test_a_planted_space_count_is_refused_at_once(spaces):
    data = _set_long(_fixture(), "sun.gc.generation.0.spaces", spaces)
    counters = parse_counters(data)
    started = time.monotonic()
    with pytest.raises(HsperfdataError, match="space"):
        jvm_memory(counters)
    assert time.monotonic() - started < 0.5  # before the fix: range(2**62) never ended


def test_a_real_files_spaces_are_within_the_bound():
    for name in ("openjdk-17.hsperfdata", "temurin-25.hsperfdata"):
        c = parse_counters(_fixture(name))
        assert 0 < c["sun.gc.generation.0.spaces"] <= MAX_SPACES and 0 < c["sun.gc.generation.1.spaces"] <= MAX_SPACES


def test_parsing_has_a_time_budget():
    """The most entries a file may declare, each as small as an entry can be, parse within the
    budget or give the project's error: never more than a few tens of ms."""
    data = bytearray(_fixture())
    order = "<" if data[4] == 1 else ">"
    entry_offset = struct.unpack_from(order + "i", data, 24)[0]
    one = struct.pack(order + "iiiBBBBi", 32, 20, 0, ord("J"), 0, 0, 0, 24) + b"x\0\0\0" + struct.pack(order + "q", 7)
    body = one * MAX_ENTRIES
    data = bytes(data[:entry_offset]) + body
    data = data[:8] + struct.pack(order + "i", len(data)) + data[12:]
    data = data[:28] + struct.pack(order + "i", len(body) // len(one)) + data[32:]
    started = time.monotonic()
    try:
        assert len(parse_counters(data, budget_s=0.02)) == 1  # every entry has the same name
    except HsperfdataError as exc:
        assert "took longer than 20 ms" in str(exc)
    assert time.monotonic() - started < 0.2
    # past the bound, the count alone refuses the file
    data = data[:28] + struct.pack(order + "i", MAX_ENTRIES + 1) + data[32:]
    with pytest.raises(HsperfdataError, match="entry count"):
        parse_counters(data)


# --- the JVM's arguments: only the memory flags are kept --------------------------------------

def test_only_memory_flags_are_kept_from_the_jvms_arguments():
    args = ("-Xmx512m -Xms64M -XX:MaxRAMPercentage=75.0 -XX:+AlwaysPreTouch -XX:MaxDirectMemorySize=1g "
            "-Dsecret.password=hunter2 -javaagent:/opt/agent.jar=token=abc -XX:OnOutOfMemoryError=curl_x "
            "-Xmx$(cat /secret) -XX:MaxMetaspaceSize=128m -Dapi.key=-Xmx1g -XX:+UseG1GC")
    kept = memory_flags(args)
    assert kept == ("-Xmx512m -Xms64M -XX:MaxRAMPercentage=75.0 -XX:+AlwaysPreTouch -XX:MaxDirectMemorySize=1g "
                    "-XX:MaxMetaspaceSize=128m -XX:+UseG1GC")
    for secret in ("hunter2", "token", "abc", "curl", "secret", "api.key"):
        assert secret not in kept
    assert memory_flags(None) is None and memory_flags("-Dpassword=x") == ""


def test_the_capture_never_holds_a_secret_from_java_tool_options():
    """JAVA_TOOL_OPTIONS reaches java.rt.vmArgs; what the reader returns keeps the memory flags only."""
    data = _fixture()
    m = jvm_memory(parse_counters(data))
    assert m.vm_args == "-Xmx32m"
    counters = parse_counters(data)
    counters["java.rt.vmArgs"] = "-Dsecret.password=hunter2 -Xmx32m -XX:NativeMemoryTracking=summary"
    assert jvm_memory(counters).vm_args == "-Xmx32m -XX:NativeMemoryTracking=summary"


# --- the reader: no effects, bounded work ---------------------------------------------------------

def test_a_fifo_planted_as_the_file_is_never_opened(tmp_path):
    """Opening a device or a FIFO can have effects (a watchdog, a tape; a FIFO's writer wakes):
    the file is looked at through O_PATH first. A writer blocked on the FIFO shows whether the
    reader opened it."""
    proc, tmp = _proc(tmp_path)
    (tmp / "hsperfdata_app").mkdir()
    fifo = tmp / "hsperfdata_app" / str(PID)
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer():
        fd = os.open(fifo, os.O_WRONLY)  # blocks until someone opens the read end
        opened.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    r = java.read_jvm(PID, proc=proc)
    assert r.memory is None and "not a regular file" in r.why_not
    assert not opened.wait(0.3), "read_jvm opened the FIFO"
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # release the writer
    t.join(2)
    os.close(fd)


def test_a_real_file_is_still_read(tmp_path):
    proc, tmp = _proc(tmp_path)
    (tmp / "hsperfdata_app").mkdir()
    (tmp / "hsperfdata_app" / str(PID)).write_bytes(_fixture())
    r = java.read_jvm(PID, proc=proc)
    assert r.memory is not None and r.memory.vm_args == "-Xmx32m", r.why_not
    assert r.folder == "hsperfdata_app"
    # the folder found is remembered by the caller and tried first next time
    assert java.read_jvm(PID, proc=proc, folder="hsperfdata_app").memory is not None


def test_a_file_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to give the file to another user (chown)")
    proc, tmp = _proc(tmp_path, uid=0)
    (tmp / "hsperfdata_app").mkdir()
    f = tmp / "hsperfdata_app" / str(PID)
    f.write_bytes(_fixture())
    os.chown(f, 12345, 12345)
    r = java.read_jvm(PID, proc=proc)
    assert r.memory is None and "not a regular file of the process's user" in r.why_not


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_thousands_of_planted_folders_cost_bounded_work_and_no_descriptors(tmp_path):
    """Before: every hsperfdata_* folder was tried and its descriptor kept until the end (3,000
    reached the descriptor limit; 20,000 cost 72 ms a read)."""
    proc, tmp = _proc(tmp_path)
    for i in range(3000):
        (tmp / f"hsperfdata_x{i:05d}").mkdir()
    (tmp / "hsperfdata_zz").mkdir()
    (tmp / "hsperfdata_zz" / str(PID)).write_bytes(_fixture())
    before = _open_fds()
    seen = []
    real_open = os.open

    def counting_open(*a, **kw):
        fd = real_open(*a, **kw)
        seen.append(_open_fds())
        return fd

    java.os.open = counting_open
    try:
        r = java.read_jvm(PID, proc=proc)
    finally:
        java.os.open = real_open
    assert max(seen) - before <= 8  # never more than a handful open at once
    assert _open_fds() == before
    assert r.memory is None and f"more than {java.MAX_FOLDERS}" in r.why_not
    assert java.read_jvm(PID, proc=proc, folder="hsperfdata_zz").memory is not None


def test_a_huge_tmp_is_not_listed_to_its_end(tmp_path):
    proc, tmp = _proc(tmp_path)
    for i in range(java.MAX_TMP_ENTRIES + 50):
        (tmp / f"f{i}").touch()
    started = time.monotonic()
    r = java.read_jvm(PID, proc=proc)
    assert r.memory is None and "entries" in r.why_not
    assert time.monotonic() - started < 0.5


def test_maps_are_read_only_up_to_a_bound(tmp_path):
    base = tmp_path / "proc" / str(PID)
    base.mkdir(parents=True)
    (base / "exe").symlink_to("/usr/bin/python3")
    (base / "maps").write_bytes(b"x" * (java.MAX_MAPS_BYTES + 100) + b" /usr/lib/jvm/lib/server/libjvm.so\n")
    assert java.is_java(PID, proc=str(tmp_path / "proc")) is False
    (base / "maps").write_bytes(b"7f00-7f01 r-xp 0 0 0 /usr/lib/jvm/lib/server/libjvm.so\n")
    assert java.is_java(PID, proc=str(tmp_path / "proc")) is True
