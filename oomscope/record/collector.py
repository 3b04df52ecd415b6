"""The collector behind ``oomscope record``.

One thread samples cgroupfs (sampler.Sampler); the main loop polls the BPF perf buffer and
/dev/kmsg, joins the two records of each kill (joiner.KillJoiner), and writes a capture and a
post-mortem per kill. Stops on SIGINT/SIGTERM, at ``duration``, or when ``until()`` says so; kills
still pending then are written before it returns.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import datetime as dt
import signal
import sys
import threading
import time
from typing import Callable, List, Optional, TextIO

from ..analysis.attribution import analyse
from ..containers import NodeNames, workload_of
from ..metrics import Metrics
from ..terminal import terminal_safe
from ..errors import EnvironmentProblem, ProbeError
from ..kernel import btf, procfs
from ..kernel.cgroupfs import MemoryHierarchy, cgroup_within
from ..kernel.kmsg import KmsgFollower, KmsgReader, OomReportParser
from ..model import SOURCE_AFTER_KILL, Capture, CgroupUsage, ReclaimAtKill, Timeline
from ..layouts import EV_MARK_VICTIM, SNAP_MARK_VICTIM, SNAP_SIGKILL, OomEvent
from ..probes import ChargeTracker, OomProbes, charge_tracking_layout, charge_tracking_support
from . import charges
from .assemble import KillContext, build_capture
from ..report.index import OutputIndex
from .incidents import GroupLinker, Head
from .joiner import KillJoiner, PendingKill
from .sampler import Sampler, clock_offset_ns
from .retention import Retention
from .writer import atomic_write, write_kill


@dataclasses.dataclass
class RecordedKill:
    capture: Capture
    capture_path: str
    html_path: Optional[str]


@dataclasses.dataclass
class RecordOptions:
    output: str
    duration_s: Optional[float] = None
    cgroup: Optional[str] = None  # only kills within this cgroup (and only it is sampled)
    charge_tracking: str = "auto"  # auto | on | off
    metrics_addr: Optional[str] = None  # HOST:PORT for Prometheus metrics
    log_format: str = "text"  # text | json: the per-kill line on stdout
    keep: Optional[str] = None  # N (post-mortems) or Nd (days): prune older ones


def _mib(v: Optional[int]) -> str:
    return "?" if v is None else f"{v / 1048576:.1f}MiB"


class Collector:
    def __init__(
        self,
        opts: RecordOptions,
        render_html: Callable[..., str],  # (capture, analysis=None) -> html
        out: TextIO,
        err: TextIO,
    ):
        self.opts = opts
        self.render_html = render_html
        self.out = out
        self.err = err
        self.stop = threading.Event()
        self.recorded: List[RecordedKill] = []
        self.hier = MemoryHierarchy.detect()
        if opts.cgroup is not None and not self.hier.exists(opts.cgroup):
            raise EnvironmentProblem(f"no such memory cgroup: {opts.cgroup}")
        self.joiner = KillJoiner()
        self.parser = OomReportParser()
        self.groups = GroupLinker()
        self.index = OutputIndex(opts.output)
        self.names = NodeNames()
        self.metrics: Optional[Metrics] = None
        if opts.metrics_addr:
            self.metrics = Metrics()
            self.metrics.serve(opts.metrics_addr)
        self.retention = Retention.parse(opts.keep) if opts.keep else None
        self._sampler_errors_seen = 0
        self._index_dirty = False
        self._index_written = 0.0
        self._lost_seen = 0
        self.host = procfs.read_host(self.hier.version)
        self.clock_offset = clock_offset_ns()
        self._events: List[OomEvent] = []
        try:
            self.kmsg: Optional[KmsgFollower] = KmsgFollower(KmsgReader())
        except OSError as exc:
            self.kmsg = None
            self.err.write(f"oomscope: warning: cannot read /dev/kmsg ({exc.strerror}); captures will lack the kernel's report\n")
        self.probes = OomProbes(self._events.append)
        self.charge, self.charge_status = self._load_charge_tracking(opts.charge_tracking)
        self.charge_misses: collections.Counter = collections.Counter()  # why a kill had no reconstruction
        self._snapshots: "collections.OrderedDict[int, list]" = collections.OrderedDict()  # pid -> [(ts, kind, counters)]
        _raise_open_file_limit()  # cgroup v1: an eventfd per limited cgroup (record/sampler.py)
        self.sampler = Sampler(self.hier, top=opts.cgroup or "/",
                               reclaim_reader=self.probes.reclaim_by_pid if self.probes.has_reclaim else None,
                               charge=self.charge, charge_mode=opts.charge_tracking)

    def _load_charge_tracking(self, mode: str):
        """(tracker or None, why it is off). --charge-tracking=on on a kernel without it is an error."""
        if mode == "off":
            return None, "off (--charge-tracking=off)"
        why = charge_tracking_support()
        enums = types = None
        if why is None:
            try:
                types = btf.kernel_types()
                if types is not None:
                    enums = btf.parse_enums(types.blob, ("node_stat_item", "memcg_stat_item", "vm_event_item"))
            except btf.BtfError as exc:
                why = f"the kernel's BTF could not be read ({exc})"
            if types is None and why is None:
                why = "the kernel has no BTF (/sys/kernel/btf/vmlinux) to name the stat items"
            elif enums is not None and (len(enums) < 3 or "MEMCG_NR_STAT" not in enums["memcg_stat_item"]):
                why = "the kernel's BTF lacks the memcg stat enums"
        if why is None:
            try:
                return ChargeTracker(enums, charge_tracking_layout(types)), ""
            except ProbeError as exc:
                why = str(exc)
        if mode == "on":
            raise EnvironmentProblem(f"--charge-tracking=on: {why}")
        return None, f"unavailable: {why}"

    def charge_state(self) -> str:
        if self.charge is None:
            return self.charge_status
        mode = self.opts.charge_tracking
        return ("on" if self.charge.attached else "off") + (" (auto: attached while a cgroup is near its limit)" if mode == "auto" else "")

    def describe(self) -> str:
        if self.charge is None:
            charge = f"charge tracking {self.charge_status}"
        elif self.opts.charge_tracking == "on":
            charge = "charge tracking on"
        else:
            charge = "charge tracking auto (attached while a cgroup is above 90% of its limit)"
        return (f"recording OOM kills: cgroup v{self.hier.version} at {self.hier.root}, "
                f"BPF on oom:mark_victim ({self.probes.headers.how}), {charge}, "
                f"limit notifications: {self.sampler.notifications()}, output {self.opts.output}")

    def request_stop(self, *_args) -> None:
        self.stop.set()

    def run(self, until: Optional[Callable[[], bool]] = None) -> List[RecordedKill]:
        # The sampler reads memory.stat between two reads of the charge counters; with the
        # default 5 ms switch interval, the main thread (rendering post-mortems in a storm) held
        # it up long enough between them for the pair to be useless. 0.5 ms keeps them close.
        sys.setswitchinterval(0.0005)
        sampler_thread = threading.Thread(target=self.sampler.run, args=(self.stop,), name="sampler", daemon=True)
        sampler_thread.start()
        deadline = time.monotonic() + self.opts.duration_s if self.opts.duration_s else None
        try:
            while not self.stop.is_set():
                self.probes.poll(50)
                self._drain()
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
            self._write_index(force=True)
            if self.charge is not None and self.sampler.unpaired:
                self.charge_misses["(samples whose counter reads were too far apart: %d)" % self.sampler.unpaired] += 0
            if self.charge_misses:
                self.err.write("oomscope: kills without a reconstructed state: "
                               + ", ".join(f"{n} {why}" for why, n in self.charge_misses.items()) + "\n")
        finally:
            self.stop.set()
            sampler_thread.join(timeout=5)
            self.sampler.close()
            self.probes.close()
            if self.charge is not None:
                self.charge.close()
            if self.kmsg is not None:
                self.kmsg.close()
            if self.metrics is not None:
                self.metrics.close()
        return self.recorded

    def _drain(self, flush: bool = False) -> None:
        now = time.monotonic_ns()
        events, self._events[:] = list(self._events), []
        if self.charge is not None and events:
            self._collect_snapshots()
        for ev in events:
            kill = self.joiner.add_event(ev, now)
            if kill is not None and ev.kind == EV_MARK_VICTIM and self.charge is not None:
                kill.charge_generation = self.charge.generation_at(ev.ts_ns)
            if kill is not None and ev.kind == EV_MARK_VICTIM and kill.proc_cgroup is None:
                # Race the exit: a task that has exited reads as "/" (treated as unknown).
                kill.proc_cgroup = procfs.read_memory_cgroup(ev.victim_pid, self.hier.version)
                kill.proc_cmdline = procfs.read_cmdline(ev.victim_pid) or None
                if kill.proc_cgroup is None and ev.victim_parent_pid:
                    # A child starts in its parent's cgroup; the parent usually outlives it.
                    kill.parent_cgroup = procfs.read_memory_cgroup(ev.victim_parent_pid, self.hier.version)
        if self.kmsg is not None:
            for rec in self.kmsg.take():
                for rep in self.parser.feed(rec):
                    self.joiner.add_report(rep, now)
        for kill in self.joiner.ready(now, flush=flush):
            try:
                self._write(kill)
            except OSError as exc:  # a full disk must not stop the collector
                self.err.write(f"oomscope: error: could not write the capture of pid {kill.pid}: {exc}\n")
                if self.metrics is not None:
                    self.metrics.errors.labels("writer").inc()
            except Exception as exc:  # noqa: BLE001 - one odd kill must not stop the collector
                self.err.write(f"oomscope: error: kill of pid {kill.pid} not recorded: {type(exc).__name__}: {exc}\n")
                if self.metrics is not None:
                    self.metrics.errors.labels("collector").inc()
        self._write_index()  # a pending index.html once the storm quietens
        if self.metrics is not None:
            new_errors = self.sampler.errors - self._sampler_errors_seen
            if new_errors > 0:
                self.metrics.errors.labels("sampler").inc(new_errors)
                self._sampler_errors_seen = self.sampler.errors
            lost = self.probes.lost - self._lost_seen
            if lost > 0:
                self.metrics.errors.labels("probe").inc(lost)  # BPF events lost in the perf buffer
                self._lost_seen = self.probes.lost
            self.metrics.charge.set(1 if self.charge is not None and self.charge.attached else 0)
            self.metrics.watched.set(self.sampler.watched())
            self.metrics.lost.set(self.probes.lost)

    def _context(self, kill: PendingKill) -> KillContext:
        ctx = KillContext(cgroup_version=self.hier.version, host=self.host, clock_offset_ns=self.clock_offset,
                          reaped_ns=kill.reaped_ns, duplicates=kill.duplicates)
        rep = kill.report
        summary = rep.summary if rep is not None else None
        task_memcg = summary.task_memcg if summary is not None else None
        oom_memcg = (summary.oom_memcg if summary is not None else None) or (rep.stats_cgroup if rep else None)
        if task_memcg is None:
            ctx.task_memcg_guess = self._guess_cgroup(kill)
            if ctx.task_memcg_guess is not None:
                task_memcg = ctx.task_memcg_guess[0]
        is_global = (summary is not None and summary.constraint == "CONSTRAINT_NONE") or (
            rep is not None and rep.killed is not None and rep.killed.message == "Out of memory")
        if is_global:
            oom_memcg = task_memcg  # no limit was hit: describe the victim's own cgroup
        elif oom_memcg is None and task_memcg is not None:
            oom_memcg = self.sampler.limited_ancestor(task_memcg)
            ctx.oom_memcg_guess = oom_memcg
        kill_ns = kill.kill_ns or time.monotonic_ns()
        ctx.charge_tracking = self.charge_state()
        if oom_memcg is not None:
            ctx.reconstructed = self._reconstruct(kill, oom_memcg, kill_ns, hit_limit=not is_global)
            sample = self.sampler.latest_before(oom_memcg, kill_ns)
            if sample is not None:
                ctx.last_sample = dataclasses.replace(sample.state, age_ms=(kill_ns - sample.t_ns) / 1e6)
            for path in [oom_memcg] + ([task_memcg] if task_memcg and task_memcg != oom_memcg else []):
                points = self.sampler.timeline(path, kill_ns)
                if points:
                    ctx.timelines.append(Timeline(path, points, _reclaim_at_kill(self.sampler.reclaim_of(path, kill_ns), kill_ns)))
            for path, sample in self.sampler.below(oom_memcg, kill_ns):
                ctx.sharing.append(CgroupUsage(path, sample.state.usage_bytes, "last_sample", (kill_ns - sample.t_ns) / 1e6))
            after = self.hier.read_state(oom_memcg, SOURCE_AFTER_KILL)
            if after is not None:
                after.age_ms = (kill_ns - time.monotonic_ns()) / 1e6  # negative: read after the kill
                ctx.after_kill = after
        # Command lines: the sampler's, when the comm it saw is still the comm at the kill (an
        # exec or a rename since makes it stale); else /proc now (the victim's read on the event).
        comms = {t.pid: t.name for t in rep.tasks} if rep is not None else {}
        victim_comm = (kill.event.victim_comm if kill.event else None) or (rep.killed.comm if rep and rep.killed else None)
        if victim_comm:
            comms[kill.pid] = victim_comm
        for pid, comm in comms.items():
            info = self.sampler.proc_info(pid)
            if info is not None and info[0] == comm and info[1]:
                ctx.proc_info[pid] = info
            elif pid == kill.pid and kill.proc_cmdline:
                ctx.proc_info[pid] = (comm, kill.proc_cmdline)
            elif pid != kill.pid:
                cmdline = procfs.read_cmdline(pid)
                if cmdline:
                    ctx.proc_info[pid] = (comm, cmdline)
        if (rep is None or not rep.tasks) and task_memcg is not None:
            for pid in self.hier.procs(task_memcg):
                t = procfs.read_task(pid, SOURCE_AFTER_KILL)
                if t is not None:
                    ctx.live_tasks.append(t)
        return ctx

    def _collect_snapshots(self) -> None:
        for pid, ts, kind, snap in self.charge.snapshots():
            self._snapshots.setdefault(pid, []).append((ts, kind, snap))
            self._snapshots.move_to_end(pid)
        while len(self._snapshots) > 4096:
            self._snapshots.popitem(last=False)

    def _snapshot_for(self, pid: int, kill_ns: int):
        """The snapshot taken when the victim's SIGKILL was sent (it precedes oom:mark_victim by
        microseconds), else the one at oom:mark_victim."""
        found = None
        for ts, kind, snap in self._snapshots.get(pid, ()):
            if kind == SNAP_SIGKILL and 0 <= kill_ns - ts < 5_000_000:
                return snap
            if kind == SNAP_MARK_VICTIM and abs(ts - kill_ns) < 5_000_000:
                found = snap
        return found

    def _reconstruct(self, kill: PendingKill, cgroup: str, kill_ns: int, hit_limit: bool):
        """Sample + in-kernel counter deltas up to oom:mark_victim, when the counters cover it."""
        if self.charge is None:
            return None
        if kill.charge_snapshot is None and kill.event is not None:
            self._collect_snapshots()
            kill.charge_snapshot = self._snapshot_for(kill.pid, kill.event.ts_ns)
        if kill.charge_snapshot is None:
            if kill.event is not None and self.charge.attached_at(kill.event.ts_ns):
                self.charge_misses["no snapshot at the kill"] += 1
            return None
        # The latest sample read with counters of the same generation: the watched set (and the
        # attachment) did not change between it and the kill.
        sample = self.sampler.latest_paired_before(cgroup, kill_ns, kill.charge_generation)
        if sample is None:
            self.charge_misses["no paired sample before the kill"] += 1
            return None
        state = charges.reconstruct(self.hier.version, sample.state, self.sampler.ino(cgroup),
                                    self.sampler.subtree_inos(cgroup), sample.counters, kill.charge_snapshot,
                                    (kill_ns - sample.t_ns) / 1e6, hit_limit)
        if state is None:
            self.charge_misses["subtree not covered by the counters"] += 1
        return state

    def _guess_cgroup(self, kill: PendingKill):
        """The victim's memory cgroup when the kernel's report does not name it, best first."""
        if kill.proc_cgroup is not None:
            return kill.proc_cgroup, "proc_read"
        scanned = self.sampler.cgroup_of_pid(kill.pid)
        if scanned is not None:
            return scanned, "sampler_scan"
        if kill.parent_cgroup is not None:
            return kill.parent_cgroup, "fork_parent"
        parent = kill.event.victim_parent_pid if kill.event is not None else None
        if parent:
            scanned = self.sampler.cgroup_of_pid(parent)
            if scanned is not None:
                return scanned, "fork_parent"
        return None

    def _write(self, kill: PendingKill) -> None:
        ctx = self._context(kill)
        rep = kill.report
        head = None
        group = rep.group_kill_cgroup if rep is not None and not rep.has_header else None
        if group is not None:
            head = self.groups.head_for(group, kill.kill_ns or time.monotonic_ns())
            if head is not None:
                # A member of a memory.oom.group kill: the same moment as the head's report.
                ctx.incident_state = head.state
                ctx.incident_oom_memcg = head.capture.cgroup.oom_memcg
                ctx.incident_tasks = head.capture.tasks
        capture = build_capture(kill.pid, kill.event, kill.report, ctx, dt.datetime.now(dt.timezone.utc))
        capture.workload = workload_of(capture.cgroup.task_memcg or capture.cgroup.oom_memcg, self.names)
        if self.opts.cgroup is not None and not (
            # An unknown cgroup is kept: the capture says it is unknown.
            capture.cgroup.task_memcg is None
            or cgroup_within(capture.cgroup.task_memcg, self.opts.cgroup)
            or (capture.cgroup.oom_memcg is not None and cgroup_within(capture.cgroup.oom_memcg, self.opts.cgroup))
        ):
            return
        if head is not None:
            self.groups.link(head, capture, group)
        try:
            analysis = analyse(capture)  # once: for the post-mortem, the line, the metrics and the index
        except Exception:  # noqa: BLE001 - the renderer reports it; the capture is written regardless
            analysis = None
        capture_path, html_path, render_error = write_kill(
            self.opts.output, capture, lambda cap: self.render_html(cap, analysis) if analysis is not None else self.render_html(cap))
        self.recorded.append(RecordedKill(capture, capture_path, html_path))
        self.groups.note_written(Head(capture, capture_path, html_path, kill.kill_ns or time.monotonic_ns(),
                                      capture.at_kill_sources.get("kernel_report")))
        if head is not None:
            self._rewrite(head)
        c = capture
        category = analysis.top_categories[0] if analysis is not None and analysis.top_categories else ""
        if self.opts.log_format == "json":
            line = json.dumps({
                "event": "oom_kill", "time": c.times.kill_wall, "kill_id": c.kill_id, "pid": c.victim.pid,
                "comm": c.victim.comm, "oom_memcg": c.cgroup.oom_memcg, "task_memcg": c.cgroup.task_memcg,
                "workload": dataclasses.asdict(c.workload), "usage_bytes": c.at_kill.usage_bytes,
                "limit_bytes": c.at_kill.limit_bytes, "state_source": c.at_kill.source, "category": category,
                "incident": c.incident.id if c.incident else None, "postmortem": html_path, "capture": capture_path,
            }, ensure_ascii=True)
        else:
            line = (f"{c.times.kill_wall} kill pid={c.victim.pid} comm={terminal_safe(c.victim.comm)!r} "
                    f"memcg={terminal_safe(c.cgroup.oom_memcg or '?')} usage={_mib(c.at_kill.usage_bytes)} "
                    f"limit={_mib(c.at_kill.limit_bytes)} state={c.at_kill.source}"
                    + (f" workload={terminal_safe(c.workload.label())!r}" if c.workload.label() else "")
                    + (f" incident={c.incident.id}" if c.incident else "")
                    + f" -> {html_path or capture_path}")
        if self.metrics is not None:
            self.metrics.kill(c, category)
            self.metrics.captures.inc()
        self.out.write(line + "\n")
        self.out.flush()
        if render_error:
            self.err.write(f"oomscope: error: post-mortem not rendered ({render_error}); the capture is at {capture_path}\n")
        self.index.add(capture_path, capture, analysis)
        if head is not None:
            self.index.add(head.capture_path, head.capture)
        if self.retention is not None:
            for folder in self.retention.prune(self.opts.output, keep={os.path.dirname(capture_path)}):
                self.index.remove(folder)
        self._index_dirty = True
        self._write_index()

    def _write_index(self, force: bool = False) -> None:
        """index.html, at most once a second while kills come in (in a storm, rewriting it for
        every kill took a fifth of the time of writing the kills: measured, 385 kills), and at the end."""
        now = time.monotonic()
        if not self._index_dirty or (not force and now - self._index_written < 1.0):
            return
        try:
            self.index.write(atomic_write)
            self._index_dirty = False
            self._index_written = now
        except OSError as exc:
            self.err.write(f"oomscope: error: could not write index.html: {exc}\n")

    def _rewrite(self, head: Head) -> None:
        """The first victim's capture and post-mortem, again, now listing every victim."""
        atomic_write(head.capture_path, head.capture.to_json())
        if head.html_path is not None:
            try:
                atomic_write(head.html_path, self.render_html(head.capture))
            except Exception as exc:  # noqa: BLE001 - the capture is written; say what failed
                self.err.write(f"oomscope: error: post-mortem of {head.capture.kill_id} not re-rendered: {exc}\n")


def install_signal_handlers(collector: Collector) -> None:
    signal.signal(signal.SIGINT, collector.request_stop)
    signal.signal(signal.SIGTERM, collector.request_stop)


def _reclaim_at_kill(read, kill_ns: int) -> Optional[ReclaimAtKill]:
    if read is None:
        return None
    stats, t_read = read
    t = stats.totals()
    t["ms"] = round(t["ms"], 2)
    return ReclaimAtKill(**t, read_ms_after_kill=round((t_read - kill_ns) / 1e6, 1))


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

