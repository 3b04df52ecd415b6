"""The BPF probes. The only module that imports bcc, and only when probes are loaded.

Loads ``bpf/oom_events.c`` (installed as package data ``oomscope.bpf``) with ``-D`` flags derived
from the running kernel's tracepoint format files, and the layout constants of ``layouts.py``,
and yields plain ``OomEvent`` records (``layouts.py``, which needs no bcc).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import time
from typing import Callable, Dict, Iterator, List, Optional

from . import layouts
from .errors import ProbeError
from .kernel import headers, tracefs
from .kernel.kallsyms import KernelSymbols
from .layouts import OomEvent, ReclaimStats, SignalEvent, event_from_raw, signal_from_raw

def cflags_for_kernel(tracefs_path: Optional[str] = None) -> List[str]:
    """-D flags for the fields this kernel's oom tracepoints carry (detected, not assumed)."""
    fields = tracefs.tracepoint_fields("oom", "mark_victim", tracefs_path)
    if fields is None:
        raise ProbeError("this kernel has no oom:mark_victim tracepoint (CONFIG_TRACEPOINTS?)")
    names = {f.name: f for f in fields}
    if "pid" not in names:
        raise ProbeError("oom:mark_victim has no pid field; unknown tracepoint layout")
    flags = []
    comm = names.get("comm")
    if comm is not None:
        flags.append("-DMV_COMM_DATA_LOC" if "__data_loc" in comm.ctype else "-DMV_COMM_ARRAY")
    if {"total_vm", "anon_rss", "file_rss", "shmem_rss"} <= names.keys():
        flags.append("-DMV_HAS_RSS")
    for name, flag in (("uid", "-DMV_HAS_UID"), ("pgtables", "-DMV_HAS_PGTABLES"),
                       ("oom_score_adj", "-DMV_HAS_SCORE_ADJ")):
        if name in names:
            flags.append(flag)
    reap = tracefs.tracepoint_fields("oom", "finish_task_reaping", tracefs_path)
    if reap is not None and any(f.name == "pid" for f in reap):
        flags.append("-DHAVE_FINISH_TASK_REAPING")
    fork = tracefs.tracepoint_fields("sched", "sched_process_fork", tracefs_path)
    if fork is not None and {"parent_pid", "child_pid"} <= {f.name for f in fork}:
        flags.append("-DHAVE_SCHED_PROCESS_FORK")
    ends = [tracefs.tracepoint_fields("vmscan", f"mm_vmscan_{k}_reclaim_end", tracefs_path) for k in ("memcg", "direct")]
    begins = [tracefs.tracepoint_fields("vmscan", f"mm_vmscan_{k}_reclaim_begin", tracefs_path) for k in ("memcg", "direct")]
    if all(b is not None for b in begins) and all(e is not None and any(f.name == "nr_reclaimed" for f in e) for e in ends):
        flags.append("-DHAVE_VMSCAN_RECLAIM")
        retry = tracefs.tracepoint_fields("oom", "reclaim_retry_zone", tracefs_path)
        compact = tracefs.tracepoint_fields("oom", "compact_retry", tracefs_path)
        if (retry is not None and any(f.name == "no_progress_loops" for f in retry)
                and compact is not None and any(f.name == "ret" for f in compact)):
            flags.append("-DHAVE_OOM_RETRY")
    return flags


#: the signal:signal_generate fields bpf/signal_kills.c reads (the same on 6.1 to 7.x)
SIGNAL_GENERATE_FIELDS = {"sig", "code", "comm", "pid", "group", "result"}
#: reclaim_by_tgid: a process gone at two prunes this far apart, and without reclaim for
#: RECLAIM_KEEP_S, has its entry deleted (OomProbes._prune_reclaim)
RECLAIM_PRUNE_EVERY_S = 10.0
RECLAIM_KEEP_S = 60.0


def has_signal_generate(tracefs_path: Optional[str] = None) -> bool:
    """Whether this kernel's signal:signal_generate has the fields user-space kills are read from."""
    fields = tracefs.tracepoint_fields("signal", "signal_generate", tracefs_path)
    return fields is not None and SIGNAL_GENERATE_FIELDS <= {f.name for f in fields}


@contextlib.contextmanager
def bpf_source(name: str = "oom_events.c") -> Iterator[str]:
    """The BPF C file: package data ``oomscope.bpf`` when installed. A checkout has no
    ``oomscope/bpf/`` (pyproject maps the top-level ``bpf/`` into the package at build time), and
    the tests run the checkout's code beside an installed package: there the checkout's own
    ``bpf/`` is used, so the C compiled is the C of the code that runs."""
    package = os.path.dirname(os.path.abspath(__file__))
    checkout_c = os.path.join(os.path.dirname(package), "bpf", name)
    if not os.path.isdir(os.path.join(package, "bpf")) and os.path.isfile(checkout_c):
        yield checkout_c
        return
    ref = importlib.resources.files("oomscope.bpf") / name
    with importlib.resources.as_file(ref) as path:
        yield str(path)


def bcc_location() -> Optional[str]:
    """The folder bcc's Python module is imported from, or None when it is not importable."""
    try:
        import bcc  # probes is the one module that imports bcc
    except ImportError:
        return None
    return os.path.dirname(bcc.__file__)


def _compile(names: List[str], cflags: List[str]):
    """bcc's BPF object for the files ``bpf/<name>``, compiled as one module: each compile parses
    bcc's helpers and the kernel headers they include again (under the VMs' emulation about 12 s a
    compile, docs/kernel-facts.md), so record compiles its programs once. tracepoint__* functions
    are attached by bcc."""
    try:
        from bcc import BPF  # the one place bcc is imported
    except ImportError:
        raise ProbeError("bcc is not importable (apt-get install python3-bpfcc; run setup.sh)") from None
    with contextlib.ExitStack() as stack:
        srcs = [stack.enter_context(bpf_source(n)) for n in names]
        # #line keeps the compiler's messages pointing at each file's own lines
        text = "".join(f'#line 1 "{n}"\n' + open(src).read() + "\n" for n, src in zip(names, srcs))
        try:
            return BPF(text=text.encode(), cflags=[f"-I{os.path.dirname(srcs[0])}"] + layouts.cflags() + cflags)
        except Exception as exc:  # bcc raises bare Exception on compile/attach failure
            raise ProbeError(f"could not compile or attach the BPF programs of {' and '.join(names)}: {exc}") from None


class OomProbes:
    """Attached probes; ``poll()`` calls back with OomEvent records.

    ``snapshot_layout``: the memcg layout (memcg_snapshot_layout()) of bpf/memcg_snapshot.c, then
    compiled into the same module; when that compile fails, oom_events.c is compiled alone and
    ``snapshot_error`` says why (the kills are recorded without a snapshot)."""

    def __init__(self, on_event: Callable[[OomEvent], None], page_cnt: int = 256, snapshot_layout=None,
                 on_signal: Optional[Callable[[SignalEvent], None]] = None, alloc_sites: bool = False):
        if os.geteuid() != 0:
            raise ProbeError("loading BPF programs needs root (run with sudo)")
        tracefs_path = tracefs.ensure_tracefs()
        self.cflags = cflags_for_kernel(tracefs_path)
        # user-space kills (bpf/signal_kills.c), compiled into the same module: one compile
        self.has_signals = on_signal is not None and has_signal_generate(tracefs_path)
        if self.has_signals:
            self.cflags.append("-DHAVE_SIGNAL_GENERATE")
        self._on_signal = on_signal
        self.headers = headers.find_headers()
        if self.headers.path is None:
            raise ProbeError(self.headers.how)
        headers.apply_headers(self.headers)
        self.lost = 0
        self.reclaim_pruned = 0  # reclaim_by_tgid entries of processes long gone, deleted
        self._reclaim_pruned_ns = 0
        self._reclaim_gone: set = set()
        self._on_event = on_event
        self.snapshot_error: Optional[str] = None
        self.with_snapshot = False
        #: bpf/alloc_sites.c compiled into the same module (AllocSiteProbes(bpf=...)), or why not
        self.with_sites = False
        self.sites_error: Optional[str] = None
        sites_flags = alloc_sites_cflags(tracefs_path)[0] if alloc_sites else None
        base = ["oom_events.c", "signal_kills.c"]
        tries = []  # best first: a failed compile costs one more (the VMs: ~12 s each)
        if snapshot_layout is not None:
            snap_flags = snapshot_cflags(snapshot_layout)
            if sites_flags is not None:
                tries.append((base + ["memcg_snapshot.c", "alloc_sites.c"], snap_flags + sites_flags))
            tries.append((base + ["memcg_snapshot.c"], snap_flags))
        if sites_flags is not None:
            tries.append((base + ["alloc_sites.c"], sites_flags))
        tries.append((base, []))
        for names, flags in tries:
            try:
                self.bpf = _compile(names, self.cflags + flags)
            except ProbeError as exc:
                if names == base:
                    raise
                if "alloc_sites.c" in names:
                    self.sites_error = self.sites_error or str(exc)
                else:
                    self.snapshot_error = str(exc)
                continue
            self.with_snapshot = "memcg_snapshot.c" in names
            self.with_sites = "alloc_sites.c" in names
            break
        if snapshot_layout is not None and not self.with_snapshot and self.snapshot_error is None:
            self.snapshot_error = self.sites_error
        self.has_reclaim = "-DHAVE_VMSCAN_RECLAIM" in self.cflags
        # Big per-CPU buffers: a storm makes hundreds of kills a second (docs/kernel-facts.md).
        self.bpf["oom_events"].open_perf_buffer(self._cb, page_cnt=page_cnt, lost_cb=self._lost_cb)
        if self.has_signals:
            self.bpf["signal_kills"].open_perf_buffer(self._signal_cb, page_cnt=16, lost_cb=self._lost_cb)

    def _cb(self, cpu, data, size) -> None:
        raw = self.bpf["oom_events"].event(data)
        self._on_event(event_from_raw(raw))

    def _signal_cb(self, cpu, data, size) -> None:
        self._on_signal(signal_from_raw(self.bpf["signal_kills"].event(data)))

    def _lost_cb(self, count) -> None:
        self.lost += count

    def poll(self, timeout_ms: int) -> None:
        self.bpf.perf_buffer_poll(timeout=timeout_ms)

    def reclaim_by_pid(self) -> Dict[int, ReclaimStats]:
        """Cumulative reclaim per process (empty on kernels without the vmscan tracepoints), read
        in batches; the entries of processes gone for a while are deleted (``_prune_reclaim``)."""
        if not self.has_reclaim:
            return {}
        table = self.bpf["reclaim_by_tgid"]
        out = {_int(k): ReclaimStats.from_raw(v) for k, v in _batch_items(table)}
        self._prune_reclaim(table, out)
        return out

    def _prune_reclaim(self, table, read: Dict[int, ReclaimStats]) -> None:
        """Delete the entries of processes that were gone at the last prune too and have not
        reclaimed for RECLAIM_KEEP_S. The map is an LRU of 16,384 entries that nothing else
        empties, and every process that ever reclaimed on the host keeps one (every OOM victim
        does): the sampler read it whole at each fast pass while a cgroup was near its limit,
        one syscall pair per entry (the soak of 2026-12-06 21:00: ~20,000 syscalls a second, the
        sampling thread 20% of a core). Two prunes apart (RECLAIM_PRUNE_EVERY_S): a victim's
        entry outlives its death until its kill is recorded (within seconds), and a process whose
        cgroup the sampler no longer knows (pid retention, 60 s) adds nothing to any cgroup."""
        now = time.monotonic_ns()  # bpf_ktime_get_ns: CLOCK_MONOTONIC
        if now - self._reclaim_pruned_ns < RECLAIM_PRUNE_EVERY_S * 1e9:
            return
        self._reclaim_pruned_ns = now
        old = [pid for pid, r in read.items() if now - r.last_ns > RECLAIM_KEEP_S * 1e9 and not os.path.exists(f"/proc/{pid}")]
        for pid in self._reclaim_gone & set(old):
            with contextlib.suppress(KeyError):
                del table[table.Key(pid)]
                self.reclaim_pruned += 1
        self._reclaim_gone = set(old) - self._reclaim_gone

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bpf.cleanup()


SIGNAL_GENERATE_PARAMS = ["int", "struct kernel_siginfo *", "struct task_struct *", "int", "int"]
MARK_VICTIM_PARAMS = ["struct task_struct *", "uid_t"]  # older kernels pass only the pid: SIGKILL alone there
CALIBRATE_S = 2.0   # per-CPU offsets: every online CPU's cpu-clock fires within this
LEARN_S = 5.0       # slots learnt from the memcg tracepoints (kernels without data symbols) ...
LEARN_MORE_S = 2.0  # ... for at least this long once the core items are known (the rarer ones: measured, 1 s sometimes missed unevictable)


def memcg_snapshot_layout(cgroup_version: int):
    """The running kernel's memcg layout (kernel/memcg_layout.py) for the memory controller's
    cgroup version, or ProbeError saying why the snapshot cannot run here."""
    from .kernel import btf, memcg_layout  # only the snapshot needs them

    types = btf.kernel_types()
    enums = btf.kernel_enums(("node_stat_item", "memcg_stat_item", "cgroup_subsys_id", "memcg_memory_event"))
    if types is None or enums is None:
        raise ProbeError("the kernel has no BTF (/sys/kernel/btf/vmlinux): the memcg snapshot needs it")
    try:
        got = types.raw_tracepoint_params("signal_generate")
        if got != SIGNAL_GENERATE_PARAMS:
            raise ProbeError(f"raw tracepoint signal_generate takes ({', '.join(got or ['?'])}), not the "
                             f"({', '.join(SIGNAL_GENERATE_PARAMS)}) this oomscope reads")
        try:
            with open("/proc/kallsyms") as f:
                kallsyms = f.read()
        except OSError:
            kallsyms = ""
        layout = memcg_layout.detect(types, enums, kallsyms, cgroup_v1=cgroup_version == 1)
        layout.mark_victim_params = types.raw_tracepoint_params("mark_victim")
        return layout
    except (memcg_layout.LayoutError, btf.BtfError) as exc:
        raise ProbeError(f"memcg snapshot: {exc}") from None


# The per-CPU loop is compiled for at most this many: the verifier's work grows with the CPUs and
# the kernel's statistics (493K instructions of its 1M at 512 CPUs and 7.3's 57 items, 6.18;
# docs/kernel-facts.md); tests/system/test_kernel_snapshot.py loads it for this many on every kernel
MAX_SNAPSHOT_CPUS = 256


def snapshot_cflags(layout, ncpus: Optional[int] = None) -> List[str]:
    """The -D flags of bpf/memcg_snapshot.c: the layout's, and the CPUs it sums over (``ncpus``:
    this machine's, unless given: a test builds it for the most CPUs it allows)."""
    ncpus = ncpus or os.cpu_count() or 1
    if ncpus > MAX_SNAPSHOT_CPUS:
        raise ProbeError(f"the memcg snapshot sums over at most {MAX_SNAPSHOT_CPUS} CPUs")
    return [f"-DOOMSCOPE_NCPUS={ncpus}"] + layout.cflags()


def _verified_insns(fd: int) -> Optional[int]:
    """The instructions the verifier processed for a loaded program (fdinfo's verified_insns,
    5.16+), None where the kernel does not say."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("verified_insns:"):
                    return int(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


class MemcgSnapshotter:
    """bpf/memcg_snapshot.c: the victim's memcg and its ancestors at every SIGKILL. ``take(pid)``
    returns (and forgets) the snapshot of a victim, as a layouts.MemcgSnapshot.

    ``bpf``: the module it was compiled into (OomProbes with snapshot_layout); without it, it
    compiles its own. A shared module is not cleaned up here: close() detaches only its programs."""

    def __init__(self, layout, activity: Optional[Callable[[], None]] = None, bpf=None):
        import time as _time

        from .kernel import memcg_layout

        self.layout = layout
        self.ncpus = os.cpu_count() or 1
        self._own = bpf is None
        self._attached: List[bytes] = []
        self.bpf = _compile(["memcg_snapshot.c"], snapshot_cflags(layout)) if bpf is None else bpf
        self.startup = {}
        try:
            t0 = _time.monotonic()
            self._calibrate()
            self.startup["calibrate_s"] = round(_time.monotonic() - t0, 2)
            if layout.slot_scheme == memcg_layout.SLOT_LEARNT:
                t0 = _time.monotonic()
                self._learn(activity)
                self.startup["learn_s"] = round(_time.monotonic() - t0, 2)
            names = {v: k for k, v in layout.items.items()}
            self.slots = {names[i]: s for i, s in layout.slots.items() if i in names}
            if not self.slots:
                raise ProbeError("memcg snapshot: no statistics slot found for any item")
            self._fill_steps()
            self.bpf.attach_raw_tracepoint(tp=b"signal_generate", fn_name=b"on_signal_generate")
            self._attached.append(b"signal_generate")
            if getattr(layout, "mark_victim_params", None) == MARK_VICTIM_PARAMS:
                self.bpf.attach_raw_tracepoint(tp=b"mark_victim", fn_name=b"on_mark_victim")
                self._attached.append(b"mark_victim")
        except ProbeError:
            self.close()
            raise
        except Exception as exc:  # bcc raises bare Exception when attaching fails
            self.close()
            raise ProbeError(f"memcg snapshot: {exc}") from None

    def _fill_steps(self) -> None:
        """The snapshot's chain of tail calls (bpf/memcg_snapshot.c snap_steps): each step a program
        of its own, so that the verifier walks one level's CPUs at a time (one program over every
        level and CPU no longer loaded from 32 CPUs on). Loaded here, where a verifier's refusal
        is the snapshot's error."""
        import ctypes

        from bcc import BPF

        steps = self.bpf.get_table("snap_steps")
        for index, name in ((0, b"snap_level"), (1, b"snap_check")):
            fn = self.bpf.load_func(name, BPF.RAW_TRACEPOINT)
            steps[ctypes.c_int(index)] = ctypes.c_int(fn.fd)

    def _calibrate(self) -> None:
        import time as _time

        online = _online_cpus()
        self.bpf.attach_perf_event(ev_type=1, ev_config=0, fn_name=b"calibrate", sample_freq=200)  # software cpu-clock
        try:
            deadline = _time.monotonic() + CALIBRATE_S
            while _time.monotonic() < deadline:
                offsets = self.cpu_offsets()
                missing = [c for c in online if not offsets.get(c)]
                if not missing:
                    break
                # An idle CPU may take no cpu-clock sample for seconds (seen on this 2-CPU host when
                # quiet: "no per-CPU offset found for CPU 1", twice in a row): run there briefly.
                _run_briefly_on(missing)
        finally:
            self.bpf.detach_perf_event(ev_type=1, ev_config=0)
        offsets = self.cpu_offsets()
        missing = [c for c in online if not offsets.get(c)]
        if missing:
            raise ProbeError(f"memcg snapshot: no per-CPU offset found for CPU {missing[0]}")
        if self.layout.table_addr is not None:
            raw = self.bpf["index_table"][0]
            self.layout.slots_from_table(list(raw.b))

    def cpu_offsets(self) -> Dict[int, int]:
        """CPU -> its __per_cpu_offset as calibrate found it (bpf/memcg_snapshot.c cpu_offset: one value)."""
        import ctypes

        offs = self.bpf["cpu_offset"][ctypes.c_int(0)].off
        return {cpu: offs[cpu] for cpu in range(len(offs)) if offs[cpu]}

    def _learn(self, activity) -> None:
        import time as _time

        from .kernel import memcg_layout

        for tp in ("mod_memcg_state", "mod_memcg_lruvec_state"):
            self.bpf.attach_raw_tracepoint(tp=tp.encode(), fn_name=b"learn_state")
        core = [self.layout.items[n] for n in memcg_layout.CORE_ITEMS if n in self.layout.items]
        wanted = {self.layout.items[k.item] for k in memcg_layout.V1_KEYS + memcg_layout.V2_KEYS if k.item in self.layout.items}
        try:
            start = _time.monotonic()
            while _time.monotonic() < start + LEARN_S:
                if activity is not None:
                    activity()
                learnt = self._learnt()
                # every item wanted, or the core ones and a second more for the rarer (an item the
                # host never updates, such as swap without swap, is never learnt)
                if wanted <= learnt.keys() or (all(i in learnt for i in core) and _time.monotonic() > start + LEARN_MORE_S):
                    break
                _time.sleep(0.05)
        finally:
            for tp in ("mod_memcg_state", "mod_memcg_lruvec_state"):
                with contextlib.suppress(Exception):
                    self.bpf.detach_raw_tracepoint(tp=tp.encode())
        self.layout.slots = self._learnt()

    def _learnt(self) -> Dict[int, int]:
        out = {}
        for k, v in self.bpf["learnt"].items():
            if v.value > 0:
                out[k.value] = v.value - 1
        # two items in one slot: a mis-learnt pair, neither is trusted
        seen: Dict[int, int] = {}
        for slot in out.values():
            seen[slot] = seen.get(slot, 0) + 1
        return {i: s for i, s in out.items() if seen[s] == 1}

    def take(self, pid: int):
        table = self.bpf["snapshots"]
        key = table.Key(pid)
        try:
            raw = table[key]
        except KeyError:
            return None
        with contextlib.suppress(KeyError):
            del table[key]
        return layouts.snapshot_from_raw(raw, self.slots, self.layout.has_local, self.layout.has_memsw)

    def drain(self) -> list:
        """Every snapshot the kernel holds now (and forgets them): for measurements."""
        table = self.bpf["snapshots"]
        out = []
        for k, raw in list(table.items()):
            out.append(layouts.snapshot_from_raw(raw, self.slots, self.layout.has_local, self.layout.has_memsw))
            with contextlib.suppress(KeyError):
                del table[k]
        return out

    def close(self) -> None:
        if self._own:
            with contextlib.suppress(Exception):
                self.bpf.cleanup()
            return
        for tp in self._attached:
            with contextlib.suppress(Exception):
                self.bpf.detach_raw_tracepoint(tp=tp)
        self._attached = []


def learning_activity(folder: str = "/dev/shm") -> Callable[[], None]:
    """What the slot learning watches the kernel count (kernels whose index table cannot be read):
    anonymous memory, a written, synced and mapped file, and shmem, in this process's cgroup."""
    import mmap

    def act() -> None:
        path = os.path.join(folder, f"oomscope-learn-{os.getpid()}")
        try:
            anon = bytearray(2 << 20)
            for i in range(0, len(anon), 4096):
                anon[i] = 1
            # a huge page where THP is "madvise" (anon_thp), a locked page (unevictable)
            with mmap.mmap(-1, 8 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as m:
                with contextlib.suppress(AttributeError, OSError):
                    m.madvise(mmap.MADV_HUGEPAGE)
                for i in range(0, 8 << 20, 4096):
                    m[i] = 1
                _mlock_briefly(m)
            for where in (path, f"/var/tmp/oomscope-learn-{os.getpid()}"):
                with open(where, "wb+") as f:
                    f.write(b"x" * (1 << 20))
                    f.flush()
                    os.fsync(f.fileno())
                    with mmap.mmap(f.fileno(), 1 << 20) as m:
                        sum(m[i] for i in range(0, 1 << 20, 4096))
        except OSError:
            pass
        finally:
            for where in (path, f"/var/tmp/oomscope-learn-{os.getpid()}"):
                with contextlib.suppress(OSError):
                    os.unlink(where)

    return act


def _mlock_briefly(m, size: int = 256 << 10) -> None:
    """Lock then unlock ``size`` bytes of a mapping: more pages than the kernel's per-CPU mlock
    batch holds (mm/mlock.c, mlock_fbatch), so that they reach the unevictable list (measured: one
    page locked and unlocked at once never did)."""
    import ctypes

    buf = (ctypes.c_char * size).from_buffer(m)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        addr = ctypes.addressof(buf)
        if libc.mlock(ctypes.c_void_p(addr), ctypes.c_size_t(size)) == 0:
            libc.munlock(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    finally:
        del buf


def _run_briefly_on(cpus: List[int], seconds: float = 0.02) -> None:
    """Spin this thread on each of ``cpus`` for a moment, so that a perf sample fires there; the
    thread's CPU affinity is given back."""
    import time as _time

    try:
        before = os.sched_getaffinity(0)
    except OSError:
        _time.sleep(seconds)
        return
    try:
        for cpu in cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {cpu})
                end = _time.monotonic() + seconds
                while _time.monotonic() < end:
                    pass
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)


def _online_cpus() -> List[int]:
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: List[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


# --- growth sites and who hit the limit (bpf/alloc_sites.c) ---

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_PAGE_FAULTS = 2
SITES_STACK_DEPTH = 48       # frames kept per stack (bcc's default, 127, is 1 KiB an entry)
SITES_STACK_ENTRIES = 4096   # distinct stacks (kernel memory: entries x depth x 8 = 1.5 MiB)
SITES_SITE_ENTRIES = 8192    # (tgid, user stack, kernel stack) counted
SITES_PAGE_ENTRIES = 32768   # sampled pages kept (LRU): ~2.5 MiB of kernel memory
SITES_WATCH_ENTRIES = 16384  # processes watched at once
SITES_HITTER_ENTRIES = 4096  # tasks in memcg reclaim
SITES_MAPPED_ENTRIES = 8192  # the latest new mapping at each start address (LRU)

#: how faults are sampled: "perf" (a software perf event with a sample period: the program runs
#: for the sampled faults only) or "tracepoint" (exceptions:page_fault_user: the program runs at
#: every fault of the host and counts): measured, bench/alloc_sites.py
SAMPLING_MODES = ("tracepoint", "perf")


class AllocSiteProbes:
    """bpf/alloc_sites.c: compiled at start, attached only while a watched cgroup is near its limit.

    ``attach(period)`` starts sampling one fault in ``period`` (and the reclaim stalls), ``detach()``
    stops it and forgets what was gathered; both return the seconds they took. ``watch(tgids)``
    sets the processes whose faults count. ``read()`` returns a layouts.SiteRead. Not thread-safe:
    one thread (record/sites.py) drives it."""

    def __init__(self, mode: str = "tracepoint", bpf=None):
        """``bpf``: the module OomProbes compiled alloc_sites.c into (one compile at start: under
        the VMs' emulation each compile is ~12 s); without it, it compiles its own. A shared module
        is not cleaned up here: close() detaches only its programs."""
        if mode not in SAMPLING_MODES:
            raise ProbeError(f"unknown fault sampling mode {mode!r}")
        if os.geteuid() != 0:
            raise ProbeError("loading BPF programs needs root (run with sudo)")
        tracefs_path = tracefs.ensure_tracefs()
        flags, found = alloc_sites_cflags(tracefs_path)
        self.has_reclaim, self.has_mapped, self.has_fork = found["reclaim"], found["mapped"], found["fork"]
        if mode == "tracepoint" and not found["page_fault_user"]:
            raise ProbeError("this kernel has no exceptions:page_fault_user tracepoint (x86 only)")
        self.mode = mode
        self._ksyms: Optional[KernelSymbols] = None
        self._own = bpf is None
        if bpf is None:
            choice = headers.find_headers()
            if choice.path is None:
                raise ProbeError(choice.how)
            headers.apply_headers(choice)
            bpf = _compile(["alloc_sites.c"], flags)
        self.bpf = bpf
        # bcc loads a program when it is first attached: load them now, so that attach() is the
        # attach alone (the verifier's time is spent at start, not when a cgroup nears its limit)
        from bcc import BPF  # noqa: WPS433 - probes is the one module that imports bcc
        try:
            if mode == "perf":
                self.bpf.load_func(b"on_fault_sample", BPF.PERF_EVENT)
            if self.has_reclaim or mode == "tracepoint":
                for fn in ((b"on_fault_tp",) if mode == "tracepoint" else ()) + ((b"on_reclaim_begin", b"on_reclaim_end") if self.has_reclaim else ()):
                    self.bpf.load_func(fn, BPF.RAW_TRACEPOINT)
            if self.has_fork:
                self.bpf.load_func(b"on_fork", BPF.TRACEPOINT)
            if self.has_mapped:
                self.bpf.load_func(b"on_mapped", BPF.TRACEPOINT)
        except Exception as exc:  # bcc raises bare Exception when the verifier refuses
            self.close()
            raise ProbeError(f"could not load the growth-site programs: {exc}") from None
        self.attached = False
        self.hooked = False  # the page-fault program attached (attached, and not paused)
        self.period = 0
        self._watched: set = set()

    def attach(self, period: int) -> float:
        """Start sampling one page fault in ``period`` and the reclaim stalls. Seconds taken."""
        import time as _time

        if self.attached:
            return 0.0
        t0 = _time.monotonic()
        try:
            self.period = int(period)
            if self.mode == "tracepoint":
                table = self.bpf["sample_period"]
                table[table.Key(0)] = table.Leaf(self.period)
            self._hook()
            if self.has_fork:
                self.bpf.attach_tracepoint(tp=b"sched:sched_process_fork", fn_name=b"on_fork")
            if self.has_mapped:
                self.bpf.attach_tracepoint(tp=b"mmap:vm_unmapped_area", fn_name=b"on_mapped")
            if self.has_reclaim:
                self.bpf.attach_raw_tracepoint(tp=b"mm_vmscan_memcg_reclaim_begin", fn_name=b"on_reclaim_begin")
                self.bpf.attach_raw_tracepoint(tp=b"mm_vmscan_memcg_reclaim_end", fn_name=b"on_reclaim_end")
        except Exception as exc:  # bcc raises bare Exception when attaching fails
            self.attached = True
            self.detach()
            raise ProbeError(f"could not attach the growth-site programs: {exc}") from None
        self.attached = True
        return _time.monotonic() - t0

    def detach(self) -> float:
        """Stop sampling and forget every sample, stack and stall. Seconds taken."""
        import time as _time

        if not self.attached:
            return 0.0
        t0 = _time.monotonic()
        self._unhook()
        if self.has_reclaim:
            for tp in (b"mm_vmscan_memcg_reclaim_begin", b"mm_vmscan_memcg_reclaim_end"):
                with contextlib.suppress(Exception):
                    self.bpf.detach_raw_tracepoint(tp=tp)
        if self.has_fork:
            with contextlib.suppress(Exception):
                self.bpf.detach_tracepoint(tp=b"sched:sched_process_fork")
        if self.has_mapped:
            with contextlib.suppress(Exception):
                self.bpf.detach_tracepoint(tp=b"mmap:vm_unmapped_area")
        self.attached = False
        self._watched = set()
        # fault_tick too: a count left from a longer period would delay the next attach's first sample
        for name in ("watched_tgids", "site_counts", "sampled_pages", "stall_begin", "hitters", "stacks", "fault_tick")\
                + (("mapped",) if self.has_mapped else ()):
            with contextlib.suppress(Exception):
                self.bpf[name].clear()
        return _time.monotonic() - t0

    def _hook(self) -> None:
        if self.mode == "perf":
            self.bpf.attach_perf_event(ev_type=PERF_TYPE_SOFTWARE, ev_config=PERF_COUNT_SW_PAGE_FAULTS,
                                       fn_name=b"on_fault_sample", sample_period=self.period)
        else:
            self.bpf.attach_raw_tracepoint(tp=b"page_fault_user", fn_name=b"on_fault_tp")
        self.hooked = True

    def _unhook(self) -> None:
        if not self.hooked:
            return
        with contextlib.suppress(Exception):
            if self.mode == "perf":
                self.bpf.detach_perf_event(ev_type=PERF_TYPE_SOFTWARE, ev_config=PERF_COUNT_SW_PAGE_FAULTS)
            else:
                self.bpf.detach_raw_tracepoint(tp=b"page_fault_user")
        self.hooked = False

    def pause(self) -> float:
        """Take the page-fault hook off and keep everything gathered (the reclaim, fork and mapping
        programs stay): the hook alone is what a fault pays while attached (bench/README.md), so
        record/sites.py keeps it on for part of each second only. Seconds taken."""
        import time as _time

        t0 = _time.monotonic()
        if self.attached:
            self._unhook()
        return _time.monotonic() - t0

    def resume(self) -> float:
        """Put the page-fault hook back (after pause()). Seconds taken."""
        import time as _time

        t0 = _time.monotonic()
        if self.attached and not self.hooked:
            try:
                self._hook()
            except Exception as exc:  # bcc raises bare Exception when attaching fails
                raise ProbeError(f"could not attach the page-fault sampling again: {exc}") from None
        return _time.monotonic() - t0

    def mapped(self) -> List[tuple]:
        """(tgid, start, length, ts_ns): the latest new mapping at each start of the watched processes."""
        if not self.has_mapped:
            return []
        return [(k.tgid, k.addr, v.length, v.ts_ns) for k, v in _batch_items(self.bpf["mapped"])]

    def watch(self, tgids) -> None:
        """The processes whose faults and stalls count (at most SITES_WATCH_ENTRIES)."""
        want = set(list(tgids)[:SITES_WATCH_ENTRIES])
        table = self.bpf["watched_tgids"]
        for tgid in self._watched - want:
            with contextlib.suppress(KeyError):
                del table[table.Key(tgid)]
        for tgid in want - self._watched:
            with contextlib.suppress(Exception):
                table[table.Key(tgid)] = table.Leaf(1)
        self._watched = want

    def unwatch(self, tgids) -> None:
        """Forget processes the kernel added (children that have exited since)."""
        table = self.bpf["watched_tgids"]
        for tgid in tgids:
            if tgid not in self._watched:
                with contextlib.suppress(KeyError):
                    del table[table.Key(tgid)]

    def forget_pids(self, tgids, read) -> int:
        """Drop what was gathered about processes no longer watched (killed, exited): their sample
        counts, sampled pages, and the stacks nothing else still names. ``read``: the SiteRead just
        taken (its entries are deleted without reading the maps again). Entries deleted.

        While some cgroup stays near its limit, sampling stays attached and nothing else empties
        these maps: site_counts is a plain hash (full, new sites go uncounted) and every check reads
        every entry (the soak of 2026-12-06: a hog killed every 5 s, record 22% of a core)."""
        gone = set(tgids)
        if not gone:
            return 0
        deleted = 0
        pages, counts, stacks = self.bpf["sampled_pages"], self.bpf["site_counts"], self.bpf["stacks"]
        keep_ids: set = set()
        drop_ids: set = set()
        for p in read.pages:
            ids = (p.user_stack, p.kernel_stack)
            if p.tgid not in gone:
                keep_ids.update(ids)
                continue
            drop_ids.update(ids)
            with contextlib.suppress(KeyError):
                del pages[pages.Key(tgid=p.tgid, page=p.page)]
                deleted += 1
        for (tgid, user_stack, kernel_stack) in read.counts:
            if tgid not in gone:
                keep_ids.update((user_stack, kernel_stack))
                continue
            drop_ids.update((user_stack, kernel_stack))
            with contextlib.suppress(KeyError):
                del counts[counts.Key(tgid=tgid, user_stack=user_stack, kernel_stack=kernel_stack)]
                deleted += 1
        for h in read.hitters:
            keep_ids.update((h.user_stack, h.kernel_stack))
        for sid in drop_ids - keep_ids:
            if sid >= 0:
                with contextlib.suppress(KeyError):
                    del stacks[stacks.Key(sid)]
                    deleted += 1
        return deleted

    def forked(self) -> Dict[int, int]:
        """{child: parent tgid} of the watched processes' children the kernel added (on_fork)."""
        return {_int(k): _int(v) for k, v in _batch_items(self.bpf["watched_tgids"]) if _int(v) > 1}

    def read_hitters(self):
        """(the reclaim stalls, the stacks they name): what read() gives of them, alone."""
        hitters = []
        if self.has_reclaim:
            for k, v in _batch_items(self.bpf["hitters"]):
                hitters.append(layouts.Hitter(_int(k), v.tgid, v.comm.decode("utf-8", "replace"), v.stall_ns, v.max_ns,
                                              v.runs, v.last_ns, v.user_stack, v.kernel_stack))
        return hitters, self._stacks({s for h in hitters for s in (h.user_stack, h.kernel_stack) if s >= 0})

    def stacks(self, ids) -> Dict[int, List[int]]:
        """Stack ids -> code addresses, innermost first (those still in the stack map)."""
        return self._stacks(ids)

    def _stacks(self, ids) -> Dict[int, List[int]]:
        table = self.bpf["stacks"]
        stacks = {}
        for sid in ids:
            try:
                raw = table[table.Key(sid)]
            except KeyError:
                continue
            stacks[sid] = [ip for ip in raw.ip if ip][:SITES_STACK_DEPTH]
        return stacks

    def read(self):
        """Everything gathered so far, as a layouts.SiteRead."""
        counts = {(k.tgid, k.user_stack, k.kernel_stack): _int(v) for k, v in _batch_items(self.bpf["site_counts"])}
        pages = [layouts.PageSample(k.tgid, k.page, v.user_stack, v.kernel_stack, v.hits, v.last_ns)
                 for k, v in _batch_items(self.bpf["sampled_pages"])]
        hitters = []
        if self.has_reclaim:
            for k, v in _batch_items(self.bpf["hitters"]):
                hitters.append(layouts.Hitter(_int(k), v.tgid, v.comm.decode("utf-8", "replace"), v.stall_ns, v.max_ns,
                                              v.runs, v.last_ns, v.user_stack, v.kernel_stack))
        # the hitters' stacks only: the sites' are read for the top ones (stacks()), one lookup each
        stacks = self._stacks({s for h in hitters for s in (h.user_stack, h.kernel_stack) if s >= 0})
        st = {_int(k): _int(v) for k, v in self.bpf["site_stats"].items()}
        return layouts.SiteRead(counts, pages, stacks, hitters, samples=st.get(0, 0), stacks_lost=st.get(1, 0),
                                counts_full=st.get(2, 0))

    def kernel_names(self, addrs: List[int]) -> List[str]:
        """Kernel code addresses named from /proc/kallsyms (kernel/kallsyms.py: not bcc's ksym,
        whose cache of every kernel symbol stays resident, 12 MiB)."""
        if self._ksyms is None:
            self._ksyms = KernelSymbols()
        return self._ksyms.names(addrs[:SITES_STACK_DEPTH])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.detach()
        if self._own:
            with contextlib.suppress(Exception):
                self.bpf.cleanup()


def alloc_sites_cflags(tracefs_path: Optional[str] = None):
    """(-D flags of bpf/alloc_sites.c, {feature: present}) for this kernel's tracepoints."""
    has = lambda cat, ev: tracefs.tracepoint_fields(cat, ev, tracefs_path) is not None  # noqa: E731
    vmua = {f.name: f for f in tracefs.tracepoint_fields("mmap", "vm_unmapped_area", tracefs_path) or []}
    fork = {f.name: f for f in tracefs.tracepoint_fields("sched", "sched_process_fork", tracefs_path) or []}
    found = {"reclaim": has("vmscan", "mm_vmscan_memcg_reclaim_begin") and has("vmscan", "mm_vmscan_memcg_reclaim_end"),
             "mapped": all(n in vmua and vmua[n].size == 8 for n in ("addr", "length")),
             "fork": "child_pid" in fork and fork["child_pid"].size == 4,
             "page_fault_user": has("exceptions", "page_fault_user")}
    flags = [f"-DSTACK_DEPTH={SITES_STACK_DEPTH}", f"-DSTACK_ENTRIES={SITES_STACK_ENTRIES}",
             f"-DSITE_ENTRIES={SITES_SITE_ENTRIES}", f"-DPAGE_ENTRIES={SITES_PAGE_ENTRIES}",
             f"-DWATCH_ENTRIES={SITES_WATCH_ENTRIES}", f"-DHITTER_ENTRIES={SITES_HITTER_ENTRIES}",
             f"-DMAPPED_ENTRIES={SITES_MAPPED_ENTRIES}"]
    if found["mapped"]:
        flags += [f"-DVMUA_ADDR_OFF={vmua['addr'].offset}", f"-DVMUA_LEN_OFF={vmua['length'].offset}"]
    if found["fork"]:
        flags.append(f"-DFORK_CHILD_OFF={fork['child_pid'].offset}")
    return flags, found


def _int(v) -> int:
    """A map's integer key or value: batch reads give ints, bcc's ctypes ones otherwise."""
    return v if isinstance(v, int) else v.value


#: rows asked of the kernel per BPF_MAP_LOOKUP_BATCH call. bcc's items_lookup_batch() allocates
#: (and zeroes) key and value arrays for the map's whole max_entries at every call: 1.3-1.7 MiB
#: for sampled_pages and reclaim_by_tgid, several times a second while a cgroup is near its limit.
#: Blocks that size raise glibc's mmap threshold after their first free, and then come from the
#: sampling thread's arena between its smaller objects (the soak of 2026-12-06: that arena and
#: the other anonymous mappings growing +6 and +10 MiB/h, bench/README.md "Soak"). 256 rows are at
#: most ~40 KiB a call (a hitter's record, the largest, is 104 bytes).
BATCH_ROWS = 256


def _batch_items(table, rows: int = BATCH_ROWS) -> list:
    """A map's (key, value) pairs: read ``rows`` at a time where the kernel has batches (5.6+),
    else one by one. Each round has its own arrays (the pairs returned point into them)."""
    try:
        return _lookup_batches(table, rows)
    except Exception:  # noqa: BLE001 - bcc raises bare Exception; the slow way always works
        return list(table.items())


def _lookup_batches(table, rows: int) -> list:
    import ctypes as ct
    import errno

    from bcc.libbcc import lib  # noqa: WPS433 - probes is the one module that imports bcc

    out: list = []
    token = ct.c_uint32(0)  # a hash map's batch position: the next bucket (kernel/bpf/hashtab.c)
    started = False
    max_entries = max(1, int(table.max_entries))
    rounds = 0
    while True:
        rounds += 1
        if rounds > 4 * max_entries // min(rows, max_entries) + 64:  # the map changing under us
            break
        keys, values = (table.Key * rows)(), (table.Leaf * rows)()
        count = ct.c_uint32(rows)
        res = lib.bpf_lookup_batch(table.map_fd, ct.byref(token) if started else None, ct.byref(token),
                                   keys, values, ct.byref(count))
        err = ct.get_errno()
        if res != 0 and err == errno.ENOSPC and rows < max_entries:
            rows = min(max_entries, rows * 4)  # one bucket holds more than rows: ask for more at once
            continue
        if res != 0 and err != errno.ENOENT:
            raise Exception(f"BPF_MAP_LOOKUP_BATCH failed: {os.strerror(err)}")  # noqa: TRY002 - as bcc's
        n = min(count.value, rows)
        out.extend(zip(keys[:n], values[:n]))
        started = True
        if res != 0 or n == 0:  # ENOENT: the last batch (its rows read above)
            break
    return out
