"""User-space kills: a SIGKILL or SIGTERM from bpf/signal_kills.c, read at once, decided, held.

``UserKills.add`` runs on the main thread as soon as the event reaches user space, and reads what
will not last: the sender's executable, command line and cgroup (/proc), the target's cgroup,
command line and memory, the kernel's memcg snapshot at the SIGKILL (bpf/memcg_snapshot.c, the
same one kernel kills get), and the pressure (oomscope/killers.py decides whether it is a memory
kill). Only memory kills are held; a SIGTERM waits ``TERM_WAIT_NS`` for the SIGKILL that often
follows it (earlyoom escalates), and the two are one kill. ``ready`` hands them to the collector.

Files read here (a killer's configuration) are read bounded and without effects: opened
non-blocking, regular files only, at most 64 KiB each, at most ``MAX_FILES`` of them per kill.
"""

from __future__ import annotations

import glob
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .. import killers
from ..containers import NodeNames, workload_of
from ..kernel import procfs
from ..kernel.cgroupfs import MemoryHierarchy, parse_pressure
from ..layouts import SIGKILL, MemcgSnapshot, SignalEvent
from ..model import Killer, KillPressure, Task

TERM_WAIT_NS = 1_500_000_000  # a SIGTERM waits this long for its SIGKILL
REPEAT_NS = 30_000_000_000  # another signal to a pid already recorded, this soon after: the same kill
HOST_EVERY_NS = 250_000_000  # the host's memory read at most this often, so that one before the kill exists
HOST_MAX_AGE_NS = 1_000_000_000  # ... and used when it is at most this old
MAX_FILE = 1 << 16
MAX_FILES = 64
MAX_PIDS_SCANNED = 65536  # /proc entries looked at to find the kubelet
PROC = "/proc"
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/run/systemd/transient", "/usr/lib/systemd/system",
             "/lib/systemd/system")
OOMD_CONF = ("/etc/systemd/oomd.conf",)
OOMD_DROPINS = ("/etc/systemd/oomd.conf.d", "/run/systemd/oomd.conf.d", "/usr/lib/systemd/oomd.conf.d")


def read_small(path: str, limit: int = MAX_FILE) -> Optional[str]:
    """A small regular file's text, or None: non-blocking open (a FIFO planted there cannot hang
    record), regular files only, at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def read_argv(pid: int, proc: str = PROC) -> List[str]:
    raw = read_small(f"{proc}/{pid}/cmdline", 1 << 16) if pid > 0 else None
    return [a for a in (raw or "").split("\0") if a][:killers.MAX_ARGS]


def read_exe(pid: int, proc: str = PROC) -> Optional[str]:
    try:
        return os.readlink(f"{proc}/{pid}/exe")[:4096]
    except OSError:
        return None


@dataclass
class UserKill:
    """A memory kill from user space, as read when its signal reached oomscope."""

    event: SignalEvent
    first_seen_ns: int
    killer: Killer
    target_cgroup: Optional[str]
    target_cmdline: Optional[str]
    target_task: Optional[Task]
    snapshot: Optional[MemcgSnapshot] = None
    signals: List[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.event.target_pid

    @property
    def kill_ns(self) -> int:
        return self.event.ts_ns


class UserKills:
    def __init__(self, hier: MemoryHierarchy, store, take_snapshot: Optional[Callable[[int], Optional[MemcgSnapshot]]],
                 names: Optional[NodeNames] = None, proc: str = PROC):
        self.hier = hier
        self.store = store
        self.take_snapshot = take_snapshot
        self.names = names
        self.proc = proc
        self.pending: List[UserKill] = []
        self.not_memory = 0  # signals that were no memory kill (a deploy's kill -9): counted, not written
        self.repeats = 0
        self._recent: Dict[int, int] = {}  # target pid -> kill_ns of kills handed on
        self._host: Optional[Tuple[int, Dict[str, int]]] = None

    # --- the host's memory, kept fresh so that a reading from before a kill exists ---
    def tick(self, now_ns: int) -> None:
        if self._host is None or now_ns - self._host[0] >= HOST_EVERY_NS:
            text = read_small(f"{self.proc}/meminfo")
            if text is not None:
                self._host = (now_ns, procfs.parse_meminfo(text))

    def add(self, ev: SignalEvent, now_ns: int) -> Optional[UserKill]:
        for k in self.pending:
            if k.pid == ev.target_pid:
                k.signals.append(killers.signal_name(ev.sig))
                if ev.sig == SIGKILL and k.snapshot is None and self.take_snapshot is not None:
                    k.snapshot = self.take_snapshot(ev.target_pid)
                k.killer.signal = ", then ".join(k.signals)
                return None
        last = self._recent.get(ev.target_pid)
        if last is not None and 0 <= ev.ts_ns - last < REPEAT_NS:
            self.repeats += 1
            return None
        snap = self.take_snapshot(ev.target_pid) if ev.sig == SIGKILL and self.take_snapshot is not None else None
        target_cgroup = procfs.read_memory_cgroup(ev.target_pid, self.hier.version, self.proc)
        if target_cgroup in (None, "/"):
            target_cgroup = self.store.cgroup_of_pid(ev.target_pid) or (None if target_cgroup == "/" else target_cgroup)
        task = procfs.read_task(ev.target_pid, "after_kill", self.proc)
        exe = read_exe(ev.sender_tgid, self.proc)
        sender_cgroup = procfs.read_memory_cgroup(ev.sender_tgid, self.hier.version, self.proc)
        pressure = self.pressure(target_cgroup, snap, ev.ts_ns, now_ns)
        decision = killers.classify(ev.sender_comm, exe, pressure, target_cgroup, sender_cgroup)
        if not decision.memory_kill:
            self.not_memory += 1
            return None
        killer = self.killer_of(ev, exe, decision, pressure, target_cgroup, sender_cgroup)
        kill = UserKill(ev, now_ns, killer, target_cgroup, task.cmdline if task is not None else None, task, snap,
                        [killers.signal_name(ev.sig)])
        self.pending.append(kill)
        return kill

    def ready(self, now_ns: int, flush: bool = False) -> List[UserKill]:
        out, keep = [], []
        for k in self.pending:
            done = flush or SIGKILL_NAME in k.signals or now_ns - k.first_seen_ns >= TERM_WAIT_NS
            (out if done else keep).append(k)
        self.pending = keep
        for k in out:
            self._recent[k.pid] = k.kill_ns
        if len(self._recent) > 4096:
            self._recent = {p: t for p, t in self._recent.items() if now_ns - t < REPEAT_NS}
        return out

    # --- what is read for one kill ---
    def pressure(self, cgroup: Optional[str], snap: Optional[MemcgSnapshot], kill_ns: int, now_ns: int) -> KillPressure:
        p = KillPressure(cgroup=cgroup)
        if cgroup is not None:
            limited = self.store.limited_ancestor(cgroup) if hasattr(self.store, "limited_ancestor") else None
            p.limit_cgroup = limited
            where = limited or cgroup
            level = _snapshot_level(snap, self.store.ino(where) if limited else None)
            sample = self.store.latest_before(where, kill_ns)
            if level is not None:
                page = os.sysconf("SC_PAGE_SIZE")
                p.cgroup_usage_bytes, p.cgroup_limit_bytes = level.usage_pages * page, level.max_pages * page
                p.sources.append(f"{where}: usage and limit read in the kernel at the SIGKILL")
            elif sample is not None:
                p.cgroup_usage_bytes, p.cgroup_limit_bytes = sample.state.usage_bytes, sample.state.limit_bytes
                p.sources.append(f"{where}: usage and limit from the last sample, {(kill_ns - sample.t_ns) / 1e6:.0f} ms before the kill")
            else:
                p.cgroup_usage_bytes, p.cgroup_limit_bytes = self.hier.usage(where), self.hier.limit(where)
                p.sources.append(f"{where}: usage and limit read after the signal")
            if p.cgroup_limit_bytes is not None and p.cgroup_limit_bytes >= 1 << 60:
                p.cgroup_limit_bytes = None  # "no limit" as the kernel's page counter holds it
            if sample is not None and sample.state.memory_high_bytes is not None:
                p.cgroup_high_bytes = sample.state.memory_high_bytes
            if self.hier.version == 2:
                try:
                    text = read_small(os.path.join(self.hier.fs_path(cgroup), "memory.pressure"))
                except Exception:  # noqa: BLE001 - a hostile path: no reading, no crash
                    text = None
                if text is not None:
                    p.cgroup_psi = _avgs(parse_pressure(text))
                    p.sources.append("the cgroup's PSI read after the signal (10 s averages)")
        text = read_small(f"{self.proc}/pressure/memory")
        if text is not None:
            p.host_psi = _avgs(parse_pressure(text))
        # The last reading before the kill, and one now: memory falls until a kill frees it, so the
        # lower MemAvailable of the two is the nearer to the moment of the kill (the one before it
        # when the victim freed at once, the one after it when the victim still holds its memory)
        before = self._host if self._host is not None and 0 <= kill_ns - self._host[0] <= HOST_MAX_AGE_NS else None
        text = read_small(f"{self.proc}/meminfo")
        after = (now_ns, procfs.parse_meminfo(text)) if text is not None else None
        host = min((h for h in (before, after) if h is not None), default=None,
                   key=lambda h: h[1].get("MemAvailable", 1 << 62))
        if host is not None and host is after:
            p.sources.append("the host's memory read after the signal (lower than the last reading before it)")
        elif host is not None:
            p.sources.append(f"the host's memory read {(kill_ns - host[0]) / 1e6:.0f} ms before the kill")
        if host is not None:
            m = host[1]
            p.mem_total_bytes, p.mem_available_bytes = m.get("MemTotal"), m.get("MemAvailable")
            p.swap_total_bytes, p.swap_free_bytes = m.get("SwapTotal"), m.get("SwapFree")
        return p

    def killer_of(self, ev: SignalEvent, exe: Optional[str], decision: killers.Decision, pressure: KillPressure,
                  target_cgroup: Optional[str], cgroup: Optional[str]) -> Killer:
        w = workload_of(cgroup, self.names) if cgroup and cgroup != "/" else None
        unit = None
        if w is not None:
            unit = w.unit or w.container or (w.container_id[:12] if w.container_id else None) or w.pod
        k = Killer(kind="userspace", comm=ev.sender_comm, pid=ev.sender_tgid, exe=exe, unit=unit,
                   signal=killers.signal_name(ev.sig), cgroup=cgroup, known_as=decision.killer,
                   recognised_by=decision.how, pressure_met=list(decision.met), pressure=pressure)
        try:
            k.rule, k.rule_met = self.rule_of(decision.killer, ev.sender_tgid, pressure, target_cgroup)
        except Exception as exc:  # noqa: BLE001 - a killer's odd configuration must not lose the kill
            k.notes.append(f"The killer's rule could not be read: {type(exc).__name__}.")
        return k

    def rule_of(self, name: Optional[str], sender: int, p: KillPressure, target_cgroup: Optional[str]) -> Tuple[str, str]:
        if name == "earlyoom":
            rule = killers.earlyoom_rule(read_argv(sender, self.proc))
            return rule.words(p.mem_total_bytes, p.swap_total_bytes), killers.earlyoom_met(rule, p) or ""
        if name == "systemd-oomd":
            unit, managed = self.managed_oom(target_cgroup)
            texts = [(f, t) for f in OOMD_CONF for t in [read_small(f)] if t is not None]
            for d in OOMD_DROPINS:
                texts += [(f, t) for f in sorted(glob.glob(os.path.join(d, "*.conf")))[:MAX_FILES] for t in [read_small(f)] if t]
            conf = killers.parse_oomd_conf(texts)
            met = []
            if p.cgroup_psi:
                met.append(f"the cgroup's memory PSI full avg10 {p.cgroup_psi.get('full_avg10', 0):.1f}%, "
                           f"avg60 {p.cgroup_psi.get('full_avg60', 0):.1f}%")
            if p.swap_total_bytes:
                met.append(f"swap {100 * (1 - (p.swap_free_bytes or 0) / p.swap_total_bytes):.0f}% used")
            return killers.oomd_words(unit, managed, conf), "; ".join(met)
        if name == "kubelet":
            pid = sender if (read_exe(sender, self.proc) or "").endswith("/kubelet") else self.find_kubelet()
            if pid is None:
                return "the kubelet's eviction thresholds (the kubelet's process was not found)", ""
            argv = read_argv(pid, self.proc)
            path = killers.config_path(argv)
            ev = killers.kubelet_eviction(argv, read_small(path) if path else None)
            met = (f"MemAvailable {p.mem_available_bytes / 1048576:.0f} MiB (the kubelet's memory.available is the node's "
                   "capacity less the root cgroup's working set; MemAvailable is the nearest host figure)"
                   if p.mem_available_bytes is not None else "")
            return ("the kubelet evicts when the node's memory.available falls below "
                    + " / ".join(f"{v} ({k})" for k, v in sorted(ev.items()))), met
        if name == "oomd":
            return "Meta's oomd: its rules are in its JSON configuration (not read)", ""
        rules = killers.PRESSURE_RULES
        return (f"no killer oomscope knows: recorded because memory pressure was met (oomscope's rule: the cgroup at "
                f"{rules['cgroup_ratio']:.0%} of its limit or at memory.high, its memory PSI some avg10 >= {rules['psi_some_avg10']:.0f}% "
                f"or full avg10 >= {rules['psi_full_avg10']:.0f}%, or the host's MemAvailable at or below {rules['available_ratio']:.0%})"), ""

    def managed_oom(self, cgroup: Optional[str]) -> Tuple[Optional[str], Dict[str, str]]:
        """The nearest unit at or above ``cgroup`` with ManagedOOM* settings, read from its unit
        file and drop-ins (files only: oomscope asks no daemon)."""
        parts = [c for c in (cgroup or "").split("/") if c.endswith((".slice", ".service", ".scope"))]
        read = 0
        for unit in reversed(parts[-16:]):
            texts = []
            for d in UNIT_DIRS:
                for f in [os.path.join(d, unit)] + sorted(glob.glob(os.path.join(glob.escape(d), glob.escape(unit) + ".d", "*.conf")))[:16]:
                    if read >= MAX_FILES:
                        break
                    text = read_small(f)
                    read += 1
                    if text is not None:
                        texts.append((f, text))
            managed = killers.parse_managed_oom(texts)
            if managed:
                return unit, managed
        return None, {}

    def find_kubelet(self) -> Optional[int]:
        try:
            entries = os.listdir(self.proc)
        except OSError:
            return None
        for name in entries[:MAX_PIDS_SCANNED]:
            if name.isdigit() and procfs.read_comm(int(name), self.proc) == "kubelet":
                return int(name)
        return None


SIGKILL_NAME = killers.signal_name(SIGKILL)


def _avgs(psi: Dict[str, float]) -> Dict[str, float]:
    return {k: v for k, v in psi.items() if not k.endswith("_us")}


def _snapshot_level(snap: Optional[MemcgSnapshot], ino: Optional[int]):
    """The snapshot's level of the limited cgroup (by its inode); else the victim's own, when it
    has a limit."""
    if snap is None or not snap.levels:
        return None
    for lv in snap.levels:
        if ino is not None and lv.cgroup_id == ino:
            return lv
    lv = snap.levels[0]
    return lv if lv.max_pages and lv.max_pages < (1 << 50) else None


def now_ns() -> int:
    return time.monotonic_ns()
