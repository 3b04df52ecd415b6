"""Which code put the memory there: growth sites and who hit the limit, for cgroups near their limit.

One job, in a thread of its own: while some watched cgroup is at ``attach_ratio`` (80%) of its
limit or more (the sampler's readings, record/readings.py ``near_limit``), the page-fault sampling
of bpf/alloc_sites.c is attached (probes.AllocSiteProbes) for the processes of those cgroups; when
none has been for ``hold_s``, it is detached and what it gathered forgotten. Nothing is attached
otherwise. Every ``check_interval_s`` while attached, it asks the kernel which sampled pages are
still there (/proc/<pid>/pagemap: kernel/pagemap.py), names the code (symbols.py) and keeps the
result per cgroup, a few of them, so that a kill finds the last one taken *before* it (the
victim's pages are gone within milliseconds of the kill).

The estimate (``estimate_sites``): a sampled fault stands for ``period`` faults. A sampled page
still present, private and anonymous, and not mapped again since its sample (a range mapped anew
was freed in between: a buffer mapped, touched and unmapped in a loop faults as much as a leak and
holds nothing), counts ``period`` pages for the stack that faulted it last. So bytes held per
stack = resident samples x period x page size: an estimate, as good as the number of samples
(a stack with 5 resident samples is +/- 45%). Memory is the stack's that first touched each page,
as the kernel charges it: a page freed to the allocator and reused by other code stays the first
toucher's; pages given back with madvise(MADV_DONTNEED) and faulted again at the same address are
not seen as freed (no tracepoint says so), and a transparent huge page is counted as the one
4 KiB page of its fault. Faults before the cgroup neared its limit were not sampled.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..kernel import pagemap
from ..kernel.cgroupfs import cgroup_within
from ..layouts import PageSample, SiteRead
from ..model import AllocationSampling, AllocationSite, Capture
from ..model import LimitHitter as CapturedHitter
from ..symbols import Frame, Symbolizer, short_stack_note

#: a cgroup at this share of its limit (or above) has its processes' faults sampled
ATTACH_RATIO = 0.8
#: sampling stays attached this long after the last cgroup near its limit went below (a kill
#: takes the usage down and a crash-looping workload fills it again)
HOLD_S = 5.0
TICK_S = 0.1
CHECK_INTERVAL_S = 0.5
#: results kept per cgroup (the last one before a kill is wanted), and for how long
RESULTS_KEPT = 8
RESULTS_MAX_AGE_NS = 120_000_000_000
MAX_CGROUPS_KEPT = 64
#: sites kept per cgroup and check (largest first), and those named
TOP_SITES = 20
#: the sample period: about TARGET_SAMPLES samples over the last (1 - ATTACH_RATIO) of the largest
#: limit near, never fewer than MIN_PERIOD faults a sample (the cost: bench/alloc_sites.py)
TARGET_SAMPLES = 512
MIN_PERIOD = 64
MAX_PERIOD = 8192


#: a cgroup near its limit is sampled only while its usage grows by at least this share of its
#: limit a second (0.1%: 1% in 10 s) over the sampler's ring (~10 s), or when no rate is known
#: yet: a cgroup held at its limit by page cache the kernel reclaims would keep the hook on every
#: fault of the host for good (3-5% of a fault storm's CPU: bench/README.md)
MIN_GROWTH_PER_S = 0.001

#: while attached, the page-fault hook is on for DUTY_ON_S of every DUTY_CYCLE_S and off the rest
#: (the reclaim, fork and mapping programs stay on): the hook's own cost on every fault of the host
#: (a raw tracepoint whose program returns at once costs a fault storm 3%, the program's work and
#: the stack capture little: bench/README.md) is paid a fifth of the time. The kernel's period is
#: made shorter in the same ratio (down to MIN_KERNEL_PERIOD), and each check scales by the time
#: the hook was really on.
DUTY_ON_S = 0.2
DUTY_CYCLE_S = 1.0


#: the kernel's period is never below this: a sampled fault's own work (its user stack walked and
#: stored, its page recorded) costs ~1.2 us, so at one in 13 faults (64 over a duty of a fifth)
#: sampling alone took 1.2% of a fault storm's CPU in the near-limit cgroup, its hook 0.7%
#: (bench/README.md, "The kernel's own count": the hook's program 1.89% of the storm's CPU, 1.03%
#: with this floor)
MIN_KERNEL_PERIOD = 32


#: how long a kill waits for the sites thread to let go of the probes (a check: the maps, pagemap,
#: naming stacks, ~10-100 ms) before it takes the limit hitters of the last check instead: a storm's
#: kill-to-post-mortem p95 was mostly this wait (up to 480 ms, p95 121 ms: bench/README.md)
KILL_WAIT_S = 0.02
#: after a kill waited in vain, the kills of the next this many ns do not wait at all: in a storm the
#: check that held the probes is still running, and each queued kill paid the whole wait again
#: (1.1 s of 166 kills' loop time under the profiler, 2026-12-07: bench/README.md)
KILL_NO_WAIT_AFTER_NS = 250_000_000
#: kernel addresses' names kept for the kill path (a storm's limit hitters show a few dozen)
KERNEL_NAMES_KEPT = 4096
#: kernel stacks a kill met unnamed, named at the sites thread's next tick (at most this many)
KERNEL_STACKS_NAMED_A_TICK = 16


def kernel_period_for(period: int, duty: float) -> int:
    """The period the kernel samples at while its hook is on for the share ``duty`` of the time:
    ``period`` x ``duty`` (as many samples as a hook on all the time), at least MIN_KERNEL_PERIOD
    (or ``period`` itself when that is smaller)."""
    return max(min(period, MIN_KERNEL_PERIOD), round(period * min(1.0, duty)))


def duty_from_env(env=os.environ) -> Tuple[float, float]:
    """(on, cycle) seconds: OOMSCOPE_SITES_DUTY=ON/CYCLE (bench/alloc_sites.py compares "1/1", the
    hook on all the time), else the defaults; a value that does not parse, or out of 0.05-10 s,
    is the defaults."""
    try:
        on, cycle = (float(x) for x in env.get("OOMSCOPE_SITES_DUTY", "").split("/"))
    except ValueError:
        return DUTY_ON_S, DUTY_CYCLE_S
    if not (0.05 <= on <= cycle <= 10.0):
        return DUTY_ON_S, DUTY_CYCLE_S
    return on, cycle


def growing(rate_bytes_per_s: Optional[float], limit_bytes: int) -> bool:
    return rate_bytes_per_s is None or rate_bytes_per_s >= MIN_GROWTH_PER_S * limit_bytes


def choose_period(limit_bytes: int, page_size: int = 4096, attach_ratio: float = ATTACH_RATIO) -> int:
    """A power of two: one sample per this many faults."""
    window_pages = max(1, int(limit_bytes * (1 - attach_ratio)) // page_size)
    want = max(1, window_pages // TARGET_SAMPLES)
    period = MIN_PERIOD
    while period < want and period < MAX_PERIOD:
        period *= 2
    return period


@dataclass
class GrowthSite:
    """One stack of one process: what its sampled faults still hold."""

    pid: int
    comm: str
    user_stack: int  # the stack map's id (while attached)
    held_bytes: int  # estimate: resident samples x period x page size
    faults_sampled: int
    pages_sampled: int
    pages_resident: int
    pages_refaulted: int  # sampled pages sampled again (the same page faulted more than once)
    addrs: List[int] = field(default_factory=list)
    frames: List[Frame] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # what could not be named, and why


@dataclass
class LimitHitter:
    tid: int
    pid: int
    comm: str
    stall_ms: float
    max_stall_ms: float
    runs: int
    last_ns: int
    frames: List[str] = field(default_factory=list)  # user frames then kernel frames, innermost first
    kernel_frames: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass
class SitesResult:
    """One check of one cgroup near its limit."""

    cgroup: str
    t_ns: int  # CLOCK_MONOTONIC (bpf_ktime_get_ns's clock)
    attached_ns: int  # when sampling began
    period: int
    page_size: int
    sites: List[GrowthSite]
    hitters: List[LimitHitter]
    samples: int = 0
    pages_dropped_as_remapped: int = 0
    notes: List[str] = field(default_factory=list)
    pids: List[int] = field(default_factory=list)  # the cgroup's processes at the check


def estimate_sites(pages: Sequence[PageSample], counts: Dict[Tuple[int, int, int], int],
                   states: Dict[int, Dict[int, int]], mapped: Dict[int, List[Tuple[int, int, int]]],
                   period: float, page_size: int) -> Tuple[List[GrowthSite], int]:
    """The growth sites of the sampled pages (pure). ``states``: tgid -> {page: pagemap state}
    (kernel/pagemap.py; a page missing was not read); ``mapped``: tgid -> [(start, length, ts_ns)]
    of its new mappings. Returns the sites, largest first, and how many resident samples were
    dropped because their range was mapped again after them."""
    by_site: Dict[Tuple[int, int], GrowthSite] = {}
    dropped = 0
    by_tgid: Dict[int, List[PageSample]] = collections.defaultdict(list)
    for p in pages:
        by_tgid[p.tgid].append(p)
    for tgid, plist in by_tgid.items():
        plist.sort(key=lambda p: p.page)
        remapped = _remapped(plist, mapped.get(tgid, ()))
        st = states.get(tgid, {})
        for i, p in enumerate(plist):
            site = by_site.get((tgid, p.user_stack))
            if site is None:
                site = by_site[(tgid, p.user_stack)] = GrowthSite(tgid, "", p.user_stack, 0, 0, 0, 0, 0)
            site.pages_sampled += 1
            if p.hits > 1:
                site.pages_refaulted += 1
            if st.get(p.page) == pagemap.ANON:
                if i in remapped:
                    dropped += 1
                    continue
                site.pages_resident += 1
                if len(site.addrs) < 4:
                    site.addrs.append(p.page)
    for (tgid, ustack, _kstack), n in counts.items():
        site = by_site.get((tgid, ustack))
        if site is None:
            site = by_site[(tgid, ustack)] = GrowthSite(tgid, "", ustack, 0, 0, 0, 0, 0)
        site.faults_sampled += n
    for site in by_site.values():
        site.held_bytes = int(site.pages_resident * period * page_size)
    out = sorted(by_site.values(), key=lambda s: (-s.held_bytes, -s.faults_sampled, s.pid, s.user_stack))
    return out, dropped


def _remapped(plist: List[PageSample], events: Iterable[Tuple[int, int, int]]) -> Set[int]:
    """Indexes (into plist, sorted by page) of samples whose page lies in a range mapped after them."""
    out: Set[int] = set()
    pages = [p.page for p in plist]
    for start, length, ts in events:
        lo = bisect.bisect_left(pages, start)
        hi = bisect.bisect_left(pages, start + length)
        for i in range(lo, hi):
            if plist[i].last_ns < ts:
                out.add(i)
    return out


class SiteSampler:
    """Drives AllocSiteProbes from its own thread (``run``); ``for_kill`` is asked by the main
    thread. ``near`` and ``pids_of`` read the sampler's store (record/readings.py): ``near()`` is
    [(cgroup, usage, limit[, growth in bytes a second or None])]."""

    def __init__(self, probes, near: Callable[[], List[tuple]], pids_of: Callable[[str], Set[int]],
                 comm_of: Callable[[int], Optional[str]] = lambda pid: None, attach_ratio: float = ATTACH_RATIO,
                 check_interval_s: float = CHECK_INTERVAL_S, hold_s: float = HOLD_S,
                 symbolizer: Optional[Symbolizer] = None, page_size: int = os.sysconf("SC_PAGE_SIZE"),
                 clock: Callable[[], int] = time.monotonic_ns, say: Callable[[str], None] = lambda line: None,
                 duty_on_s: Optional[float] = None, duty_cycle_s: Optional[float] = None):
        self.probes = probes
        if duty_on_s is None or duty_cycle_s is None:
            duty_on_s, duty_cycle_s = duty_from_env()
        self.duty_on_ns = int(min(duty_on_s, duty_cycle_s) * 1e9)
        self.duty_cycle_ns = int(duty_cycle_s * 1e9)
        self.say = say
        self.near = near
        self.pids_of = pids_of
        self.comm_of = comm_of
        self.attach_ratio = attach_ratio
        self.check_interval_ns = int(check_interval_s * 1e9)
        self.hold_ns = int(hold_s * 1e9)
        self.symbolizer = symbolizer or Symbolizer()
        self.page_size = page_size
        self.clock = clock
        self._lock = threading.Lock()  # the results
        # the probes and the symbolizer: the sites thread's, and the main thread's at a kill
        self._work = threading.Lock()
        self._kill_waited_in_vain_ns: Optional[int] = None  # when a kill last gave up waiting for it
        self._results: Dict[str, Deque[SitesResult]] = {}
        self._frames: Dict[Tuple[int, int], List[Frame]] = {}
        #: kernel code addresses named by this thread (probes.kernel_names: a pass over /proc/kallsyms
        #: for any address not named before), for the kill path, which names only from here
        self._kernel_names: Dict[int, str] = {}
        #: kernel stacks a kill met unnamed: named by this thread at its next tick
        self._kernel_unnamed: Set[Tuple[int, ...]] = set()
        self._attached_ns = 0
        self._last_near_ns = 0
        self._next_check_ns = 0
        self._hook_on_ns = 0  # the hook's time on since attached, up to its last pause
        self._hook_since_ns: Optional[int] = None  # when it was last put on (None: off)
        self._next_toggle_ns = 0
        self._cycle_start_ns = 0
        # about itself: measured figures for the log, doctor and the bench
        self.attaches = 0
        self.attach_s: List[float] = []
        self.detach_s: List[float] = []
        self.check_s: List[float] = []
        self.errors = 0
        self.last_error: Optional[str] = None

    # --- the thread ---
    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception as exc:  # noqa: BLE001 - sampling sites is a bonus: never stop record
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                stop.wait(self.wait_s())
        finally:
            if self.probes.attached:
                self.detach_s.append(self.probes.detach())

    def wait_s(self) -> float:
        """How long the thread sleeps: TICK_S, or less to the hook's next toggle."""
        if not self.probes.attached or self.duty_on_ns >= self.duty_cycle_ns:
            return TICK_S
        return max(0.0, min(TICK_S, (self._next_toggle_ns - self.clock()) / 1e9))

    def tick(self) -> None:
        with self._work:
            self._name_kernel_stacks()
            self._tick()

    def _name_kernel_stacks(self) -> None:
        """The kernel stacks kills met unnamed, named here (for the next kills, not in their path)."""
        with self._lock:
            todo, self._kernel_unnamed = self._kernel_unnamed, set()
        for stack in sorted(todo)[:KERNEL_STACKS_NAMED_A_TICK]:
            self._kernel_frames(list(stack))

    def _kernel_frames(self, addrs: List[int]) -> List[str]:
        """Names of a kernel stack's frames (probes.kernel_names), kept for the kill path."""
        names = self.probes.kernel_names(addrs)
        if len(self._kernel_names) + len(names) > KERNEL_NAMES_KEPT:
            self._kernel_names = {}
        # every answer kept, an address /proc/kallsyms does not name too (its "0x..." is final: a
        # kill would otherwise ask for it again and again, and say it is "not named yet")
        self._kernel_names.update(zip(addrs, names))
        return names

    def _duty(self, now: int) -> None:
        """Put the page-fault hook on or off for this part of the cycle."""
        if self.duty_on_ns >= self.duty_cycle_ns or now < self._next_toggle_ns:
            return
        if self._hook_since_ns is not None:
            self.probes.pause()
            self._hook_on_ns += now - self._hook_since_ns
            self._hook_since_ns = None
            self._next_toggle_ns = self._cycle_start_ns + self.duty_cycle_ns
        else:
            self.probes.resume()
            self._hook_since_ns = self._cycle_start_ns = now
            self._next_toggle_ns = now + self.duty_on_ns

    def stands_for(self, now: int) -> float:
        """Faults a sample stands for: the kernel's period over the share of the time since
        attached that the hook was on (1/share more faults went by unseen)."""
        on = self._hook_on_ns + (now - self._hook_since_ns if self._hook_since_ns is not None else 0)
        span = now - self._attached_ns
        if on <= 0 or span <= 0 or self.duty_on_ns >= self.duty_cycle_ns:
            return float(self.probes.period)
        return self.probes.period * max(1.0, span / on)

    def _tick(self) -> None:
        now = self.clock()
        near = [(n[0], n[1], n[2]) for n in self.near() if n[2] and n[1] >= self.attach_ratio * n[2]
                and (len(n) < 4 or growing(n[3], n[2]))]
        if not near:
            if self.probes.attached and now - self._last_near_ns > self.hold_ns:
                self.detach_s.append(self.probes.detach())
                checks = sorted(self.check_s)
                self.say(f"oomscope: growth sites: sampling detached: no cgroup near its limit for {self.hold_ns / 1e9:.0f} s "
                         f"(detach {self.detach_s[-1] * 1000:.1f} ms; checks: median "
                         f"{checks[len(checks) // 2] * 1000 if checks else 0:.1f} ms, longest {checks[-1] * 1000 if checks else 0:.1f} ms)")
                self._frames.clear()
                self.symbolizer.clear()
                self._hook_since_ns = None
            elif self.probes.attached:
                # held for hold_s: the hook's cycle goes on, or its next toggle stays in the past and
                # wait_s() is 0: the thread spun (the soak of 2026-12-06: 15-20% of a core)
                self._duty(now)
            return
        self._last_near_ns = now
        tgids: Dict[str, Set[int]] = {cg: self.pids_of(cg) for cg, _u, _l in near}
        watched = set().union(*tgids.values())
        self.probes.watch(watched)
        if not self.probes.attached:
            period = choose_period(max(limit for _c, _u, limit in near), self.page_size, self.attach_ratio)
            # a shorter period while the hook is on (as many samples as a hook on all the time), but
            # not below MIN_KERNEL_PERIOD: each sample's own work is paid on top of the hook's
            kernel_period = kernel_period_for(period, self.duty_on_ns / self.duty_cycle_ns)
            self.attach_s.append(self.probes.attach(kernel_period))
            self.attaches += 1
            duty = ("" if self.duty_on_ns >= self.duty_cycle_ns else
                    f", the hook on {self.duty_on_ns / 1e6:.0f} ms of every {self.duty_cycle_ns / 1e6:.0f} ms")
            self.say(f"oomscope: growth sites: sampling attached for {len(watched)} processes of {len(near)} cgroup(s) near "
                     f"their limit, one fault in {kernel_period}{duty} ({self.probes.mode}; attach {self.attach_s[-1] * 1000:.1f} ms)")
            self._attached_ns = self._hook_since_ns = self._cycle_start_ns = self.clock()
            self._hook_on_ns = 0
            self._next_toggle_ns = self._attached_ns + self.duty_on_ns
            self._next_check_ns = self._attached_ns + self.check_interval_ns
            return
        self._duty(now)
        if now >= self._next_check_ns:
            t0 = time.monotonic()
            self.check(tgids)
            self.check_s.append(time.monotonic() - t0)
            del self.check_s[:-100]
            self._next_check_ns = self.clock() + self.check_interval_ns

    def check(self, tgids: Dict[str, Set[int]]) -> None:
        """Read the maps, ask pagemap which sampled pages are still there, name the top sites,
        and keep a result for each cgroup near its limit."""
        read: SiteRead = self.probes.read()
        t = self.clock()
        # children forked since the sampler's last reading: in their parent's cgroup
        forked = self.probes.forked()
        gone = [c for c in forked if not os.path.exists(f"/proc/{c}")]
        if gone:
            self.probes.unwatch(gone)
        tgids = {cg: members | {c for c, parent in forked.items() if parent in members} for cg, members in tgids.items()}
        watched = set().union(*tgids.values()) if tgids else set()
        pages = [p for p in read.pages if p.tgid in watched]
        states: Dict[int, Dict[int, int]] = {}
        for tgid in {p.tgid for p in pages}:
            states[tgid] = pagemap.residency(tgid, [p.page for p in pages if p.tgid == tgid], self.page_size)
        mapped: Dict[int, List[Tuple[int, int, int]]] = collections.defaultdict(list)
        for tgid, start, length, ts in self.probes.mapped():
            if tgid in watched:
                mapped[tgid].append((start, length, ts))
        period = self.stands_for(t)
        sites, dropped = estimate_sites(pages, {k: v for k, v in read.counts.items() if k[0] in watched},
                                        states, mapped, period, self.page_size)
        # what the kernel gathered about processes no longer watched goes (the victims of earlier kills)
        self.probes.forget_pids(({k[0] for k in read.counts} | {p.tgid for p in read.pages}) - watched, read)
        self.symbolizer.forget(watched)
        # the named stacks of processes no longer watched (killed, exited) go too: while one cgroup
        # or another stays near its limit, sampling stays attached and nothing else empties this
        # (the soak of 2026-12-06, a hog killed every 5 s: the recorder's anonymous memory +13 MiB
        # in its first 20 minutes, bench/README.md)
        self._frames = {k: v for k, v in self._frames.items() if k[0] in watched}
        begun: Set[int] = set()
        for cg, members in tgids.items():
            mine = [s for s in sites if s.pid in members][:TOP_SITES]
            wanted = {s.user_stack for s in mine if s.user_stack >= 0 and (s.pid, s.user_stack) not in self._frames}
            read.stacks.update(self.probes.stacks(wanted - read.stacks.keys()))
            for s in mine:
                self._name(s, read.stacks, begun)
            hitters = [self._hitter(h, read.stacks, begun) for h in read.hitters if h.tgid in members]
            hitters.sort(key=lambda h: -h.stall_ms)
            notes = []
            if read.stacks_lost:
                notes.append(f"{read.stacks_lost} sampled faults had no stack stored (the stack map full, or two stacks "
                             f"with one hash)")
            result = SitesResult(cg, t, self._attached_ns, round(period), self.page_size, mine, hitters[:10],
                                 samples=sum(s.faults_sampled for s in mine), pages_dropped_as_remapped=dropped, notes=notes,
                                 pids=sorted(members))
            self._keep(cg, result)

    def _name(self, site: GrowthSite, stacks: Dict[int, List[int]], begun: Set[int]) -> None:
        site.comm = self.comm_of(site.pid) or site.comm
        key = (site.pid, site.user_stack)
        frames = self._frames.get(key)
        if frames is None:
            addrs = stacks.get(site.user_stack)
            if addrs is None:
                site.notes.append("no user stack: the stack map was full, or a hash collision"
                                  if site.user_stack != -14 else "no user stack (EFAULT: the unwinder could not read it)")
                return
            if site.pid not in begun:
                begun.add(site.pid)
                self.symbolizer.begin(site.pid)
            frames = self.symbolizer.frames(site.pid, addrs)
            if len(self._frames) < 4096:
                self._frames[key] = frames
        site.frames = frames
        for f in frames:
            if f.why and f.why not in site.notes:
                site.notes.append(f"{f.text()}: {f.why}")
        short = short_stack_note(frames)
        if short:
            site.notes.append(short)

    def _hitter(self, h, stacks: Dict[int, List[int]], begun: Set[int], at_kill: bool = False) -> LimitHitter:
        out = LimitHitter(h.tid, h.tgid, h.comm, round(h.stall_ns / 1e6, 2), round(h.max_ns / 1e6, 2), h.runs, h.last_ns)
        user = stacks.get(h.user_stack)
        if user:
            if h.tgid not in begun:
                begun.add(h.tgid)
                self.symbolizer.begin(h.tgid)
            out.frames = [f.text() for f in self.symbolizer.frames(h.tgid, user)]
        else:
            out.notes.append("no user stack")
        kernel = stacks.get(h.kernel_stack)
        if kernel:
            if at_kill:
                # Named only from what this thread named before: an address not named yet would
                # take a pass over /proc/kallsyms (120,000 lines in Python) in record's loop, which
                # every kill behind it waited for (a storm's kill to post-mortem: 54-390 ms at
                # once, bench/README.md, issue 29); shown as its address, named for later kills
                names = [self._kernel_names.get(a) or f"{a:#x}" for a in kernel]
                if any(a not in self._kernel_names for a in kernel):
                    with self._lock:
                        if len(self._kernel_unnamed) < KERNEL_STACKS_NAMED_A_TICK:
                            self._kernel_unnamed.add(tuple(kernel))
                    out.notes.append("kernel frames not named yet at the kill are shown as addresses")
            else:
                names = self._kernel_frames(kernel)
            # without the probe's own frames (the BPF program and the tracepoint's caller)
            out.kernel_frames = [n for n in names
                                 if not n.startswith(("bpf_prog_", "bpf_trace_run", "__traceiter_", "__bpf_trace_"))]
        return out

    def _keep(self, cgroup: str, result: SitesResult) -> None:
        with self._lock:
            dq = self._results.get(cgroup)
            if dq is None:
                dq = self._results[cgroup] = collections.deque(maxlen=RESULTS_KEPT)
            dq.append(result)
            if len(self._results) > MAX_CGROUPS_KEPT:
                oldest = min(self._results, key=lambda c: self._results[c][-1].t_ns)
                del self._results[oldest]

    # --- asked by the main thread ---
    def for_kill(self, cgroup: Optional[str], kill_ns: int, victim_pid: Optional[int] = None) -> Optional[SitesResult]:
        """The last result taken before the kill for ``cgroup`` (or the nearest cgroup watched
        within it or above it), or None."""
        if cgroup is None:
            return None
        with self._lock:
            for c in [c for c, dq in self._results.items() if dq and kill_ns - dq[-1].t_ns > RESULTS_MAX_AGE_NS]:
                del self._results[c]
            candidates = []
            for cg, dq in self._results.items():
                if cg == cgroup or cgroup_within(cg, cgroup) or cgroup_within(cgroup, cg):
                    best = None
                    for r in dq:
                        if r.t_ns <= kill_ns:
                            best = r
                    if best is not None:
                        candidates.append((cg != cgroup, -best.t_ns, best))
        if not candidates:
            return None
        best = min(candidates, key=lambda c: c[:2])[2]
        now = self.hitters_now(best.pids)
        if now is None:
            note = (f"limit hitters as of the last check, {max(0, kill_ns - best.t_ns) / 1e6:.0f} ms before the kill "
                    f"(the sampling thread was busy at the kill)")
            return dataclasses.replace(best, notes=best.notes + [note])
        return dataclasses.replace(best, hitters=now or best.hitters)

    def hitters_now(self, pids: Iterable[int], wait_s: float = KILL_WAIT_S) -> Optional[List[LimitHitter]]:
        """The reclaim stalls of these processes as the kernel holds them now: the stalls that
        ended in the kill come after the last check (with only anonymous memory and no swap,
        reclaim at the limit gives up within milliseconds). Their user stacks are named with the
        maps read at the last check: the victim's own are gone by now. None when the sites thread
        held the probes longer than ``wait_s`` (a check in progress): the kill is not held up; and
        without waiting within KILL_NO_WAIT_AFTER_NS of a kill that waited in vain (a storm)."""
        members = set(pids)
        gave_up = self._kill_waited_in_vain_ns
        if gave_up is not None and self.clock() - gave_up < KILL_NO_WAIT_AFTER_NS:
            wait_s = 0.0  # a storm: the check that held the probes a moment ago still may
        if not (self._work.acquire(timeout=wait_s) if wait_s > 0 else self._work.acquire(blocking=False)):
            if wait_s > 0:
                self._kill_waited_in_vain_ns = self.clock()
            return None
        self._kill_waited_in_vain_ns = None
        try:
            if not self.probes.attached or not members:
                return []
            try:
                hitters, stacks = self.probes.read_hitters()
            except Exception:  # noqa: BLE001 - a map read failing leaves the last check's
                return []
            out = [self._hitter(h, stacks, set(members), at_kill=True) for h in hitters if h.tgid in members]
        finally:
            self._work.release()
        out.sort(key=lambda h: -h.stall_ms)
        return out[:10]

    def describe(self) -> str:
        a = sorted(self.attach_s)
        return (f"attached {self.attaches} times (median attach {a[len(a) // 2] * 1000:.1f} ms)" if a
                else "never attached (no cgroup near its limit)")


ESTIMATE = ("bytes held = sampled pages still present (private, anonymous) at the last check before the kill "
            "x {period} faults a sample (the kernel's period over the share of the time its page-fault hook was on) "
            "x {page} bytes a page: an estimate, whose error shrinks with the number of "
            "resident samples (5 samples: about +/-45%); faults before the cgroup reached {ratio:.0%} of its limit "
            "were not sampled")


def add_to_capture(capture: Capture, result: SitesResult, kill_ns: int, attach_ratio: float = ATTACH_RATIO) -> None:
    """The result of the last check before the kill, as the capture holds it."""
    capture.allocation_sites = [
        AllocationSite(frames=[f.text() for f in s.frames] or [f"stack {s.user_stack} (not named)"], bytes=s.held_bytes,
                       source="page_faults", pid=s.pid, comm=s.comm, faults_sampled=s.faults_sampled,
                       pages_sampled=s.pages_sampled, pages_resident=s.pages_resident, unsymbolized=list(s.notes))
        for s in result.sites if s.held_bytes > 0 or s.faults_sampled > 0]
    capture.allocation_sampling = AllocationSampling(
        period=result.period, page_size_bytes=result.page_size,
        sampled_from_ms=round((result.attached_ns - kill_ns) / 1e6, 1), checked_ms=round((result.t_ns - kill_ns) / 1e6, 1),
        samples=result.samples, remapped_dropped=result.pages_dropped_as_remapped,
        estimate=ESTIMATE.format(period=result.period, page=result.page_size, ratio=attach_ratio), notes=list(result.notes))
    capture.limit_hitters = [
        CapturedHitter(pid=h.pid, tid=h.tid, comm=h.comm, stall_ms=h.stall_ms, max_stall_ms=h.max_stall_ms, runs=h.runs,
                       last_ms=round((h.last_ns - kill_ns) / 1e6, 1) if h.last_ns else None, frames=h.frames,
                       kernel_frames=h.kernel_frames, notes=h.notes)
        for h in result.hitters]
