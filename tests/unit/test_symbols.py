"""The symbolizer (oomscope/symbols.py) and the growth-site estimate (record/sites.py), against
real binaries built here and what a workload can plant: hostile ELF files, perf maps and paths.
Every call that reads hostile input runs within a deadline (a hang fails the test)."""

import os
import random
import shutil
import subprocess

import pytest

from oomscope import symbols
from oomscope.kernel import pagemap
from oomscope.layouts import PageSample
from oomscope.record.sites import choose_period, estimate_sites
from oomscope.symbols import ElfError, ElfSymbols, Symbolizer, parse_maps, parse_perf_map, short_stack_note

from .helpers import within

PID = 4242
SRC = r"""
#include <stdlib.h>
__attribute__((noinline)) int leak_slowly(int n) { volatile char *p = malloc(n); p[0] = 1; return p[0]; }
__attribute__((noinline)) int churn_buffers(int n) { return leak_slowly(n) + 1; }
int main(int argc, char **argv) { return churn_buffers(argc); }
"""


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """(with symbols, stripped) builds of a small C program."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (Debian: gcc)")
    d = tmp_path_factory.mktemp("elf")
    (d / "p.c").write_text(SRC)
    full, stripped = d / "full", d / "stripped"
    subprocess.run([gcc, "-O1", "-fno-omit-frame-pointer", "-Wl,--build-id", "-o", str(full), str(d / "p.c")], check=True)
    subprocess.run([gcc, "-O1", "-s", "-Wl,--build-id", "-o", str(stripped), str(d / "p.c")], check=True)
    return full.read_bytes(), stripped.read_bytes()


def _addr_of(data: bytes, name: str) -> int:
    syms = ElfSymbols.parse(data)
    for i in range(syms.count):
        if symbols._cstr(syms.strtab, syms.name_offs[i]) == name.encode():
            return syms.addrs[i]
    raise AssertionError(f"{name} not in the symbol table")


def test_symbols_of_a_real_binary(binaries):
    full, stripped = binaries
    syms = ElfSymbols.parse(full)
    assert syms.has_symtab and syms.build_id and len(syms.build_id) == 40
    start = _addr_of(full, "leak_slowly")
    assert syms.lookup(start + 3) == ("leak_slowly", 3)
    bare = ElfSymbols.parse(stripped)
    assert not bare.has_symtab and bare.build_id
    assert bare.lookup(start) is None or bare.lookup(start)[0] != "leak_slowly"


def test_truncated_and_flipped_elf_files_raise_elferror_in_time(binaries):
    full, _ = binaries
    rng = random.Random(27)
    cuts = sorted(set([0, 3, 4, 16, 63, 64, 65, 200] + [rng.randrange(len(full)) for _ in range(150)]))
    for n in cuts:
        with within(0.5):
            try:
                ElfSymbols.parse(full[:n])
            except ElfError:
                pass
    for _ in range(300):
        data = bytearray(full)
        for _ in range(rng.randint(1, 12)):
            pos = rng.randrange(min(len(data), 4096) if rng.random() < 0.7 else len(data))
            data[pos] = rng.randrange(256)
        with within(0.5):
            try:
                s = ElfSymbols.parse(bytes(data))
                s.lookup(rng.randrange(1 << 32))
            except ElfError:
                pass


def test_headers_that_claim_everything(binaries):
    import struct
    full, _ = binaries
    for field, fmt, value in [(40, "<Q", 1 << 62), (60, "<H", 0xFFFF), (58, "<H", 0xFFFF), (32, "<Q", 1 << 63),
                              (56, "<H", 0xFFFF)]:
        data = bytearray(full)
        struct.pack_into(fmt, data, field, value)
        with within(0.5):
            with pytest.raises(ElfError):
                ElfSymbols.parse(bytes(data))
    with within(0.5):
        with pytest.raises(ElfError):
            ElfSymbols.parse(b"\x7fELF\x01\x01" + b"\0" * 58)  # 32-bit: not read


def test_parse_maps_skips_what_is_not_a_mapping():
    text = ("00400000-00452000 r-xp 00000000 fd:01 1234 /usr/bin/a b (deleted)\n"
            "zz-yy r-xp 0 0 0\n"
            "7f00-7e00 r-xp 00000000 00:00 0\n"
            "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
            "\x00\xff garbage\n")
    maps = parse_maps(text)
    assert [m.path for m in maps] == ["/usr/bin/a b (deleted)", ""]
    assert maps[0].inode == 1234 and maps[0].offset == 0


def test_hostile_perf_maps_in_time():
    rng = random.Random(7)
    junk = [b"", b"\n" * 100000, b"0x10 0x10 ok\n" + b"A" * (1 << 20), b"ffffffffffffffff 2 wrap\n",
            b"-10 10 neg\n0 10 zero\n10 0 empty\n", bytes(rng.randrange(256) for _ in range(200000)),
            b"1 1 x\n" * 600000, b"1" * 40 + b" 10 long\n", b"10 10 " + "é".encode() * 1000 + b"\n"]
    for data in junk:
        with within(1.0):
            pm = parse_perf_map(data)
            pm.lookup(0x11)
    pm = parse_perf_map(b"1000 100 jitted::a\n0x2000 0x10 b c d\nnot a line\n")
    assert pm.lookup(0x1010) == ("jitted::a", 0x10)
    assert pm.lookup(0x2005) == ("b c d", 5)
    assert pm.lookup(0x2010) is None
    big = parse_perf_map(b"1 1 x\n" * 600000)
    assert big.truncated and len(big.names) == symbols.MAX_PERF_MAP_LINES


def _fake_proc(tmp_path, binary: bytes, maps_path="/app/bin/prog", perf=None):
    base = tmp_path / "proc" / str(PID)
    root = base / "root"
    (root / "app" / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    prog = root / "app" / "bin" / "prog"
    prog.write_bytes(binary)
    ino = prog.stat().st_ino
    (base / "status").write_text(f"Name:\tprog\nNSpid:\t{PID}\t7\n")
    (base / "maps").write_text(
        f"00400000-00500000 r-xp 00000000 fd:01 {ino} {maps_path}\n"
        f"7f0000000000-7f0000100000 r-xp 00000000 00:00 0 \n")
    if perf is not None:
        (root / "tmp" / "perf-7.map").write_bytes(perf)
    return str(tmp_path / "proc"), root, ino


def test_symbolizer_on_a_fake_process(tmp_path, binaries):
    full, _ = binaries
    proc, root, _ino = _fake_proc(tmp_path, full, perf=b"7f0000000100 100 LuaJIT:trace_7\n")
    sym = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
    assert sym.begin(PID)
    start = _addr_of(full, "leak_slowly")
    syms = ElfSymbols.parse(full)
    # the fake maps map the whole file from offset 0 at 0x400000: the address of a file offset
    off, _size, vaddr = next(s for s in syms.segments if s[2] <= start < s[2] + s[1])
    file_off = start - vaddr + off
    frames = sym.frames(PID, [0x400000 + file_off + 2, 0x7F0000000150, 0x7F0000000F00, 0x900000])
    assert frames[0].function == "leak_slowly"
    assert frames[1].text() == "LuaJIT:trace_7" and frames[1].module == "[jit]"
    assert frames[2].function is None and "perf map" in frames[2].why
    assert "no mapping" in frames[3].why


def test_symbolizer_refuses_planted_files(tmp_path, binaries):
    full, _ = binaries
    proc, root, ino = _fake_proc(tmp_path, full)
    prog = root / "app" / "bin" / "prog"
    sym = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
    # a link in the path: never followed
    os.rename(root / "app" / "bin", root / "app" / "real")
    os.symlink("real", root / "app" / "bin")
    with within(1.0):
        sym.begin(PID)
        f = sym.frames(PID, [0x400100])[0]
    assert f.function is None and f.why and "not opened" in f.why
    os.unlink(root / "app" / "bin")
    os.rename(root / "app" / "real", root / "app" / "bin")
    # a FIFO where the file was: looked at with O_PATH, never opened (no writer: an open would block)
    prog.unlink()
    os.mkfifo(prog)
    sym = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
    with within(1.0):
        sym.begin(PID)
        f = sym.frames(PID, [0x400100])[0]
    assert f.function is None and "regular" in f.why
    # another file of the same name: not the inode the process maps
    prog.unlink()
    prog.write_bytes(full)
    if prog.stat().st_ino != ino:
        sym = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
        sym.begin(PID)
        assert "replaced" in sym.frames(PID, [0x400100])[0].why


def test_stripped_binary_is_said(tmp_path, binaries):
    _, stripped = binaries
    proc, _root, _ino = _fake_proc(tmp_path, stripped)
    sym = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
    sym.begin(PID)
    f = sym.frames(PID, [0x400100])[0]
    assert f.function is None or f.why is None
    if f.function is None:
        assert "stripped" in f.why or "no symbol" in f.why


def test_a_gone_process_keeps_its_last_maps(tmp_path, binaries):
    full, _ = binaries
    proc, _root, _ino = _fake_proc(tmp_path, full)
    sym = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
    assert sym.begin(PID)
    os.unlink(os.path.join(proc, str(PID), "maps"))
    assert not sym.begin(PID)
    assert sym.frames(PID, [0x400100])[0].module == "prog"


def test_a_gone_process_is_named_with_the_symbols_read_while_it_lived(tmp_path, binaries):
    """A limit hitter's stack is named at the kill, its process gone: /proc/<pid>/root with it
    (the lab's Go program's hitter was 'leaklab+0x5f099' before)."""
    full, _ = binaries
    proc, root, _ino = _fake_proc(tmp_path, full)
    sym = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
    assert sym.begin(PID)
    start = _addr_of(full, "leak_slowly")
    off, _size, vaddr = next(s for s in ElfSymbols.parse(full).segments if s[2] <= start < s[2] + s[1])
    addr = 0x400000 + start - vaddr + off + 2
    assert sym.frames(PID, [addr])[0].function == "leak_slowly"
    shutil.rmtree(root)  # gone: its root and files with it
    os.unlink(os.path.join(proc, str(PID), "maps"))
    assert not sym.begin(PID)
    assert sym.frames(PID, [addr])[0].function == "leak_slowly"
    fresh = Symbolizer(proc=proc, debug_roots=(str(tmp_path / "nodebug"),))
    assert "gone" in fresh.frames(PID, [addr])[0].why  # never read while it lived: said so


def test_short_stacks_are_said():
    f = symbols.Frame(0x10, "memset", "libc.so.6", 0)
    assert "frame pointers" in short_stack_note([f])
    assert short_stack_note([f, symbols.Frame(0x20, "main", "a", 0), symbols.Frame(0x30, "__libc_start_call_main")]) is None


def test_pagemap_entries():
    present = (1 << 63) | 123
    assert pagemap.state_of(present) == pagemap.ANON
    assert pagemap.state_of(present | (1 << 61)) == pagemap.FILE
    assert pagemap.state_of(1 << 62) == pagemap.SWAP
    assert pagemap.state_of(0) == pagemap.ABSENT
    assert pagemap.parse_entries(b"\x01" * 17) == [0x0101010101010101] * 2
    runs = pagemap._runs(list(range(0, 100000, 100)), 4096)
    assert all(n <= pagemap.MAX_RUN_PAGES for _s, n in runs)


def test_pagemap_of_this_process():
    import mmap
    m = mmap.mmap(-1, 16 << 12, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # shared anonymous pages read as FILE
    import ctypes
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    for i in range(0, 8 << 12, 4096):
        m[i] = 1
    got = pagemap.residency(os.getpid(), [base + i * 4096 for i in range(16)])
    if not got:
        pytest.skip("pagemap not readable here")
    assert [got[base + i * 4096] for i in range(8)] == [pagemap.ANON] * 8
    assert all(got[base + i * 4096] == pagemap.ABSENT for i in range(8, 16))
    del base
    m.close()


def _pages(tgid, stack, pages, last_ns=100, hits=1):
    return [PageSample(tgid, p, stack, -1, hits, last_ns) for p in pages]


def test_estimate_ranks_what_is_held_not_what_faulted():
    leak = _pages(1, 10, [0x10000 + i * 4096 for i in range(20)])
    churn = _pages(1, 11, [0x90000 + i * 4096 for i in range(60)], hits=3)
    reused = _pages(1, 12, [0x200000 + i * 4096 for i in range(30)], last_ns=50)  # mapped again at 60
    states = {1: {p.page: pagemap.ANON for p in leak + reused}}
    states[1].update({p.page: pagemap.ABSENT for p in churn})
    counts = {(1, 10, -1): 20, (1, 11, -1): 180, (1, 12, -1): 30}
    sites, dropped = estimate_sites(leak + churn + reused, counts, states, {1: [(0x200000, 30 * 4096, 60)]}, 64, 4096)
    assert sites[0].user_stack == 10 and sites[0].held_bytes == 20 * 64 * 4096
    by = {s.user_stack: s for s in sites}
    assert by[11].held_bytes == 0 and by[11].faults_sampled == 180 and by[11].pages_refaulted == 60
    assert by[12].held_bytes == 0 and dropped == 30


def test_period_grows_with_the_limit():
    assert choose_period(64 << 20) == 64
    assert choose_period(8 << 30) >= 512
    assert choose_period(1 << 50) == 8192


def test_the_kernel_period_is_scaled_by_the_duty_down_to_its_floor():
    from oomscope.record.sites import MIN_KERNEL_PERIOD, kernel_period_for

    assert kernel_period_for(64, 1.0) == 64
    assert kernel_period_for(64, 0.2) == MIN_KERNEL_PERIOD  # 13 would sample a storm 2.5x as often
    assert kernel_period_for(2048, 0.2) == 410  # as many samples as a hook on all the time
    assert kernel_period_for(8, 0.2) == 8  # never longer than the period asked for
    assert kernel_period_for(64, 0.0) == MIN_KERNEL_PERIOD


def test_the_post_mortem_shows_the_sites_escaped():
    """The sites' frames and names are the workload's: escaped on the page, no script, in the JSON."""
    import json

    from oomscope.model import AllocationSampling, AllocationSite, LimitHitter
    from oomscope.report.formats import render_json
    from oomscope.report.render import render_html

    from .helpers import capture_from_fixture

    names = sorted(os.listdir(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "kmsg")))
    cap, _rep = capture_from_fixture(names[0])
    evil = "<script>alert(1)</script>"
    cap.allocation_sites = [
        AllocationSite([evil, "main"], 48 << 20, "page_faults", pid=7, comm="<b>x</b>", faults_sampled=12, pages_sampled=12,
                       pages_resident=12, unsymbolized=[f"{evil}: stripped"]),
        AllocationSite(["churn_buffers", "main"], 0, "page_faults", pid=7, comm="x", faults_sampled=90)]
    cap.allocation_sampling = AllocationSampling(64, 4096, -1500.0, -200.0, 102, 3, "bytes held = ...", ["a note"])
    cap.limit_hitters = [LimitHitter(7, 7, "x", 1.5, 0.5, 3, -1.0, [evil], ["try_charge_memcg"])]
    page = render_html(cap)
    assert "Which code held the memory" in page and "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<svg class=\"flame wide\"" in page and "Who hit the limit" in page
    out = json.loads(render_json(cap))
    assert out["allocation_sites"][0]["frames"][0] == evil and out["allocation_sites"][0]["bytes"] == 48 << 20
    assert out["limit_hitters"][0]["stall_ms"] == 1.5 and out["allocation_sampling"]["period"] == 64
    # no huge pages at the kill: nothing said of them; with some, the rows' under-count is said
    assert "transparent huge pages at the kill" not in page
    cap.at_kill.memory_stat = dict(cap.at_kill.memory_stat, anon_thp=32 << 20)
    assert "32.0 MiB of the anonymous memory was in transparent huge pages at the kill" in render_html(cap)


class _FakeProbes:
    """AllocSiteProbes' interface, without BPF."""

    def __init__(self):
        self.attached, self.period, self.mode = False, 0, "fake"
        self.watched, self.hitters = set(), []
        self.pages, self.counts = [], {}

    def attach(self, period):
        self.attached, self.hooked, self.period = True, True, period
        return 0.001

    def detach(self):
        self.attached = self.hooked = False
        return 0.002

    hooked = False
    toggles = 0

    def pause(self):
        self.hooked = False
        self.toggles += 1
        return 0.0

    def resume(self):
        self.hooked = True
        self.toggles += 1
        return 0.0

    def watch(self, tgids):
        self.watched = set(tgids)

    def unwatch(self, tgids):
        pass

    def forked(self):
        return {}

    def mapped(self):
        return []

    def read(self):
        from oomscope.layouts import SiteRead
        return SiteRead(dict(self.counts), list(self.pages), {}, list(self.hitters))

    def read_hitters(self):
        return list(self.hitters), {}

    def stacks(self, ids):
        return {}

    forgotten: set = set()

    def forget_pids(self, tgids, read):
        self.forgotten = self.forgotten | set(tgids)
        return 0

    def kernel_names(self, addrs):
        return [hex(a) for a in addrs]


def test_sampling_attaches_near_a_limit_only_and_a_kill_gets_the_check_before_it():
    from oomscope.record.sites import SiteSampler

    now = [1_000_000_000]
    near = []
    probes = _FakeProbes()
    s = SiteSampler(probes, lambda: list(near), lambda cg: {os.getpid()}, clock=lambda: now[0], hold_s=5.0,
                    check_interval_s=0.5, duty_on_s=1.0, duty_cycle_s=1.0)
    s.tick()
    assert not probes.attached  # nothing near a limit: nothing attached
    near.append(("/a", 70, 100))
    s.tick()
    assert not probes.attached  # 70%: below the attach ratio
    near[:] = [("/a", 85, 100, 0.0)]
    s.tick()
    assert not probes.attached  # near, but not growing: page cache held at the limit keeps no hook on
    near[:] = [("/a", 85, 100, 1.0)]
    s.tick()
    assert probes.attached and probes.watched == {os.getpid()} and probes.period == 64
    probes.pages = [PageSample(os.getpid(), 0x1000, 5, -1, 1, 10)]
    probes.counts = {(os.getpid(), 5, -1): 1}
    for step in (600_000_000, 1_200_000_000):
        now[0] = 1_000_000_000 + step
        s.tick()
    kill = 1_000_000_000 + 1_000_000_000
    got = s.for_kill("/a", kill)
    assert got is not None and got.t_ns <= kill and got.sites and got.sites[0].faults_sampled == 1
    assert s.for_kill("/b", kill) is None and s.for_kill("/a", 1_000_000_000) is None
    assert s.for_kill("/a/child", kill) is got or s.for_kill("/a/child", kill).t_ns == got.t_ns
    near.clear()
    now[0] += 4_000_000_000
    s.tick()
    assert probes.attached  # held for hold_s after the last cgroup near its limit
    now[0] += 2_000_000_000
    s.tick()
    assert not probes.attached and s.attaches == 1


def _sampler_after_a_check():
    """A SiteSampler on fake probes whose check has kept a result, and its clock (ns, mutable)."""
    from oomscope.record.sites import SiteSampler

    now = [1_000_000_000]
    probes = _FakeProbes()
    s = SiteSampler(probes, lambda: [("/a", 85, 100, 1.0)], lambda cg: {os.getpid()}, clock=lambda: now[0],
                    check_interval_s=0.5, duty_on_s=1.0, duty_cycle_s=1.0)
    s.tick()
    probes.pages = [PageSample(os.getpid(), 0x1000, 5, -1, 1, 10)]
    probes.counts = {(os.getpid(), 5, -1): 1}
    now[0] += 600_000_000
    s.tick()  # a check: its result is kept
    return s, now


class _ProbesHeld:
    """``with _ProbesHeld(lock):`` another thread holds ``lock`` (a check in progress) until the end."""

    def __init__(self, lock):
        import threading

        self.held, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(lock,))

    def _hold(self, lock):
        with lock:
            self.held.set()
            self.release.wait(10)

    def __enter__(self):
        self.thread.start()
        self.held.wait(5)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join()


def test_a_kill_does_not_wait_for_a_check_in_progress():
    """The kill path takes the limit hitters of the last check when the sites thread holds the
    probes (a check: maps, pagemap, naming), instead of waiting for it: in a storm that wait was
    most of kill-to-post-mortem p95 (up to 480 ms)."""
    import time as _time

    from oomscope.record.sites import KILL_WAIT_S

    s, now = _sampler_after_a_check()
    kill = now[0] + 100_000_000
    free = s.for_kill("/a", kill)
    assert free is not None and not any("busy" in n for n in free.notes)
    with _ProbesHeld(s._work):
        t0 = _time.monotonic()
        busy = s.for_kill("/a", kill)
        took = _time.monotonic() - t0
    assert busy is not None and busy.t_ns == free.t_ns and busy.sites == free.sites
    assert any("as of the last check, 100 ms before the kill" in n for n in busy.notes)
    assert took < KILL_WAIT_S + 0.5  # not the 10 s the check held on


class _RecordingLock:
    """A lock that says how each acquire asked: (blocking, timeout)."""

    def __init__(self, lock):
        self.lock, self.asked = lock, []

    def acquire(self, blocking=True, timeout=-1):
        self.asked.append((blocking, timeout))
        return self.lock.acquire(blocking, timeout)

    def release(self):
        self.lock.release()

    def __enter__(self):
        self.lock.acquire()
        return self

    def __exit__(self, *exc):
        self.lock.release()


def test_in_a_storm_the_kills_after_one_that_waited_in_vain_do_not_wait():
    """One kill waits KILL_WAIT_S for a check in progress; the kills of the next
    KILL_NO_WAIT_AFTER_NS take the last check at once (each paid the whole wait before: 1.1 s of
    166 kills' loop time); after it, a kill waits again, and a free probe is taken as before."""
    import threading

    from oomscope.record.sites import KILL_NO_WAIT_AFTER_NS, KILL_WAIT_S

    s, now = _sampler_after_a_check()
    lock = s._work = _RecordingLock(threading.Lock())
    with _ProbesHeld(lock):
        kills = []
        for step in (0, 50_000_000, 100_000_000, KILL_NO_WAIT_AFTER_NS + 10_000_000):
            now[0] += step
            kills.append(s.for_kill("/a", now[0]))
            assert kills[-1] is not None and any("as of the last check" in n for n in kills[-1].notes)
    assert lock.asked == [(True, KILL_WAIT_S), (False, -1), (False, -1), (True, KILL_WAIT_S)]
    free = s.for_kill("/a", now[0])  # the probes free again: taken at once, within the window too
    assert free is not None and not any("as of the last check" in n for n in free.notes)
    assert lock.asked[-1] == (False, -1)
    now[0] += 10_000_000
    s.for_kill("/a", now[0])  # a kill that got the probes ends the storm's window
    assert lock.asked[-1] == (True, KILL_WAIT_S)


def test_the_fault_hook_is_on_part_of_each_second_and_the_estimate_scales_by_its_time_on():
    from oomscope.record.sites import SiteSampler

    now = [10_000_000_000]
    probes = _FakeProbes()
    s = SiteSampler(probes, lambda: [("/a", 85 << 20, 100 << 20, None)], lambda cg: {os.getpid()}, clock=lambda: now[0],
                    check_interval_s=0.5, duty_on_s=0.2, duty_cycle_s=1.0)
    s.tick()
    # 64 faults a sample with the hook on all the time: 64 x 0.2 with it on a fifth of the time would
    # be 13, below the floor a sample's own cost sets (record/sites.py MIN_KERNEL_PERIOD)
    assert probes.attached and probes.hooked and probes.period == 32
    on = off = 0
    probes.pages = [PageSample(os.getpid(), 0x1000, 5, -1, 1, 10)]
    for _ in range(300):  # 3 s in the sampler's ticks of 10 ms
        now[0] += 10_000_000
        s.tick()
        on, off = (on + 1, off) if probes.hooked else (on, off + 1)
    assert 50 <= on <= 70 and probes.toggles >= 5  # about 0.2 of 3 s on, toggled each cycle
    assert 0 < s.wait_s() <= 0.1
    # the time on (0.6 s of 3 s) makes each sample stand for 32 / 0.2 faults
    assert 150 <= s.stands_for(now[0]) <= 170
    got = s.for_kill("/a", now[0])
    assert got is not None and got.period == round(s.stands_for(got.t_ns))
    # the test pages are pagemap-read for real: this process's page 0x1000 is not mapped, so not held
    assert got.sites[0].held_bytes == 0


def test_a_duty_of_the_whole_cycle_keeps_the_hook_on():
    from oomscope.record.sites import SiteSampler

    now = [10_000_000_000]
    probes = _FakeProbes()
    s = SiteSampler(probes, lambda: [("/a", 85 << 20, 100 << 20, None)], lambda cg: {os.getpid()}, clock=lambda: now[0],
                    duty_on_s=1.0, duty_cycle_s=1.0)
    s.tick()
    for _ in range(30):
        now[0] += 100_000_000
        s.tick()
    assert probes.hooked and probes.toggles == 0 and probes.period == 64 and s.stands_for(now[0]) == 64


def test_the_duty_from_the_environment_is_bounded():
    from oomscope.record.sites import DUTY_CYCLE_S, DUTY_ON_S, duty_from_env

    assert duty_from_env({"OOMSCOPE_SITES_DUTY": "1/1"}) == (1.0, 1.0)
    for bad in ("", "x", "1", "2/1", "0/1", "nan/1", "1/1e9", "1/2/3"):
        assert duty_from_env({"OOMSCOPE_SITES_DUTY": bad}) == (DUTY_ON_S, DUTY_CYCLE_S)


def test_named_stacks_of_processes_no_longer_watched_are_let_go_while_attached():
    """While some cgroup stays near its limit, sampling stays attached for good (a crashlooping
    pod): the stacks named for each killed process must go with it, not pile up until a detach
    (the soak of 2026-12-06: +13 MiB of the recorder's anonymous memory in 20 minutes)."""
    from oomscope.record.sites import SiteSampler

    class Probes(_FakeProbes):
        def stacks(self, ids):
            return {i: [0x1000 + i] for i in ids}

    me, parent = os.getpid(), os.getppid()
    now = [10_000_000_000]
    members = [{me}]
    probes = Probes()
    s = SiteSampler(probes, lambda: [("/a", 85 << 20, 100 << 20, None)], lambda cg: set(members[0]),
                    clock=lambda: now[0], check_interval_s=0.5, duty_on_s=1.0, duty_cycle_s=1.0)
    s.tick()
    assert probes.attached
    probes.pages = [PageSample(me, 0x1000, 5, -1, 1, 10)]
    probes.counts = {(me, 5, -1): 1}
    now[0] += 600_000_000
    s.tick()
    assert {pid for pid, _stack in s._frames} == {me}
    # the first process is gone (killed), its cgroup's new process is sampled
    members[0] = {parent}
    probes.pages = [PageSample(parent, 0x2000, 7, -1, 1, 10)]
    probes.counts = {(parent, 7, -1): 1}
    now[0] += 600_000_000
    probes.counts[(me, 5, -1)] = 1  # still in the kernel's maps: the sampler asks for it to go
    s.tick()
    assert probes.attached and {pid for pid, _stack in s._frames} == {parent}
    assert probes.forgotten == {me}


def test_the_sites_thread_sleeps_while_held_with_nothing_near():
    """Attached, then no cgroup near its limit for less than hold_s (a victim killed, its restart
    not yet grown): the hook's cycle goes on and the thread sleeps between toggles; before, the
    next toggle stayed in the past and wait_s() was 0 (a busy loop: 15-20% of a core in the soak)."""
    from oomscope.record.sites import SiteSampler

    now = [10_000_000_000]
    near = [("/a", 85 << 20, 100 << 20, None)]
    probes = _FakeProbes()
    s = SiteSampler(probes, lambda: list(near), lambda cg: {os.getpid()}, clock=lambda: now[0], hold_s=5.0,
                    duty_on_s=0.2, duty_cycle_s=1.0)
    s.tick()
    assert probes.attached
    near.clear()
    waits = []
    for _ in range(40):  # 4 s of the hold, each tick after the wait it asked for (at least 10 ms)
        now[0] += max(10_000_000, int(s.wait_s() * 1e9))
        s.tick()
        waits.append(s.wait_s())
    assert probes.attached and min(waits) > 0, waits
    assert probes.toggles >= 4  # the duty cycle went on during the hold


def test_a_kill_names_kernel_frames_only_from_what_the_sites_thread_named():
    """A kernel address not named yet is not named in the kill's path (a pass over /proc/kallsyms,
    54-390 ms in a storm, in record's loop: issue 29): shown as its address with a note, and named
    by the sites thread at its next tick for the kills after it."""
    from oomscope.layouts import Hitter as ReadHitter
    from oomscope.record.sites import SiteSampler

    class Named(_FakeProbes):
        passes = 0

        def read_hitters(self):
            return list(self.hitters), {7: [0xffff0010, 0xffff0020, 0xffff0030]}

        def kernel_names(self, addrs):  # 0xffff0030: in no symbol of /proc/kallsyms
            self.passes += 1
            return [{0xffff0010: "try_charge_memcg", 0xffff0020: "bpf_prog_abc"}.get(a, hex(a)) for a in addrs]

    now = [1_000_000_000]
    probes = Named()
    s = SiteSampler(probes, lambda: [("/a", 85, 100, 1.0)], lambda cg: {os.getpid()}, clock=lambda: now[0],
                    check_interval_s=0.5, duty_on_s=1.0, duty_cycle_s=1.0)
    s.tick()
    now[0] += 600_000_000
    s.tick()  # a check, with no hitter yet
    probes.hitters = [ReadHitter(os.getpid(), os.getpid(), "app", 5_000_000, 2_000_000, 3, now[0], -1, 7)]
    got = s.for_kill("/a", now[0] + 1)
    assert probes.passes == 0  # nothing named in the kill's path
    h = got.hitters[0]
    assert h.kernel_frames == ["0xffff0010", "0xffff0020", "0xffff0030"]
    assert any("not named yet at the kill" in n for n in h.notes)
    s.tick()  # the sites thread names what the kill met
    assert probes.passes == 1
    later = s.for_kill("/a", now[0] + 2)
    assert later.hitters[0].kernel_frames == ["try_charge_memcg", "0xffff0030"]  # the probe's own frame left out, as before
    assert not any("not named yet" in n for n in later.hitters[0].notes)  # one kallsyms does not name is not asked again
    s.tick()
    assert probes.passes == 1
