"""The Go reader (oomscope/runtimes/go.py) against what a workload can plant in its own memory: a
fake /proc/<pid> whose exe is a real Go binary built here (by each Go of goruntime.py's table:
go_programs.py), whose maps say what is mapped and whose mem is a sparse file laid out at the
process's addresses, in that Go's layout. No process, no root. Every reading answers within its
deadline with figures, or with why not."""

import os
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from oomscope.runtimes import go
from oomscope.runtimes.goruntime import GO_1_19_AMD64, LAYOUTS, MAX_INT64, scale_heap_sample

from .go_programs import build, nm
from .helpers import within

PID = 4343
RELEASES = sorted(r for r, _ in LAYOUTS)
HEAP = 0xC000000000  # where Go's heap and its persistent allocations live on linux/amd64
HEAP_SIZE = 64 << 20


class FakeGo:
    """A Go process's /proc/<pid> in a folder: its exe (the lab's binary), maps and mem."""

    def __init__(self, root, exe, bias=0, release="go1.19"):
        self.L = L = LAYOUTS[(release, GO_1_19_AMD64.machine)]
        self.release = release
        self.bias = bias  # where a position-independent executable is loaded
        self.proc = str(root / "proc")
        self.base = root / "proc" / str(PID)
        self.base.mkdir(parents=True)
        os.symlink(exe, self.base / "exe")
        self.syms = {name: address + bias for name, address in nm(exe, release).items()}
        ino = os.stat(exe).st_ino
        self.maps = [f"{bias + 0x400000:08x}-{bias + 0x600000:08x} rw-p 00000000 fe:00 {ino} {exe}",
                     f"{HEAP:x}-{HEAP + HEAP_SIZE:x} rw-p 00000000 00:00 0"]
        self.fd = os.open(self.base / "mem", os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, 0xD000100000)  # sparse: every mapping below reads (zeros where nothing was put)
        self.next_bucket = HEAP + 0x1000
        self.controller(heap_in_use=30 << 20, total_alloc=100 << 20, total_free=75 << 20, mapped_ready=40 << 20)
        self.put("runtime.memstats", struct.pack("<I", 9), L.numgc)
        self.put("runtime.MemProfileRate", struct.pack("<q", 512 << 10))
        self.put("runtime.mProfCycle", struct.pack("<I", 5 << 1))
        self.put("runtime.mbuckets", struct.pack("<Q", 0))
        self.write_maps()

    def write_maps(self):
        (self.base / "maps").write_text("\n".join(self.maps) + "\n")

    def put(self, symbol, data, offset=0):
        os.pwrite(self.fd, data, self.syms[symbol] + offset)

    def controller(self, **values):
        L = self.L
        raw = bytearray(L.gc_controller_size)
        base = dict(gc_percent=100, memory_limit=MAX_INT64, gc_percent_heap_goal=40 << 20, triggered=(1 << 64) - 1,
                    heap_live=18 << 20, heap_marked=20 << 20)
        base.update(values)
        for name, v in base.items():
            struct.pack_into("<i" if name == "gc_percent" else "<q" if name == "memory_limit" else "<Q", raw,
                             getattr(L, name), v)
        self.put("runtime.gcController", bytes(raw))

    def record(self, active) -> bytes:
        """A memRecord whose active cycle is ``active`` (allocs, frees, alloc_bytes, free_bytes; 1.27
        keeps the first two only), its future cycles empty."""
        words = self.L.mem_record_cycle_words
        return struct.pack(f"<{words}Q", *active[:words]) + bytes(self.L.mem_record_size - 8 * words)

    def bucket(self, stack, active=(1, 0, 64 << 10, 0), next_address=0, at=None, typ=1, nstk=None, size=65536):
        """A memory-profile bucket of ``size``-byte objects at ``at`` (else the next free place);
        returns its address."""
        at = self.next_bucket if at is None else at
        nstk = len(stack) if nstk is None else nstk
        data = (struct.pack("<6Q", 0, next_address, typ, 0, size, nstk) + struct.pack(f"<{len(stack)}Q", *stack)
                + self.record(active))
        os.pwrite(self.fd, data, at)
        self.next_bucket = max(self.next_bucket, at + len(data) + 16)
        return at

    def head(self, address):
        self.put("runtime.mbuckets", struct.pack("<Q", address))

    def read(self, **kw):
        return go.read_go(PID, go.Binaries().get(PID, self.proc), proc=self.proc, **kw)

    def pc(self, function, into=20):
        return self.syms[function] + into


@pytest.fixture(params=RELEASES)
def fake(tmp_path, request):
    """The fake process of a binary built by each Go of the table."""
    f = FakeGo(tmp_path, build("leaklab", release=request.param), release=request.param)
    yield f
    os.close(f.fd)


def test_a_runtimes_state_is_read(fake):
    leak = fake.bucket([fake.pc("main.leakyCache"), fake.pc("main.main")], active=(40, 8, 40 << 16, 8 << 16))
    churn = fake.bucket([fake.pc("main.churn"), fake.pc("main.main")], active=(100, 99, 100 << 15, 99 << 15),
                        next_address=0, size=1 << 15)
    os.pwrite(fake.fd, struct.pack("<Q", churn), leak + 8)
    fake.head(leak)
    with within(1.0):
        r = fake.read()
    assert r.why_not is None and r.sites_why_not is None and r.version.startswith(fake.release + ".")
    h = r.heap
    assert h.heap_inuse_bytes == 30 << 20 and h.heap_alloc_bytes == 25 << 20 and h.gc_cycles == 9
    assert r.profile_rate == 512 << 10
    assert [s.frames for s in r.sites] == [("main.leakyCache", "main.main"), ("main.churn", "main.main")]
    assert r.sites[0].bytes == scale_heap_sample(32, 32 << 16, 512 << 10)[1]


def test_the_runtimes_own_frames_are_hidden_as_pprof_hides_them(fake):
    """Go 1.26 records runtime.mallocgc and its caller innermost: hidden up to the first frame not in
    the runtime (pprof's hideRuntime), and two stacks then alike are one site; a stack all in the
    runtime is kept whole."""
    a = fake.bucket([fake.pc("runtime.mallocgc"), fake.pc("runtime.makeslice"), fake.pc("main.leakyCache"),
                     fake.pc("main.main")], active=(3, 0, 3 << 16, 0))
    b = fake.bucket([fake.pc("main.leakyCache"), fake.pc("main.main")], active=(2, 0, 2 << 16, 0), next_address=a)
    c = fake.bucket([fake.pc("runtime.mallocgc"), fake.pc("runtime.main")], active=(1, 0, 1 << 16, 0), next_address=b)
    fake.head(c)
    r = fake.read()
    assert [s.frames for s in r.sites] == [("main.leakyCache", "main.main"), ("runtime.mallocgc", "runtime.main")]
    assert r.sites[0].bytes == scale_heap_sample(3, 3 << 16, 512 << 10)[1] + scale_heap_sample(2, 2 << 16, 512 << 10)[1]


def test_a_loop_in_the_bucket_list_ends_the_walk(fake):
    a = fake.bucket([fake.pc("main.leakyCache")])
    b = fake.bucket([fake.pc("main.churn")], next_address=a)
    os.pwrite(fake.fd, struct.pack("<Q", b), a + 8)
    fake.head(a)
    with within(1.0):
        r = fake.read()
    assert r.heap is not None and "a loop" in r.sites_why_not and len(r.sites) == 2


@pytest.mark.parametrize("where", [0x7FFF00000000, HEAP + HEAP_SIZE - 8, 0xD000000000, 0x8])
def test_a_pointer_outside_what_may_be_read_is_not_followed(fake, where):
    """Outside every mapping, across a mapping's end, or into a mapped file (a device's mapping
    read through /proc/<pid>/mem can reach its driver): refused before any read."""
    fake.maps.append("d000000000-d000100000 rw-s 00000000 00:05 7777 /dev/fake-device")
    fake.write_maps()
    fake.head(where)
    with within(1.0):
        r = fake.read()
    assert r.heap is not None and r.sites == ()
    assert "in no mapping of the process that may be read" in r.sites_why_not or "misaligned" in r.sites_why_not


@pytest.mark.parametrize("typ,nstk", [(2, 1), (1, 0), (1, "max_stack + 1"), (1, 1 << 40), (1, (1 << 64) - 1)])
def test_a_bucket_no_runtime_writes_is_refused(fake, typ, nstk):
    """max_stack + 1: 33 frames for 1.19 to 1.22 (maxStack), 1025 from 1.23 (maxProfStackDepth)."""
    nstk = fake.L.max_stack + 1 if nstk == "max_stack + 1" else nstk
    fake.head(fake.bucket([fake.pc("main.leakyCache")], typ=typ, nstk=nstk))
    with within(1.0):
        r = fake.read()
    assert r.sites == () and "not a Go runtime's" in r.sites_why_not


def test_a_long_list_is_bounded(fake):
    """60,000 buckets in a row: the walk stops at MAX_BUCKETS (or the time budget) and says so."""
    n = 60_000
    L = fake.L
    stack = struct.pack("<Q", fake.pc("main.leakyCache"))
    size = L.bucket_size + 8 + L.mem_record_size
    blob = bytearray()
    for i in range(n):
        nxt = HEAP + (i + 1) * size if i + 1 < n else 0
        blob += struct.pack("<6Q", 0, nxt, 1, 0, 64, 1) + stack + fake.record((1, 0, 64, 0))
    os.pwrite(fake.fd, bytes(blob), HEAP)
    fake.head(HEAP)
    with within(2.0):
        r = fake.read()
    assert r.heap is not None
    assert "more than 50000" in r.sites_why_not or "budget" in r.sites_why_not
    assert r.sites[0].frames == ("main.leakyCache",)


def test_planted_heap_figures_are_not_believed(fake):
    fake.controller(heap_in_use=1 << 62, mapped_ready=1 << 62)
    r = fake.read()
    assert r.heap is None and "not a Go runtime's state" in r.why_not


def test_a_program_that_does_not_sample_is_said(fake):
    fake.put("runtime.MemProfileRate", struct.pack("<q", 0))
    r = fake.read()
    assert r.heap is not None and r.sites == () and "does not sample its allocations" in r.sites_why_not


def test_the_state_outside_the_maps_is_not_read(fake):
    fake.maps = fake.maps[1:]  # the executable's mappings gone from the maps
    fake.write_maps()
    r = fake.read()
    assert r.heap is None and "in no mapping" in r.why_not


def test_a_fifo_as_the_executable_is_never_opened(tmp_path):
    base = tmp_path / "proc" / str(PID)
    base.mkdir(parents=True)
    fifo = tmp_path / "exe-fifo"
    os.mkfifo(fifo)
    os.symlink(fifo, base / "exe")
    opened = threading.Event()

    def writer():
        fd = os.open(fifo, os.O_WRONLY)
        opened.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert go.go_version(PID, proc=str(tmp_path / "proc")) is None
    b = go.Binaries().get(PID, str(tmp_path / "proc"))
    assert b.layout is None and "not a regular file" in b.why_not
    assert not opened.wait(0.3), "the reader opened the FIFO"
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    t.join(2)
    os.close(fd)


def test_a_process_gone_is_said(tmp_path):
    r = go.read_go(PID, go.Binaries().get(PID, str(tmp_path)), proc=str(tmp_path))
    assert r.heap is None and "gone" in r.why_not


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(d=st.data())
def test_any_planted_bytes_answer_within_the_deadline(fake, d):
    """Any gcController, any first buckets: figures or why not, within the deadline."""
    L = fake.L
    raw = d.draw(st.binary(min_size=L.gc_controller_size, max_size=L.gc_controller_size))
    fake.put("runtime.gcController", raw)
    words = st.one_of(st.integers(0, (1 << 64) - 1),
                      st.sampled_from([0, 1, 2, 8, 32, 33, 1024, 1025, HEAP, HEAP + 0x1000, HEAP + 0x1008, (1 << 64) - 1]))
    for k in range(d.draw(st.integers(0, 3))):
        at = HEAP + 0x1000 + 0x200 * k
        os.pwrite(fake.fd, b"".join(struct.pack("<Q", d.draw(words)) for _ in range(24)), at)
    fake.head(d.draw(st.sampled_from([0, HEAP + 0x1000, HEAP + 0x1200, 0xDEAD])))
    with within(1.0):
        r = fake.read()
    assert r.heap is not None or r.why_not
    for s in r.sites:
        assert s.bytes > 0 and len(s.frames) <= L.max_stack


@pytest.mark.parametrize("release", RELEASES)
def test_a_position_independent_executable_is_read_where_it_was_loaded(tmp_path, release):
    fake = FakeGo(tmp_path, build("leaklab", buildmode="pie", release=release), bias=0x40_0000_0000,  # page-aligned, below the heap
                  release=release)  # (the sparse file is bounded)
    try:
        fake.head(fake.bucket([fake.pc("main.leakyCache"), fake.pc("main.main")]))
        r = fake.read()
        assert r.heap is not None and r.heap.heap_inuse_bytes == 30 << 20, r.why_not
        assert r.sites[0].frames == ("main.leakyCache", "main.main")
    finally:
        os.close(fake.fd)
