"""What user space and the BPF C in ``bpf/`` must agree on, in one place, without bcc.

The C side gets every constant here as a ``-D`` flag (``cflags()``), so ``bpf/oomscope.h`` holds
the struct layouts and no number of its own: a value changed here changes both sides. The structs
themselves stay in the header (bcc turns them into ctypes types for ``table.event()``); this module
turns those ctypes records into plain Python (``OomEvent``, ``ReclaimStats``), so everything
downstream of ``probes.py`` works without bcc, and tests build the same records by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

from .model import Reclaim

COMM_LEN = 16

# Event kinds (struct oomscope_event.kind).
EV_MARK_VICTIM = 1    # oom:mark_victim: the kernel chose and marked a victim
EV_REAP_FINISHED = 2  # oom:finish_task_reaping: the oom_reaper freed its memory

# Which optional oom:mark_victim fields this kernel has (struct oomscope_event.fields).
F_COMM, F_RSS, F_UID, F_PGTABLES, F_SCORE_ADJ = 1, 2, 4, 8, 16

# Memcg snapshot kinds (struct oomscope_memcg_snapshot.kind, bpf/memcg_snapshot.c).
SNAP_SIGKILL = 1      # signal:signal_generate, SIGKILL: before the victim can free
SNAP_MARK_VICTIM = 2  # oom:mark_victim: a victim marked without a SIGKILL seen

# The signals of user-space kills (struct oomscope_signal, bpf/signal_kills.c).
SIGKILL, SIGTERM = 9, 15


def cflags() -> List[str]:
    """The -D flags that give bpf/oomscope.h every constant above (it defines none itself)."""
    return [f"-DOOMSCOPE_{name}={value}" for name, value in (
        ("COMM_LEN", COMM_LEN),
        ("EV_MARK_VICTIM", EV_MARK_VICTIM), ("EV_REAP_FINISHED", EV_REAP_FINISHED),
        ("F_COMM", F_COMM), ("F_RSS", F_RSS), ("F_UID", F_UID), ("F_PGTABLES", F_PGTABLES),
        ("F_SCORE_ADJ", F_SCORE_ADJ),
        ("SNAP_SIGKILL", SNAP_SIGKILL), ("SNAP_MARK_VICTIM", SNAP_MARK_VICTIM),
        ("SIGKILL", SIGKILL), ("SIGTERM", SIGTERM),
    )]


@dataclass
class OomEvent:
    """One event from the kernel (struct oomscope_event), in plain Python types. kB as the
    tracepoint gives them."""

    kind: int
    ts_ns: int
    victim_pid: int
    victim_comm: Optional[str]
    total_vm_kb: Optional[int]
    anon_rss_kb: Optional[int]
    file_rss_kb: Optional[int]
    shmem_rss_kb: Optional[int]
    uid: Optional[int]
    pgtables_kb: Optional[int]
    oom_score_adj: Optional[int]
    trigger_tgid: int
    trigger_tid: int
    trigger_comm: str
    victim_parent_pid: Optional[int] = None  # from sched:sched_process_fork when seen
    #: the victim's memory cgroup and its ancestors at its SIGKILL (bpf/memcg_snapshot.c)
    memcg_snapshot: Optional["MemcgSnapshot"] = None


def _comm(raw: bytes) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def event_from_raw(raw) -> OomEvent:
    """struct oomscope_event (bcc's ctypes record) as an OomEvent."""
    f = raw.fields
    has_rss = bool(f & F_RSS)
    return OomEvent(
        kind=raw.kind,
        ts_ns=raw.ts_ns,
        victim_pid=raw.victim_pid,
        victim_comm=_comm(raw.victim_comm) if f & F_COMM else None,
        total_vm_kb=raw.total_vm_kb if has_rss else None,
        anon_rss_kb=raw.anon_rss_kb if has_rss else None,
        file_rss_kb=raw.file_rss_kb if has_rss else None,
        shmem_rss_kb=raw.shmem_rss_kb if has_rss else None,
        uid=raw.uid if f & F_UID else None,
        pgtables_kb=raw.pgtables_kb if f & F_PGTABLES else None,
        oom_score_adj=raw.oom_score_adj if f & F_SCORE_ADJ else None,
        trigger_tgid=raw.trigger_tgid,
        trigger_tid=raw.trigger_tid,
        trigger_comm=_comm(raw.trigger_comm),
        victim_parent_pid=raw.victim_parent_pid or None,
    )


@dataclass
class SignalEvent:
    """A SIGKILL or SIGTERM one process sent another (struct oomscope_signal): a user-space kill,
    memory kill or not (record/userkill.py decides)."""

    ts_ns: int
    sender_tgid: int
    sender_tid: int
    target_pid: int
    sig: int
    code: int
    group: int
    sender_comm: str
    target_comm: str


def signal_from_raw(raw) -> SignalEvent:
    """struct oomscope_signal (bcc's ctypes record) as a SignalEvent."""
    return SignalEvent(ts_ns=raw.ts_ns, sender_tgid=raw.sender_tgid, sender_tid=raw.sender_tid, target_pid=raw.target_pid,
                       sig=raw.sig, code=raw.code, group=raw.group, sender_comm=_comm(raw.sender_comm),
                       target_comm=_comm(raw.target_comm))


@dataclass
class ReclaimStats:
    """Reclaim a process ran (struct oomscope_reclaim: vmscan tracepoints), cumulative since
    record started, as the kernel's record keeps it (memcg and direct apart, in ns); what the
    capture holds of it is ``totals()``, a model.Reclaim."""

    memcg_runs: int = 0
    memcg_ns: int = 0
    memcg_pages: int = 0
    memcg_empty: int = 0
    direct_runs: int = 0
    direct_ns: int = 0
    direct_pages: int = 0
    direct_empty: int = 0
    last_ns: int = 0
    alloc_retry_checks: int = 0     # oom:reclaim_retry_zone (page allocator, global pressure)
    alloc_no_progress_max: int = 0  # the most reclaim rounds in a row that freed nothing
    compact_retries: int = 0        # oom:compact_retry
    compact_gave_up: int = 0

    @classmethod
    def from_raw(cls, raw) -> "ReclaimStats":
        """struct oomscope_reclaim (bcc's ctypes record), field by field by name."""
        return cls(**{f.name: getattr(raw, f.name) for f in dataclasses.fields(cls)})

    def totals(self) -> Reclaim:
        """memcg and direct reclaim together, with the allocator's retries: what a timeline point's
        reclaim columns and a capture's reclaim_at_kill carry (``ms`` unrounded)."""
        return Reclaim(runs=self.memcg_runs + self.direct_runs, empty_runs=self.memcg_empty + self.direct_empty,
                       pages=self.memcg_pages + self.direct_pages, ms=(self.memcg_ns + self.direct_ns) / 1e6,
                       alloc_retry_checks=self.alloc_retry_checks, alloc_no_progress_max=self.alloc_no_progress_max,
                       compact_retries=self.compact_retries)

    def add(self, other: "ReclaimStats") -> None:
        for f in dataclasses.fields(self):
            if f.name in ("last_ns", "alloc_no_progress_max"):
                setattr(self, f.name, max(getattr(self, f.name), getattr(other, f.name)))
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# The memcg snapshot (bpf/memcg_snapshot.c): plain records, items named, in the kernel's units.

@dataclass
class MemcgLevel:
    """One memory cgroup of a snapshot (struct oomscope_memcg_level), statistics by item name in
    the item's kernel unit (kernel/memcg_layout.py unit_of)."""

    cgroup_id: int
    usage_pages: int
    max_pages: int
    failcnt: int
    memsw_usage_pages: Optional[int]
    memsw_max_pages: Optional[int]
    state: Dict[str, int]       # hierarchical, as last flushed
    local: Dict[str, int]       # this cgroup alone, as last flushed (empty: the kernel keeps none)
    pending: Dict[str, int]     # children's flushed deltas not yet added to state
    unflushed: Dict[str, int]   # this cgroup's per-CPU deltas no flush has folded in


@dataclass
class MemcgSnapshot:
    """The victim's memory cgroup (levels[0]) and its ancestors, read in the kernel at its SIGKILL."""

    ts_ns: int
    pid: int
    levels: List[MemcgLevel]
    cpus_read: int = 0
    cpus_bad: int = 0
    took_ns: int = 0  # the program's own time to read it
    kind: int = SNAP_SIGKILL  # or SNAP_MARK_VICTIM: a victim marked without a SIGKILL
    rereads: int = 0  # read again because a stats flush moved the counters during the read
    torn: int = 0  # bit d: level d's counters moved during the last read too (its exact view, and those above it, may be off)


def snapshot_from_raw(raw, slots: Dict[str, int], has_local: bool, has_memsw: bool) -> MemcgSnapshot:
    """struct oomscope_memcg_snapshot (bcc's ctypes record) as a MemcgSnapshot; ``slots``: item
    name -> slot of memcg_vmstats.state[] (kernel/memcg_layout.py)."""
    levels = []
    for d in range(min(raw.depth, len(raw.level))):
        lv = raw.level[d]
        levels.append(MemcgLevel(
            cgroup_id=lv.cgroup_id, usage_pages=lv.usage, max_pages=lv.max, failcnt=lv.failcnt,
            memsw_usage_pages=lv.memsw_usage if has_memsw else None, memsw_max_pages=lv.memsw_max if has_memsw else None,
            state={n: lv.state[s] for n, s in slots.items()},
            local={n: lv.local[s] for n, s in slots.items()} if has_local else {},
            pending={n: lv.pending[s] for n, s in slots.items()},
            unflushed={n: lv.unflushed[s] for n, s in slots.items()},
        ))
    return MemcgSnapshot(ts_ns=raw.ts_ns, pid=raw.pid, levels=levels, cpus_read=raw.cpus_read, cpus_bad=raw.cpus_bad,
                         took_ns=raw.took_ns, kind=raw.kind, rereads=raw.rereads, torn=raw.torn)


# --- growth sites and who hit the limit (bpf/alloc_sites.c) ---

@dataclass(frozen=True)
class PageSample:
    """A sampled page fault's page (struct oomscope_page_sample): the last stack whose sample
    landed on it, and how many of that stack's samples did."""

    tgid: int
    page: int
    user_stack: int
    kernel_stack: int
    hits: int
    last_ns: int


@dataclass(frozen=True)
class Hitter:
    """A task that stalled in memcg reclaim (struct oomscope_hitter): the one being charged."""

    tid: int
    tgid: int
    comm: str
    stall_ns: int
    max_ns: int
    runs: int
    last_ns: int
    user_stack: int
    kernel_stack: int


@dataclass
class SiteRead:
    """One read of bpf/alloc_sites.c's maps, as plain Python: sample counts per (tgid, user
    stack id, kernel stack id), the sampled pages, the stacks they name (ids -> addresses, innermost
    first), the reclaim stalls, and the program's own counters."""

    counts: Dict[tuple, int]
    pages: List[PageSample]
    stacks: Dict[int, List[int]]
    hitters: List[Hitter]
    samples: int = 0
    stacks_lost: int = 0
    counts_full: int = 0
