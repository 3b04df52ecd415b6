"""The collector behind ``oomscope record``: set-up and the loop.

One thread samples cgroupfs (sampler.Sampler); the main loop polls the BPF perf buffer and
/dev/kmsg, joins the two records of each kill (joiner.KillJoiner), and hands each joined kill to
``_record``, a chain of steps that each have one job:

    evidence.locate -> assemble.place -> budget.Budget.admit -> evidence.gather
      -> assemble.build_capture -> analyse (passed in) -> outputs.Outputs.write -> announce.Announcer.kill

``budget.admit``: a workload's storm gets a burst of post-mortems, then one per interval; the
kills beyond are counted (the log, the metrics, the next capture of the workload), not written.

Stops on SIGINT/SIGTERM, at ``duration``, or when ``until()`` says so; kills still pending then are
written before it returns. record/ imports nothing from analysis/ or report/: the capture is written here, its analysis,
post-mortem and the index are done by the post-mortem stage through a Finisher (postmortem/finisher.py) that
record/main.py starts (``Downstream``): a worker process, so that pandas and jinja2 stay out of this long-running one.
A kill is announced (its line on stdout, the metrics) once its post-mortem is done.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, Deque, Dict, List, Optional, TextIO, Tuple

from ..capture.assemble import build_capture
from ..capture.inputs import Recording
from ..capture.place import Placement, place
from ..containers import NodeNames, workload_of
from .. import safefs
from ..errors import EnvironmentProblem, OomscopeError, ProbeError
from ..kernel import procfs
from ..kernel.cgroupfs import MemoryHierarchy, cgroup_within
from ..kernel.kmsg import KmsgFollower, KmsgReader
from ..kernel.oom_report import OomReportParser
from ..layouts import EV_MARK_VICTIM, OomEvent, ReclaimStats, SignalEvent
from ..metrics import Metrics
from ..model import Capture, Times, Victim
from ..terminal import terminal_safe
from ..postmortem.finisher import Finished, Finisher
from ..probes import AllocSiteProbes, MemcgSnapshotter, OomProbes, learning_activity, memcg_snapshot_layout
from . import heap
from .announce import Announcer
from .status import STATUS_EVERY_NS, STATUS_FILE, status_document
from .watchdog import Watchdog
from .budget import BURST, DISK_BYTES, EVERY_S, MAX_DISK_BYTES, Budget, workload_key
from .evidence import EvidenceGatherer, LiveReads
from .joiner import KillJoiner, PendingKill
from .memory import drop_compiler_pages, trim_heap
from .outputs import Outputs, Written
from .retention import Retention
from .sampler import Sampler, clock_offset_ns
from .sites import ATTACH_RATIO, SiteSampler, growing
from .sites import add_to_capture as add_sites
from .userkill import UserKill, UserKills
from ..capture.userspace import finish_user_capture, place_user_kill, victim_event
from ..capture.throttle import build_throttle_capture
from .throttle import Episode, ThrottleDetector, ThrottleReading


@dataclass
class Downstream:
    """What happens to a capture after record/ wrote it, passed in by record/main.py."""

    #: (output folder, err) -> a Finisher (postmortem/finisher.py): the kill's analysis, post-mortem, index
    start_finisher: Callable[[str, TextIO], Finisher]
    #: seconds the last post-mortems may take once record is asked to stop
    finish_timeout_s: float = 30.0


@dataclass
class RecordedKill:
    """A kill written, as ``run`` returns it: a few names, not its capture (a long-running recorder
    kept every capture it wrote: a storm's hundreds of kills stayed in its memory for good)."""

    kill_id: str
    oom_memcg: Optional[str]
    capture_path: str
    html_path: Optional[str]


HEALTH_EVERY_NS = 250_000_000
# The host's facts (swap total and free, THP modes, sysctls) are read again for a kill when the
# last reading is older than this: swap can be added while record runs (the VM suite's zram), and
# free swap at start-up says nothing about the kill. A storm reads them at most 10 times a second.
HOST_FACTS_MAX_AGE_NS = 100_000_000
POLL_MS = 100
# With nothing in flight (no kill waiting for its report or its event, no post-mortem asked for)
# the loop waits longer: each idle wake-up costs the main thread its drain, and 10 a second were
# 0.2% of a core, a third of a 500-cgroup recorder's CPU (bench/README.md). A BPF event ends the
# wait at once; a kernel report that comes alone is joined up to this much later, and SIGTERM
# (handled by the main thread when the wait returns) stops record up to this much later.
IDLE_POLL_MS = 500
# A kill whose BPF event came and whose kernel report has not: the report's "Killed process" line
# is printed just after oom:mark_victim (mm/oom_kill.c __oom_kill_process), so it is read by the
# kmsg thread a few ms after the event woke this loop, and nothing wakes the loop for it. Waiting
# POLL_MS then put 0-100 ms on every kill (bench/lean.py --latency: capture stage p50 52 ms).
REPORT_POLL_MS = 5
# At record's end, how long each kill's capture may wait for its fsyncs (safefs.Syncer) to be said
SYNC_WAIT_S = 30.0
# A post-mortem worker that exited when idle is started again, and a running one is kept from its
# idle exit, while a watched cgroup is near its limit as the growth sites see it (record/sites.py:
# at ATTACH_RATIO of its limit and growing, when their sampling attaches): a kill may come, and a
# storm's first kills do not wait for the worker's start-up (0.5-1 s on a loaded 2-core host:
# bench/README.md, issue 29). Not for a cgroup held at its limit without growing (page cache): that
# one would keep the worker for good. Before, only a cgroup at most 10 s from its limit at its
# growth over the sampler's ring woke it, and nothing kept it: a workload climbing slowly near its
# limit met a worker that had just left.
# The last kills run() returns (``kills_recorded`` counts them all): the lab's own kill is among
# them when record stops. ~0.7 KiB each with a Kubernetes cgroup's paths (tracemalloc in the soak of
# 2026-12-07, bench/README.md): 10,000 were ~7 MiB kept, filling for 14 hours at a kill every 5 s.
RECORDED_KEPT = 1000


@dataclass
class RecordOptions:
    """record's options, parsed once (record/main.py, ``parse_options``) into typed values."""

    output: str
    duration_s: Optional[float] = None
    cgroup: Optional[str] = None  # only kills within this cgroup (and only it is sampled)
    metrics_addr: Optional[str] = None  # HOST:PORT for Prometheus metrics
    log_format: str = "text"  # text | json: the per-kill line on stdout
    keep: Optional[Retention] = None  # --keep N (post-mortems) or Nd (days): prune older ones
    #: each workload's share in a storm (record/budget.py): a burst of post-mortems, then one per
    #: interval (0: no limit); the most its kill folders may take on disk (None: no limit)
    workload_burst: int = BURST
    workload_every_s: float = EVERY_S
    workload_disk_bytes: Optional[int] = DISK_BYTES
    #: the most all kill folders may take on disk together (record/retention.py Ledger.trim_total;
    #: None: no limit): many workloads, each within its own budget, must not fill the node's disk
    max_disk_bytes: Optional[int] = MAX_DISK_BYTES
    #: growth sites and who hit the limit, sampled near limits only (record/sites.py)
    alloc_sites: bool = True
    #: kills by user-space killers (earlyoom, systemd-oomd, the kubelet) and SIGKILLs under memory
    #: pressure, recorded as kills (record/userkill.py)
    user_kills: bool = True
    #: a memory.high throttling report when a cgroup stalls on memory this share of its time (record/throttle.py; 0: off)
    throttle_share: float = 0.1


class Collector:
    def __init__(self, opts: RecordOptions, downstream: Downstream, out: TextIO, err: TextIO):
        self.opts = opts
        self.downstream = downstream
        self.err = err
        self.stop = threading.Event()
        self.recorded: Deque[RecordedKill] = collections.deque(maxlen=RECORDED_KEPT)
        self.kills_recorded = 0
        self.hier = MemoryHierarchy.detect()
        if opts.cgroup is not None and not self.hier.exists(opts.cgroup):
            raise EnvironmentProblem(f"no such memory cgroup: {opts.cgroup}")
        self.joiner = KillJoiner()
        self.parser = OomReportParser()
        self.names = NodeNames()
        self.metrics: Optional[Metrics] = None
        if opts.metrics_addr:
            self.metrics = Metrics()
            self.metrics.serve(opts.metrics_addr)
        self.announce = Announcer(out, err, opts.log_format, self.metrics)
        # record's own threads: one that stops making progress is said at once (record/watchdog.py)
        self.watchdog = Watchdog()
        self.sampler_thread: Optional[threading.Thread] = None
        self._status_due_ns = 0
        self._status_error_said = False
        self._host_read_ns = time.monotonic_ns()
        self.recording = Recording(cgroup_version=self.hier.version, host=procfs.read_host(self.hier.version),
                                   clock_offset_ns=clock_offset_ns())
        self._events: List[OomEvent] = []
        self._signals: List[SignalEvent] = []  # user-space kills' signals (bpf/signal_kills.c)
        try:
            self.kmsg: Optional[KmsgFollower] = KmsgFollower(KmsgReader())
        except OSError as exc:
            self.kmsg = None
            self.err.write(f"oomscope: warning: cannot read /dev/kmsg ({exc.strerror}); captures will lack the kernel's report\n")
        # Started before the BPF compile: its imports (~1.5 s) overlap the compile.
        self.finisher = downstream.start_finisher(opts.output, err)
        try:
            self.outputs = Outputs(opts.output, self.finisher, opts.keep, err,
                                   disk_budget=opts.workload_disk_bytes, max_disk=opts.max_disk_bytes,
                                   syncer=safefs.Syncer())
            self.budget = Budget(opts.workload_burst, opts.workload_every_s)
            try:
                layout, why_not = memcg_snapshot_layout(self.hier.version), ""
            except ProbeError as exc:  # read from BTF before the compile: its program joins the probes' module
                layout, why_not = None, str(exc)
            self.probes = OomProbes(self._events.append, snapshot_layout=layout,
                                    on_signal=self._signals.append if opts.user_kills else None,
                                    alloc_sites=opts.alloc_sites)
            self.memcg_snap, self.memcg_snap_status = self._load_memcg_snapshot(layout, why_not)
            # compiled now, attached only while a cgroup is near its limit (record/sites.py)
            self.site_probes, self.sites_status = self._load_site_probes()
        except BaseException:
            self.finisher.close()
            raise
        self._post_pending: Dict[int, Tuple[Capture, Written]] = {}
        #: post-mortems done whose capture's fsyncs are not (safefs.Syncer): said once they are
        self._held: List[Finished] = []
        self._next_health_ns = 0
        # The compile's leftovers, given back once both programs are loaded (record/memory.py).
        trim_heap()
        drop_compiler_pages()
        _raise_open_file_limit()  # cgroup v1: an eventfd per limited cgroup (record/sampler.py)
        self.sampler = Sampler(self.hier, top=opts.cgroup or "/",
                               reclaim_reader=self.probes.reclaim_by_pid if self.probes.has_reclaim else None)
        self.evidence = EvidenceGatherer(self.sampler.store, LiveReads(self.hier), self.hier.version)
        self.userkills = UserKills(self.hier, self.sampler.store, self.memcg_snap.take if self.memcg_snap is not None else None,
                                   self.names)
        # memory.high throttling episodes (record/throttle.py): cgroup v2 only (v1 has no memory.high)
        self.throttle = (ThrottleDetector(share=opts.throttle_share) if self.hier.version == 2 and opts.throttle_share > 0
                         else None)
        self._throttle_seen: Dict[str, int] = {}
        self._throttle_base: Dict[str, Dict[int, ReclaimStats]] = {}  # cgroup -> reclaim by pid when its episode began
        self._throttle_due_ns = 0
        self.sites: Optional[SiteSampler] = None
        if self.site_probes is not None:
            self.sites = SiteSampler(self.site_probes, self._near_limit, self._pids_below,
                                     comm_of=lambda pid: (self.sampler.store.proc_info(pid) or (None,))[0],
                                     say=self._say)

    def _load_memcg_snapshot(self, layout, why_not: str):
        """(snapshotter or None, why not): the memcg's own counters read in the kernel at each
        SIGKILL (bpf/memcg_snapshot.c). Without it, kills fall back to the other sources."""
        if layout is not None and not self.probes.with_snapshot:
            why_not = self.probes.snapshot_error or "its program was not compiled"
        if layout is not None and self.probes.with_snapshot:
            try:
                return MemcgSnapshotter(layout, learning_activity(), bpf=self.probes.bpf), "on"
            except ProbeError as exc:
                why_not = str(exc)
        self.err.write(f"oomscope: warning: no kernel snapshot at the kill: {why_not}\n")
        return None, f"unavailable: {why_not}"

    def _load_site_probes(self):
        """(AllocSiteProbes or None, status): bpf/alloc_sites.c compiled, nothing attached."""
        if not self.opts.alloc_sites:
            return None, "off (--no-alloc-sites)"
        try:
            # OOMSCOPE_FAULT_SAMPLING=perf: the sampled perf event instead of the tracepoint (bench/alloc_sites.py)
            if not self.probes.with_sites:
                raise ProbeError(self.probes.sites_error or "its program was not compiled")
            return AllocSiteProbes(os.environ.get("OOMSCOPE_FAULT_SAMPLING", "tracepoint"), bpf=self.probes.bpf), "on near limits"
        except ProbeError as exc:
            self.err.write(f"oomscope: warning: no allocation sites: {exc}\n")
            return None, f"unavailable: {exc}"

    def _say(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()

    def _near_limit(self) -> List[Tuple[str, int, int, Optional[float]]]:
        return [(n.cgroup, n.usage_bytes, n.limit_bytes, n.rate_bytes_per_s) for n in self.sampler.store.near_limit(64)
                if n.usage_bytes is not None and n.limit_bytes]

    def _pids_below(self, cgroup: str) -> set:
        """The processes of ``cgroup`` and of the cgroups below it, as last read."""
        now = time.monotonic_ns()
        store = self.sampler.store
        last = store.latest_before(cgroup, now)
        pids = set(last.pids) if last is not None else set()
        for _cg, sample in store.below(cgroup, now):
            pids.update(sample.pids)
        return pids

    def describe(self) -> str:
        snap = "kernel snapshot at the SIGKILL" if self.memcg_snap is not None else f"kernel snapshot {self.memcg_snap_status}"
        return (f"recording OOM kills: cgroup v{self.hier.version} at {self.hier.root}, "
                f"BPF on oom:mark_victim ({self.probes.headers.how}), {snap}, "
                f"limit notifications: {self.sampler.notifications()}, output {self.opts.output}")

    def request_stop(self, *_args) -> None:
        self.stop.set()

    # --- the loop ---

    def run(self, until: Optional[Callable[[], bool]] = None) -> List[RecordedKill]:
        # no malloc_trim while a kill is in flight: it holds the arena locks (record/heap.py)
        heap.set_busy(lambda: bool(self.joiner.pending) or bool(self.finisher.busy))
        sampler_thread = threading.Thread(target=self.sampler.run, args=(self.stop,), name="sampler", daemon=True)
        self.sampler_thread = sampler_thread
        sampler_thread.start()
        sites_thread = None
        if self.sites is not None:
            sites_thread = threading.Thread(target=self.sites.run, args=(self.stop,), name="sites", daemon=True)
            sites_thread.start()
        deadline = time.monotonic() + self.opts.duration_s if self.opts.duration_s else None
        started = time.monotonic()
        sampling_said = False
        try:
            while not self.stop.is_set():
                # A BPF event ends the wait at once; 100 ms bounds how late a kernel report that
                # came alone (/dev/kmsg) is joined while a kill is in flight, IDLE_POLL_MS otherwise.
                self.probes.poll(self._wait_ms(deadline, until))
                self._drain()
                if not sampling_said and self.sampler.passes:
                    # the first pass reads every cgroup (32 s for 500 on a loaded 2-core host):
                    # until it ends, a cgroup's timeline has not begun (the lab waits for this)
                    sampling_said = True
                    self.err.write(f"oomscope: sampling {self.sampler.store.watched()} cgroups "
                                   f"(first pass done {time.monotonic() - started:.1f} s after start)\n")
                    self.err.flush()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if until is not None and until():
                    break
            # Give a kill in flight its kernel report, then write what is pending.
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                self.probes.poll(50)
                self._drain()
            self._drain(flush=True)
            self._announce(self.finisher.finish(self.downstream.finish_timeout_s), wait_s=SYNC_WAIT_S)
            st = heap.stats()
            if st["trims"] or st["skipped_busy"]:
                self._say(f"oomscope: heap: {st['trims']:.0f} trims, longest {st['max_s'] * 1000:.1f} ms, "
                          f"total {st['total_s']:.2f} s; {st['skipped_busy']:.0f} put off while a kill was in flight")
            for key, nw in self.budget.pending():  # no later post-mortem of theirs will say them
                self.announce.not_written_left(key, nw)
        finally:
            self.stop.set()
            self.finisher.close()
            if self.outputs.syncer is not None:
                self.outputs.syncer.close(timeout=5)
            sampler_thread.join(timeout=5)
            if sites_thread is not None:
                sites_thread.join(timeout=5)
            if self.site_probes is not None:
                self.site_probes.close()
            self.sampler.close()
            if self.memcg_snap is not None:
                self.memcg_snap.close()  # its programs first: they live in the probes' module
            self.probes.close()
            if self.kmsg is not None:
                self.kmsg.close()
            if self.metrics is not None:
                self.metrics.close()
        return list(self.recorded)

    def _wait_ms(self, deadline: Optional[float], until) -> int:
        userkills = getattr(self, "userkills", None)
        busy = until is not None or self.joiner.pending or self.finisher.busy or getattr(self, "_held", None) or \
            (userkills is not None and userkills.pending)
        wait = POLL_MS if busy else IDLE_POLL_MS
        if any(k.event is not None and k.report is None for k in self.joiner.pending):
            wait = REPORT_POLL_MS
        if deadline is not None:
            wait = min(wait, max(1, int((deadline - time.monotonic()) * 1000)))
        return wait

    def _drain(self, flush: bool = False) -> None:
        now = time.monotonic_ns()
        events, self._events[:] = list(self._events), []
        for ev in events:
            if ev.kind == EV_MARK_VICTIM and self.memcg_snap is not None:
                # taken at the victim's SIGKILL, microseconds before oom:mark_victim
                snap = self.memcg_snap.take(ev.victim_pid)
                if snap is not None and -SNAPSHOT_CLOCKS_NS <= ev.ts_ns - snap.ts_ns < SNAPSHOT_MAX_LEAD_NS:
                    ev.memcg_snapshot = snap
            kill = self.joiner.add_event(ev, now)
            if kill is not None and ev.kind == EV_MARK_VICTIM:
                self._on_mark_victim(kill, ev)
        signals, self._signals[:] = list(self._signals), []
        for sig in signals:
            self.userkills.add(sig, now)
        self.userkills.tick(now)
        records = self.kmsg.take() if self.kmsg is not None else ()
        # read by the kmsg thread up to now, after ``now``: a report's first_seen_ns bounds the
        # snapshot taken for it by pid (_snapshot_by_pid: taken before the line was read)
        read_ns = time.monotonic_ns() if records else now
        for rec in kernel_records(records):
            for rep in self.parser.feed(rec):
                self.joiner.add_report(rep, read_ns)
        ready = self.joiner.ready(now, flush=flush)
        if events or records or ready or flush or now >= self._next_health_ns:
            # Losses are looked for before any kill is written, and at least every 250 ms while
            # kills are in flight (every IDLE_POLL_MS when idle): not at every drain.
            self._health(now)
            self._next_health_ns = now + HEALTH_EVERY_NS
            self._wake_worker()
        for kill in ready:
            try:
                self._record(kill)
            except OSError as exc:  # a full disk must not stop the collector
                self.announce.error("writer", f"oomscope: error: could not write the capture of pid {kill.pid}: {exc}")
            except Exception as exc:  # one odd kill must not stop the collector
                self.announce.error("collector", f"oomscope: error: kill of pid {kill.pid} not recorded: {type(exc).__name__}: {exc}")
        if self.throttle is not None and (flush or now >= self._throttle_due_ns):
            self._throttle_due_ns = now + THROTTLE_EVERY_NS
            self._throttle_poll(now, flush)
        for uk in self.userkills.ready(now, flush=flush):
            try:
                self._record_user(uk)
            except OSError as exc:
                self.announce.error("writer", f"oomscope: error: could not write the capture of pid {uk.pid}: {exc}")
            except Exception as exc:  # one odd kill must not stop the collector
                self.announce.error("collector", f"oomscope: error: user-space kill of pid {uk.pid} not recorded: "
                                                 f"{type(exc).__name__}: {exc}")
        self._announce(self.finisher.results())

    def _wake_worker(self) -> None:
        wake = getattr(self.finisher, "wake", None)
        if wake is None or self.finisher.busy:
            return  # in-process, or working
        if getattr(self.finisher, "proc", True) is not None:  # running: kept while a kill may come
            keep = getattr(self.finisher, "keep", None)
            if keep is not None and self._near_a_limit():
                keep()
            return
        # a kill in flight (its capture is being built: the worker starts meanwhile), or one near
        if any(_may_be_in_scope(k, self.opts.cgroup) for k in self.joiner.pending) or self._near_a_limit():
            wake()

    def _near_a_limit(self) -> bool:
        """A watched cgroup at ATTACH_RATIO of its limit and growing: the growth sites' own test for
        attaching their sampling (record/sites.py, SiteSampler._tick), asked here of the sampler's
        readings, so that it holds with or without that sampling (--no-alloc-sites, no BPF for it)."""
        return any(n.limit_bytes and n.usage_bytes >= ATTACH_RATIO * n.limit_bytes and growing(n.rate_bytes_per_s, n.limit_bytes)
                   for n in self.sampler.store.near_limit(64))

    def _on_mark_victim(self, kill: PendingKill, ev: OomEvent) -> None:
        """What must be read at once, before the victim is gone: its cgroup and command line."""
        if kill.proc_cgroup is None:
            # Race the exit: a task that has exited reads as "/" (treated as unknown).
            kill.proc_cgroup = procfs.read_memory_cgroup(ev.victim_pid, self.hier.version)
            kill.proc_cmdline = procfs.read_cmdline(ev.victim_pid) or None
            if kill.proc_cgroup is None and ev.victim_parent_pid:
                # A child starts in its parent's cgroup; the parent usually outlives it.
                kill.parent_cgroup = procfs.read_memory_cgroup(ev.victim_parent_pid, self.hier.version)

    def _health(self, now_ns: int) -> None:
        # (after a stop, the sampler ends by design: not a death to report)
        watched = {} if self.stop.is_set() else {"sampler": (self.sampler_thread, self.sampler.heartbeat)}
        if watched and self.kmsg is not None and getattr(self.kmsg, "error", None) is None:
            # a reader that stopped on an error is said by the losses (Losses.update), not twice
            watched["kmsg"] = (getattr(self.kmsg, "thread", None), self.kmsg)
        changes = self.watchdog.check(now_ns, watched)
        self.announce.threads(changes, now_ns)
        if changes or now_ns >= self._status_due_ns:
            self._status_due_ns = now_ns + STATUS_EVERY_NS
            self._write_status(now_ns)
        losses = {"bpf_events": self.probes.lost, "dropped_cgroups": self.sampler.dropped_cgroups,
                  "late_events": self.joiner.late_events, "late_reports": self.joiner.late_reports}
        if self.kmsg is not None:
            lost = getattr(self.kmsg, "lost_records", 0)  # a property of KmsgFollower (kernel/kmsg.py)
            losses["kmsg_records"] = lost() if callable(lost) else lost
        self.announce.health(
            now_ns=now_ns, sampler_errors=self.sampler.errors + self.sampler.store.errors, events_lost=self.probes.lost,
            watched=self.sampler.store.watched(),
            losses=losses, kmsg_error=getattr(self.kmsg, "error", None), kmsg_open=self.kmsg is not None,
            notify_errors=self.sampler.notify.errors, notify_error=self.sampler.notify.last_error,
            near_limit=self.sampler.store.near_limit)

    def _write_status(self, now_ns: int) -> None:
        """recorder-status.json for ``oomscope doctor -o`` (record/status.py)."""
        threads = {n: (st.state, (now_ns - st.since_ns) / 1e9, st.where) for n, st in self.watchdog.states.items()}
        losses = {k: int(v) for k, v in self.announce.losses.seen.items()}
        try:
            with safefs.Dir(self.opts.output) as d:
                d.write(STATUS_FILE, status_document(threads, self.kills_recorded, losses))
        except (OSError, OomscopeError) as exc:
            if not self._status_error_said:  # said once: the kills' own files are what matters
                self._status_error_said = True
                self.announce.error("writer", f"oomscope: warning: could not write {STATUS_FILE}: {exc}")

    # --- one kill ---

    def _record(self, kill: PendingKill) -> None:
        kill_ns = kill.kill_ns or time.monotonic_ns()
        if kill.event is None and self.memcg_snap is not None:
            # first: it places a kill whose report names no cgroup (evidence.py: locate)
            kill.memcg_snapshot = self._snapshot_by_pid(kill.pid, kill.first_seen_ns)
        head, group = self.outputs.head_for(kill.report, kill_ns)
        placement = place(kill.report, self.evidence.locate(kill) if _report_cgroup(kill) is None else None,
                          head.capture.cgroup.oom_memcg if head is not None else None,
                          self.sampler.store.limited_ancestor, self.hier.version,
                          kill.event.victim_parent_pid if kill.event is not None else None)
        if not self._in_scope(placement):
            self.joiner.not_written(kill.pid)  # its late event is no loss of --cgroup's
            return
        workload = workload_of(placement.cgroup.task_memcg or placement.cgroup.oom_memcg, self.names)
        key = workload_key(workload, placement.cgroup)
        wall = dt.datetime.now(dt.timezone.utc)
        # a member of a memory.oom.group kill rides on its first victim's admission: one kill of the group
        admitted = self.budget.admit(key, wall.isoformat(timespec="milliseconds")) if head is None else None
        for old_key, nw in self.budget.forgotten:
            self.announce.not_written_left(old_key, nw)
        self.budget.forgotten.clear()
        if admitted is not None and not admitted.write:
            comm = (kill.event.victim_comm if kill.event is not None else None) or \
                (kill.report.killed.comm if kill.report is not None and kill.report.killed is not None else "")
            stub = Capture(kill_id="", victim=Victim(kill.pid, comm or ""), cgroup=placement.cgroup, workload=workload,
                           times=Times(kill_wall=wall.isoformat(timespec="milliseconds")))
            self.announce.not_written(stub, key, admitted.starts_drop, self.budget.words())
            self.joiner.not_written(kill.pid)  # counted by the budget: its late event is no loss
            return
        evidence = self.evidence.gather(kill, placement, kill_ns, self.memcg_snap_status,
                                        (head.state, head.capture.tasks) if head is not None else None)
        if kill_ns - self._host_read_ns > HOST_FACTS_MAX_AGE_NS:
            self.recording.host = procfs.read_host(self.hier.version)
            self._host_read_ns = time.monotonic_ns()
        capture = build_capture(kill.pid, kill.event, kill.report, placement, evidence, self.recording, wall, kill.kill_ns)
        if self.sites is not None:
            found = self.sites.for_kill(placement.described or placement.cgroup.task_memcg, kill_ns)
            if found is not None:
                add_sites(capture, found, kill_ns)
        capture.workload = workload
        capture.not_written = admitted.not_written if admitted is not None else None
        capture.notes.extend(self.announce.losses.notes_for_kill(kill_ns))
        capture.notes.extend(self.watchdog.notes_for_kill(kill_ns))
        written = self.outputs.write(capture, kill_ns, head, group)
        self._post_pending[written.job] = (capture, written)

    def _snapshot_by_pid(self, pid: int, report_read_ns: int):
        """The snapshot of a kill without its event: lost by a full perf buffer, or still unread
        when its Killed line had waited its time. The program keeps it by pid whether or not the
        event is read (bpf/memcg_snapshot.c). Taken before the Killed line reached record, on the
        same clock (CLOCK_MONOTONIC, not the printk clock): one taken after is another SIGKILL's
        (a pid reused), one from longer before than a report's wait another kill's."""
        snap = self.memcg_snap.take(pid)
        if snap is not None and 0 <= report_read_ns - snap.ts_ns < SNAPSHOT_BY_PID_NS:
            return snap
        return None

    def _throttle_poll(self, now: int, flush: bool = False) -> None:
        """Each cgroup with a memory.high: its new reading to the detector; an episode that ended is
        written as a throttle report (capture/throttle.py)."""
        store = self.sampler.store
        cgroups = store.cgroups()
        gone = [cg for cg in self._throttle_seen if cg not in cgroups]
        ended: List[Episode] = self.throttle.forget(gone)
        for cg in gone:
            self._throttle_seen.pop(cg, None)
        for cg in cgroups:
            s = store.latest_before(cg, now)
            if s is None or s.t_ns == self._throttle_seen.get(cg):
                continue
            st = s.state
            # every v2 cgroup is fed, memory.high set or not (memory.events high rises only over a
            # memory.high, so none is an episode without one): the reading before memory.high is set
            # is the baseline of the stall that follows. Fed only once memory.high was set, the first
            # reading after it was the baseline, and the stall between the two was lost (VM runs: the
            # report's stall 0.2-0.9 s below the workload's slowdown, -25% on 6.12); and a cgroup
            # whose memory.high was lifted is still read while its episode is open (VM run, 6.1)
            if "high" not in st.memory_events or "some_total_us" not in st.pressure:
                continue
            self._throttle_seen[cg] = s.t_ns
            was_active = cg in self._throttle_base
            got, added = self.throttle.feed(cg, ThrottleReading(
                s.t_ns, st.memory_events["high"], st.memory_high_bytes, st.pressure["some_total_us"],
                st.pressure.get("full_total_us", 0.0), st.usage_bytes, st.pressure.get("some_avg10"), st.pressure.get("full_avg10")))
            if cg in self._throttle_base and not self.throttle.is_active(cg) and not got:
                self._throttle_base.pop(cg, None)  # a burst too short to report
            if added and not was_active:
                read = store.reclaim_read(0)
                self._throttle_base[cg] = dict(read[1]) if read is not None else {}
            if added and self.metrics is not None:
                self.metrics.throttled_seconds(cg, workload_of(cg, self.names), added)
            ended += got
        if flush:
            ended += self.throttle.flush()
        for ep in ended:
            try:
                self._record_throttle(ep, now)
            except Exception as exc:  # one odd episode must not stop the collector
                self.announce.error("collector", f"oomscope: error: throttling episode of {terminal_safe(ep.cgroup)} not written: "
                                                 f"{type(exc).__name__}: {exc}")

    def _record_throttle(self, ep: Episode, now: int) -> None:
        store = self.sampler.store
        base = self._throttle_base.pop(ep.cgroup, {})
        read = store.reclaim_read(now)
        by_pid = read[1] if read is not None else {}
        mine = {pid for pid, cg in store.pids_in(by_pid).items() if cgroup_within(cg, ep.cgroup)}
        reclaim = {}
        for pid in mine:
            r = by_pid[pid]
            b = base.get(pid)
            reclaim[pid] = ReclaimStats(memcg_runs=r.memcg_runs - (b.memcg_runs if b else 0),
                                        memcg_ns=r.memcg_ns - (b.memcg_ns if b else 0),
                                        memcg_pages=r.memcg_pages - (b.memcg_pages if b else 0))
        last = store.latest_before(ep.cgroup, ep.end_ns)
        state = dataclasses.replace(last.state, age_ms=0.0) if last is not None else None
        capture = build_throttle_capture(ep, self.opts.throttle_share, self.hier.version, self.recording.host,
                                         self.recording.clock_offset_ns, state, store.timeline(ep.cgroup, ep.end_ns),
                                         self.evidence.live.tasks(ep.cgroup), reclaim)
        capture.workload = workload_of(ep.cgroup, self.names)
        written = self.outputs.write(capture, ep.end_ns)
        self._post_pending[written.job] = (capture, written)

    def _record_user(self, uk: UserKill) -> None:
        """A user-space memory kill (record/userkill.py): placed, budgeted, gathered and built as a
        kernel kill is, then named (capture/userspace.py)."""
        limited = self.sampler.store.limited_ancestor(uk.target_cgroup) if uk.target_cgroup else None
        placement = place_user_kill(uk.target_cgroup, limited, self.hier.version)
        if not self._in_scope(placement):
            return
        workload = workload_of(placement.cgroup.task_memcg or placement.cgroup.oom_memcg, self.names)
        key = workload_key(workload, placement.cgroup)
        wall = dt.datetime.now(dt.timezone.utc)
        admitted = self.budget.admit(key, wall.isoformat(timespec="milliseconds"))
        event = victim_event(uk.event, uk.target_task, uk.snapshot)
        if not admitted.write:
            stub = Capture(kill_id="", victim=Victim(uk.pid, uk.event.target_comm), cgroup=placement.cgroup, workload=workload,
                           times=Times(kill_wall=wall.isoformat(timespec="milliseconds")))
            self.announce.not_written(stub, key, admitted.starts_drop, self.budget.words())
            return
        kill = PendingKill(pid=uk.pid, first_seen_ns=uk.first_seen_ns, event=event, proc_cgroup=uk.target_cgroup,
                           proc_cmdline=uk.target_cmdline)
        evidence = self.evidence.gather(kill, placement, uk.kill_ns, self.memcg_snap_status)
        capture = build_capture(uk.pid, event, None, placement, evidence, self.recording, wall)
        finish_user_capture(capture, uk.killer, uk.target_task is not None)
        capture.workload = workload
        capture.not_written = admitted.not_written
        capture.notes.extend(self.announce.losses.notes_for_kill(uk.kill_ns))
        written = self.outputs.write(capture, uk.kill_ns)
        self._post_pending[written.job] = (capture, written)

    def _announce(self, finished: List[Finished], wait_s: float = 0.0) -> None:
        """Kills whose post-mortem is done (or failed) and whose capture is on disk (its fsyncs,
        taken beside this loop: safefs.Syncer, waited for up to ``wait_s`` each): their line, the
        metrics, ``recorded``. The others are held until a later call finds them synced."""
        held, self._held = self._held + list(finished), []
        for done in held:
            entry = self._post_pending.get(done.job)
            if entry is None:
                continue
            capture, written = entry
            synced, sync_error = self.outputs.synced(written, wait_s)
            if not synced:  # fsyncs are taken in order: the kills after it wait too, in their order
                self._held.append(done)
                continue
            del self._post_pending[done.job]
            if sync_error is not None:
                self.announce.error("writer", f"oomscope: error: the capture of pid {capture.victim.pid} may not be on "
                                              f"disk ({sync_error}): {written.capture_path}")
            written.html_path, written.render_error = done.html_path, done.error
            if done.error:
                self.announce.error("render", f"oomscope: error: post-mortem not rendered ({terminal_safe(done.error)}); "
                                              f"the capture is at {written.capture_path}")
            self.recorded.append(RecordedKill(capture.kill_id, capture.cgroup.oom_memcg, written.capture_path, written.html_path))
            self.kills_recorded += 1
            self.announce.kill(capture, written, done.category, done.cause, done.series)

    def _in_scope(self, placement: Placement) -> bool:
        """--cgroup: only kills within it. An unknown cgroup is kept: the capture says it is unknown."""
        if self.opts.cgroup is None:
            return True
        cg = placement.cgroup
        return (cg.task_memcg is None or cgroup_within(cg.task_memcg, self.opts.cgroup)
                or (cg.oom_memcg is not None and cgroup_within(cg.oom_memcg, self.opts.cgroup)))


THROTTLE_EVERY_NS = 1_000_000_000  # readings are handed to the throttling detector once a second
# A SIGKILL older than this before oom:mark_victim was not the OOM killer's (a pid reused since):
# the program keeps one younger than 1 s at mark_victim (bpf/memcg_snapshot.c). The event's own
# time is read by another program of the same tracepoint, before or after a snapshot taken there
# (a victim marked without a SIGKILL): it may lead the snapshot by SNAPSHOT_CLOCKS_NS.
SNAPSHOT_MAX_LEAD_NS = 1_100_000_000
SNAPSHOT_CLOCKS_NS = 50_000_000
# A kill without its event takes the snapshot of its pid taken at most this long before its
# Killed line was read (the reader behind in a storm: the joiner's own window, record/joiner.py)
SNAPSHOT_BY_PID_NS = 10_000_000_000


def _may_be_in_scope(kill: PendingKill, scope: Optional[str]) -> bool:
    """A kill in flight that --cgroup will keep (``_in_scope`` decides once it is placed): the
    victim's cgroup as read at its event, or as its report names it, within the scope. Only such
    a kill wakes a worker gone idle: with --cgroup, every kill elsewhere on the host (another
    team's storm) woke it and kept it, 20 MiB anonymous, for nothing (bench/lean.py: the worker of
    a 500-cgroup run never left while a soak killed beside it). A kill whose cgroup is not known
    yet does not wake it (a victim gone before /proc/<pid>/cgroup was read, its report a few ms
    behind its event: the same run's worker was still woken by them); its report's cgroup comes
    at the next drain, and a kill recorded without any starts the worker by its request."""
    if scope is None:
        return True
    cgroup = kill.proc_cgroup or _report_cgroup(kill)  # not its parent's: a guess that may move
    return cgroup is not None and cgroup_within(cgroup, scope)


def _report_cgroup(kill: PendingKill) -> Optional[str]:
    """The victim's cgroup as the kernel's report names it (then nothing need be located)."""
    summary = kill.report.summary if kill.report is not None else None
    return summary.task_memcg if summary is not None else None


def kernel_records(records):
    """The records the kernel itself logged. A process that may write /dev/kmsg (root in a
    privileged container) can print a forged OOM report, but never as the kernel: a write always
    gets a facility other than 0, LOG_USER unless it names another (kernel/printk/printk.c,
    devkmsg_write)."""
    return [r for r in records if r.facility == 0]


def install_signal_handlers(collector: Collector) -> None:
    signal.signal(signal.SIGINT, collector.request_stop)
    signal.signal(signal.SIGTERM, collector.request_stop)


def _raise_open_file_limit(want: int = 65536) -> None:
    """The soft limit on open files up to the hard one (at most ``want``). On cgroup v1 the sampler
    holds one eventfd per limited cgroup, and a shell's or systemd's default soft limit is 1024;
    a cgroup that gets no eventfd is still polled."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
