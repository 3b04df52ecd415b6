"""What the cgroup's charge was made of at the kill, and why the victim's RSS was less.

Capture in, plain result out (plain Python: a dozen figures a kill). The same categories for cgroup v1 and v2:

- v1 memory.stat (mm/memcontrol-v1.c, memcg1_stat_format): ``rss`` is anonymous memory (with
  ``rss_huge``, anon THP), ``cache`` is page cache *including* ``shmem``; kernel memory is not in
  memory.stat at all, only in the ``kmem: usage`` line / memory.kmem.usage_in_bytes, which v1
  charges to the memory counter as well. Hierarchical figures are the ``total_*`` keys.
- v2 memory.stat (mm/memcontrol.c, memory_stat_format) is hierarchical: ``anon``, ``file``
  (including ``shmem``), ``kernel`` (6.x: slab, stacks, page tables, percpu, vmalloc, ...),
  ``sock``, with THP as ``anon_thp``/``file_thp``/``shmem_thp``.
Whatever usage is not explained by the categories is shown as ``unexplained``, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..model import Capture, Task
from ..units import fmt_bytes

# The fixed vocabulary of categories (verdicts name one or two of these, plus "anon_thp" when
# most anonymous memory is in transparent huge pages).
CATEGORY_LABELS = {
    "anon": "Anonymous memory (heap, stacks)",
    "file": "Page cache (files)",
    "shmem": "Shared memory / tmpfs",
    "slab": "Slab (inodes, dentries, kernel objects)",
    "kernel_stack": "Kernel stacks",
    "pagetables": "Page tables",
    "percpu": "Per-CPU kernel memory",
    "vmalloc": "vmalloc",
    "kernel": "Kernel memory (slab, stacks, page tables)",
    "sock": "Socket buffers",
    "zswap": "zswap",
    "unexplained": "Not explained by memory.stat",
}


#: the categories that are kernel memory (one row of the ledger, one figure on the page)
KERNEL_KEYS = ("slab", "kernel_stack", "pagetables", "percpu", "vmalloc", "kernel")


@dataclass
class Category:
    key: str
    label: str
    bytes: int
    share_of_usage: Optional[float]


@dataclass
class Detail:
    """A figure that is part of a category (THP, mapped, dirty, ...)."""

    key: str
    label: str
    bytes: int
    of: str


@dataclass
class ReconciliationPart:
    key: str
    label: str
    bytes: int
    explanation: str


@dataclass
class Analysis:
    cgroup_version: Optional[int]
    usage_bytes: Optional[int]
    limit_bytes: Optional[int]
    source: str
    categories: List[Category] = field(default_factory=list)
    details: List[Detail] = field(default_factory=list)
    swap_bytes: Optional[int] = None
    victim_rss_bytes: Optional[int] = None
    gap_bytes: Optional[int] = None
    reconciliation: List[ReconciliationPart] = field(default_factory=list)
    others_rss_bytes: int = 0
    #: other processes' RSS in file and shared pages (charged as page cache here, or elsewhere)
    others_file_bytes: int = 0
    #: other processes' anonymous RSS beyond what the charge holds: pages shared after fork()
    others_shared_bytes: int = 0
    #: the rule under which reconciliation sums to the charge (ACCOUNTING)
    accounting: str = ""
    top_categories: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def _get(stat: Dict[str, int], *keys: str) -> Optional[int]:
    for k in keys:
        if k in stat:
            return stat[k]
    return None


def _categories_v1(stat: Dict[str, int], kmem: Optional[int], notes: List[str]) -> Dict[str, int]:
    anon = _get(stat, "total_rss", "rss") or 0
    cache = _get(stat, "total_cache", "cache") or 0
    shmem = _get(stat, "total_shmem", "shmem") or 0
    cats = {"anon": anon, "file": max(0, cache - shmem), "shmem": shmem}
    if kmem is not None:
        cats["kernel"] = kmem
    else:
        notes.append("cgroup v1 memory.stat has no kernel memory (slab, stacks, page tables): "
                     "the kmem counter was not available, so it is part of 'unexplained'.")
    return cats


def _categories_v2(stat: Dict[str, int]) -> Dict[str, int]:
    shmem = stat.get("shmem", 0)
    cats = {
        "anon": stat.get("anon", 0),
        "file": max(0, stat.get("file", 0) - shmem),
        "shmem": shmem,
    }
    slab = stat.get("slab_reclaimable", 0) + stat.get("slab_unreclaimable", 0)
    if not slab:
        slab = stat.get("slab", 0)
    kparts = {
        "slab": slab,
        "kernel_stack": stat.get("kernel_stack", 0),
        "pagetables": stat.get("pagetables", 0) + stat.get("sec_pagetables", 0),
        "percpu": stat.get("percpu", 0),
        "vmalloc": stat.get("vmalloc", 0),
    }
    cats.update(kparts)
    if "kernel" in stat:
        cats["kernel"] = max(0, stat["kernel"] - sum(kparts.values()))
    cats["sock"] = stat.get("sock", 0)
    if "zswap" in stat:
        cats["zswap"] = stat["zswap"]
    return cats


def _details(stat: Dict[str, int], version: Optional[int]) -> List[Detail]:
    if version == 1:
        keys = [("total_rss_huge", "rss_huge", "Anonymous THP", "anon"),
                ("total_mapped_file", "mapped_file", "Mapped by processes", "file"),
                ("total_dirty", "dirty", "Dirty (waiting for writeback)", "file"),
                ("total_writeback", "writeback", "Under writeback", "file"),
                ("total_unevictable", "unevictable", "Unevictable", "file")]
        out = []
        for hier, local, label, of in keys:
            v = _get(stat, hier, local)
            if v:
                out.append(Detail(local, label, v, of))
        return out
    keys = [("anon_thp", "Anonymous THP", "anon"), ("file_thp", "File THP", "file"),
            ("shmem_thp", "Shared-memory THP", "shmem"), ("file_mapped", "Mapped by processes", "file"),
            ("file_dirty", "Dirty (waiting for writeback)", "file"), ("file_writeback", "Under writeback", "file"),
            ("unevictable", "Unevictable", "file"), ("slab_reclaimable", "Slab, reclaimable", "slab"),
            ("slab_unreclaimable", "Slab, unreclaimable", "slab")]
    return [Detail(k, label, stat[k], of) for k, label, of in keys if stat.get(k)]


def analyse(capture: Capture) -> Analysis:
    a = _charge(capture, details=True)
    _reconcile(capture, a, capture.at_kill.memory_stat, a.cgroup_version)
    return a


def top_and_others(capture: Capture) -> Tuple[List[str], int]:
    """What an index row shows of ``analyse(capture)``: its top categories and the other
    processes' part of the reconciliation (0 when it has none), without the details and the
    reconciliation's words (a third of analyse's time, made for every kill of an import: issue 29,
    eighth pass). tests/unit/test_index_row_analysis.py: the same as analyse's on every capture."""
    a = _charge(capture, details=False)
    return a.top_categories, _others_part(capture, a)


def _others_anon(others: List[Task]) -> int:
    """The other processes' anonymous memory; a process without the split counted whole (its RSS
    as anonymous: an upper bound)."""
    return sum(t.anon_rss_bytes if t.anon_rss_bytes is not None else (t.rss_bytes or 0) for t in others)


def _others_part(capture: Capture, a: Analysis, others_anon: Optional[int] = None) -> int:
    """The other processes' part of the reconciliation (_reconcile's "other_processes"), or 0 where
    it puts none: their anonymous memory (``others_anon`` when the caller summed it), at most the
    charge beyond the victim's own (its anonymous memory where memory.stat splits the charge, its
    RSS where it does not)."""
    v = capture.victim
    rss = v.rss_bytes
    if rss is None or a.usage_bytes is None:
        return 0
    if others_anon is None:
        others = [t for t in capture.tasks if not t.is_victim]
        if not others:
            return 0
        others_anon = _others_anon(others)
    if not a.categories:
        held = max(0, min(others_anon, a.usage_bytes - rss))
    else:
        anon = next((c.bytes for c in a.categories if c.key == "anon"), 0)
        held = max(0, min(others_anon, anon - (rss - (v.file_rss_bytes or 0) - (v.shmem_rss_bytes or 0))))
    return int(held)


def _charge(capture: Capture, details: bool) -> Analysis:
    """analyse's categories, details (``details``), top categories and swap: all but the reconciliation."""
    ak = capture.at_kill
    version = capture.cgroup.version or capture.host.cgroup_version
    a = Analysis(cgroup_version=version, usage_bytes=ak.usage_bytes, limit_bytes=ak.limit_bytes, source=ak.source)
    stat = ak.memory_stat
    if not stat:
        a.notes.append("No memory.stat at the kill: the charge cannot be broken down.")
    else:
        if version == 2 or "anon" in stat:
            cats = _categories_v2(stat)
        else:
            cats = _categories_v1(stat, ak.kmem_usage_bytes, a.notes)
        # a dozen figures: plain Python (a DataFrame here cost ~3 ms a kill, most of an import's analysis)
        rows = list(cats.items())
        if ak.usage_bytes is not None:
            rows.append(("unexplained", ak.usage_bytes - sum(cats.values())))
        rows = sorted((r for r in rows if r[1] != 0), key=lambda r: -r[1])  # stable: ties keep their order
        labels = dict(CATEGORY_LABELS)
        if version == 2 or "anon" in stat:  # v2's "kernel" is what its own rows (slab, stacks, ...) leave
            labels["kernel"] = "Other kernel memory"
        usage = ak.usage_bytes
        a.categories = [Category(k, labels.get(k, k), int(b), b / usage if usage else None) for k, b in rows]
        # the keys say which hierarchy they come from when the capture does not (a group kill's
        # member imported from its Killed line): read them the way the categories were (issue 26)
        shape = 2 if (version == 2 or "anon" in stat) else 1
        if details:
            a.details = _details(stat, shape)
        big = [c for c in a.categories if c.key != "unexplained" and c.bytes > 0]
        if big:
            a.top_categories = [big[0].key] + [c.key for c in big[1:2] if c.bytes >= 0.25 * big[0].bytes]
        # Most of anon in huge pages: say THP, the part a limit-sizer must know about.
        thp = _get(stat, "total_rss_huge", "rss_huge") if shape == 1 else stat.get("anon_thp")
        anon = cats.get("anon", 0)
        if thp and anon and thp >= 0.5 * anon:
            a.top_categories = ["anon_thp" if k == "anon" else k for k in a.top_categories]
        swap = _get(stat, "total_swap", "swap") if shape == 1 else None
        a.swap_bytes = ak.swap_usage_bytes if ak.swap_usage_bytes is not None else swap
    return a


#: The one accounting every figure of the page follows (said on the page, and in the JSON).
ACCOUNTING = (
    "How the charge is counted: each row is one kind of memory the kernel charged this cgroup "
    "(memory.stat; on cgroup v1 also its kmem counter), less what of it the victim's RSS already shows, "
    "so the rows and the victim's RSS add up to the charge exactly. RSS is not a charge: a page "
    "shared after fork() counts in every sharer's RSS but is charged once, and a file page counts "
    "in RSS even when it was charged to another cgroup (the one that first read the file); such "
    "pages make a row negative, or appear beside it and are not added. Sizes are rounded; the JSON has the bytes.")


def _reconcile(capture: Capture, a: Analysis, stat: Dict[str, int], version: Optional[int]) -> None:
    """The victim's own RSS (what per-process monitoring shows) against the cgroup's charge.

    One ledger, signed, that sums exactly: charge = victim RSS + sum(parts). Each part is a
    category of the charge less what of it the victim's RSS counts (ACCOUNTING). RSS counts
    mapped pages, the charge counts charged pages: they differ by pages shared after fork()
    (one charge, n RSS) and file pages charged to another cgroup (mm/memcontrol.c charges a page
    once, to the memcg of the task that faulted it in first; cgroup v1 never moves it)."""
    v = capture.victim
    a.victim_rss_bytes = v.rss_bytes
    a.accounting = ACCOUNTING
    others = [t for t in capture.tasks if not t.is_victim]
    others_anon = 0
    if others:
        a.others_rss_bytes = sum(t.rss_bytes or 0 for t in others)
        others_anon = _others_anon(others)
        a.others_file_bytes = sum((t.file_rss_bytes or 0) + (t.shmem_rss_bytes or 0) for t in others)
    if a.victim_rss_bytes is None or a.usage_bytes is None:
        return
    a.gap_bytes = a.usage_bytes - a.victim_rss_bytes
    cats = {c.key: c.bytes for c in a.categories}
    n = len(others)
    whose = f"Anonymous memory of {n} other process" + ("es" if n != 1 else "")
    parts: List[ReconciliationPart] = []

    def put(key: str, label: str, amount: int, why: str) -> None:
        if amount:
            parts.append(ReconciliationPart(key, label, int(amount), why))

    v_file, v_shmem = v.file_rss_bytes or 0, v.shmem_rss_bytes or 0
    v_anon = a.victim_rss_bytes - v_file - v_shmem  # anon, or the whole RSS when it was not split
    held = _others_part(capture, a, others_anon) if others else 0
    if not cats:
        put("other_processes", whose, held,
            "Charged to the same cgroup; the victim's RSS does not include it.")
        put("rest", "Not broken down (no memory.stat)", a.gap_bytes - held,
            "Without memory.stat the rest of the charge cannot be split by kind.")
        a.reconciliation = parts
        return
    beyond = cats.get("anon", 0) - v_anon  # anonymous memory charged here beyond the victim's own
    # shared after fork() is said only where every other process's RSS is split: an unsplit RSS
    # counted whole as anonymous is an upper bound, and its excess no measure of sharing (issue
    # 26: RHEL 7's "4.4 MiB ... shared after fork()" beside an anon column of "—")
    split = all(t.anon_rss_bytes is not None for t in others)
    a.others_shared_bytes = max(0, others_anon - held) if split else 0
    if n:
        shared = (f" Their RSS counts {fmt_bytes(a.others_shared_bytes)} more anonymous memory than that: pages "
                  "shared with the victim or each other after fork(), charged once, counted in every sharer's RSS."
                  if a.others_shared_bytes else "")
        files = (f" Their RSS also counts {fmt_bytes(a.others_file_bytes)} of file and shared pages: in the page-cache "
                 "and tmpfs rows when charged here, else charged elsewhere." if a.others_file_bytes else "")
        put("other_processes", whose, held,
            "Charged to the same cgroup; the victim's RSS does not include it." + shared + files)
    rest = beyond - held
    inc = capture.incident
    listed = {t.pid for t in capture.tasks} | {v.pid}
    group = ([x for x in inc.victims if x.pid not in listed] if inc is not None and inc.group_kill else [])
    if rest > 0 and group:
        # a member of a group kill whose capture has only its own row: the rest is the group's
        # other processes, killed with it, not processes that exited (issue 26: pages of one
        # incident said both)
        put("group_others", f"Anonymous memory of the group's {len(group)} other process{'es' if len(group) != 1 else ''}, "
            "killed with it", rest,
            "The kernel killed every task of " + (inc.group_cgroup or "the group's cgroup") + " together (memory.oom.group): "
            + ", ".join(f"pid {x.pid} ({x.comm})" for x in group[:8]) + (f" and {len(group) - 8} more" if len(group) > 8 else "")
            + ". Their RSS is in the tasks table of the first victim's post-mortem; this capture has only the victim's row.")
    elif rest > 0:
        put("anon_unlisted", "Anonymous memory in no listed process's RSS", rest,
            "Processes that exited before the report, or pages charged while it was printed.")
    elif rest < 0:
        put("anon_elsewhere", "The victim's anonymous pages charged elsewhere", rest,
            "Touched before it joined this cgroup: cgroup v1 does not move a page's charge when its task moves.")
    file_ = cats.get("file", 0) - v_file
    put("file", "Page cache not mapped by the victim" if file_ > 0 else "The victim's file pages charged elsewhere", file_,
        "File pages are charged to the cgroup that read or wrote them, mapped or not." if file_ > 0 else
        "Its RSS counts the files it maps (its binary, libraries) that another cgroup read first: charged there, not here.")
    shm = cats.get("shmem", 0) - v_shmem
    put("shmem", "Shared memory / tmpfs not in the victim's RSS" if shm > 0 else "The victim's shared pages charged elsewhere", shm,
        "tmpfs and shared memory stay charged while the files exist, even when no process maps them." if shm > 0 else
        "Shared memory it maps that another cgroup created: charged there, not here.")
    kernel = sum(cats.get(k, 0) for k in KERNEL_KEYS)
    kinds = [c for c in a.categories if c.key in KERNEL_KEYS and c.bytes > 0]
    of = ("" if len(kinds) < 2 else " Of it: " + ", ".join(f"{c.label[:1].lower() + c.label[1:]} {fmt_bytes(c.bytes)}"
                                                             for c in kinds) + ".")
    put("kernel", CATEGORY_LABELS["kernel"], kernel,
        "Kernel objects allocated on behalf of the cgroup's tasks are charged to it and are in no RSS." + of)
    put("sock", CATEGORY_LABELS["sock"], cats.get("sock", 0), "Network buffers of the cgroup's sockets.")
    put("zswap", CATEGORY_LABELS["zswap"], cats.get("zswap", 0), "Compressed swapped-out pages, charged to the cgroup.")
    put("unexplained", CATEGORY_LABELS["unexplained"], cats.get("unexplained", 0),
        "Counter skew between the report's lines, and memory freed or charged while it was printed.")
    a.reconciliation = parts
