"""The kernel's own OOM report, read from kernel log records (kernel/kmsg.py).

Parsers are pure: records in, an ``OomReport`` per kill out.

The report is printed by dump_header() and __oom_kill_process() in mm/oom_kill.c, in this order:
``<comm> invoked oom-killer: ...``, dump_stack() (``CPU: .. PID: N Comm: ..``), for a memcg OOM
mem_cgroup_print_oom_meminfo() (``memory: usage``, ``memory+swap:``/``swap:``, ``kmem:``,
``Memory cgroup stats for /path:`` and memory.stat), dump_tasks() (``Tasks state ...``), the
``oom-kill:`` summary, then ``<message>: Killed process N (comm) ...``. All but the last line are
under the ``oom_rs`` rate limit (10 per 5 s); the ``Killed process`` line is always printed.

Each of those lines is a record of its own (its own printk), except the lines of a block printed
at once (6.1's memory.stat, a global OOM's Mem-Info). So a record is split into lines only when it
is such a block (its first line is a data line of the block being read), and its further lines
are taken only as data lines; any other record is one line, newlines and all. A cgroup or process
name holding a newline then neither makes a ``Killed process`` line, a header or a summary, nor
breaks the real one apart (the name patterns match across newlines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

from .cgroupfs import cgroup_within
from .kmsg import KmsgRecord, parse_kmsg_dump
from .logformats import DmesgRecords

@dataclass
class CounterLine:
    """``memory: usage 65536kB, limit 65536kB, failcnt 8087`` (also memory+swap:, swap:, kmem:)."""

    usage_kb: int
    limit_kb: int
    failcnt: int


@dataclass
class TaskRow:
    """A row of the ``Tasks state (memory values in pages)`` table. Values in pages except
    pgtables_bytes; columns differ between kernels (rss_anon/rss_file/rss_shmem came in 6.x)."""

    pid: int
    name: str
    values: Dict[str, int]


@dataclass
class KilledProcess:
    """``<message>: Killed process N (comm) total-vm:..kB, anon-rss:..kB, ...``"""

    message: str
    pid: int
    comm: str
    total_vm_kb: Optional[int] = None
    anon_rss_kb: Optional[int] = None
    file_rss_kb: Optional[int] = None
    shmem_rss_kb: Optional[int] = None
    uid: Optional[int] = None
    pgtables_kb: Optional[int] = None
    oom_score_adj: Optional[int] = None
    #: the Killed line itself was read (False: the victim is named by the oom_reaper's line or the
    #: oom-kill: summary). Before 4.19 the line has no message (3.10: "Killed process N (comm),
    #: UID ..."): an empty message does not say the line was missed (issue 26, RHEL 7)
    seen: bool = True


@dataclass
class OomSummary:
    """The ``oom-kill:`` line (4.19+)."""

    constraint: Optional[str] = None
    nodemask: Optional[str] = None
    cpuset: Optional[str] = None
    mems_allowed: Optional[str] = None
    oom_memcg: Optional[str] = None
    task_memcg: Optional[str] = None
    task: Optional[str] = None
    pid: Optional[int] = None
    uid: Optional[int] = None


@dataclass
class OomReport:
    """One kill as the kernel logged it. ``has_header`` is False for a kill whose report the
    kernel rate-limited away (only the Killed process line)."""

    has_header: bool = False
    #: the kill has report lines of its own (a header, or for a report cut at its start, its first
    #: cgroup line), not only its Killed line: it can head a memory.oom.group kill
    started: bool = False
    trigger_comm: Optional[str] = None
    trigger_pid: Optional[int] = None
    gfp_mask: Optional[str] = None
    order: Optional[int] = None
    trigger_oom_score_adj: Optional[int] = None
    memory: Optional[CounterLine] = None
    memsw: Optional[CounterLine] = None  # cgroup v1 "memory+swap:"
    swap: Optional[CounterLine] = None  # cgroup v2 "swap:"
    kmem: Optional[CounterLine] = None  # cgroup v1 "kmem:"
    stats_cgroup: Optional[str] = None
    memory_stat: Dict[str, int] = field(default_factory=dict)
    task_columns: List[str] = field(default_factory=list)
    tasks: List[TaskRow] = field(default_factory=list)
    summary_raw: Optional[str] = None
    summary: Optional[OomSummary] = None
    killed: Optional[KilledProcess] = None
    group_kill_cgroup: Optional[str] = None
    #: for a member of a memory.oom.group kill (a Killed line after "Tasks in X are going to be
    #: killed"), the report of the group's chosen victim, which names the cgroup that hit its limit
    group_head: Optional["OomReport"] = field(default=None, repr=False, compare=False)
    #: a global OOM's Mem-Info (show_mem in mm/show_mem.c): node-wide counters in pages, and
    #: "free_swap_kb"/"total_swap_kb"/"ram_pages" from the lines after the per-node ones
    mem_info: Dict[str, int] = field(default_factory=dict)
    first_seq: Optional[int] = None
    last_seq: Optional[int] = None
    first_usec: Optional[int] = None
    killed_usec: Optional[int] = None
    lines: List[str] = field(default_factory=list)
    #: the victim is the summary's (``oom-kill:...,task=C,pid=N``): the log has no Killed line for
    #: it (a ``grep oom-kill`` excerpt, or a log cut between the two lines)
    killed_from_summary: bool = False
    summary_usec: Optional[int] = None
    summary_seq: Optional[int] = None

    @property
    def is_memcg(self) -> bool:
        if self.summary and self.summary.constraint:
            return self.summary.constraint == "CONSTRAINT_MEMCG"
        return bool(self.killed and self.killed.message.startswith("Memory cgroup"))

    @property
    def has_body(self) -> bool:
        """Any of the report beyond its Killed line: counters, memory.stat, the tasks table,
        Mem-Info or the oom-kill: summary (a header lost, or cut from the log, leaves these)."""
        return bool(self.memory or self.memory_stat or self.tasks or self.mem_info or self.summary_raw)


_RE_HEADER = re.compile(
    r"^(?P<comm>.*) invoked oom-killer: gfp_mask=(?P<gfp>0x[0-9a-f]+)(?:\([^)]*\))?, "
    r"order=(?P<order>-?\d+), oom_score_adj=(?P<adj>-?\d+)", re.S
)
_RE_STACK_CPU = re.compile(r"^CPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: ")
_RE_COUNTER = re.compile(
    r"^(?P<name>memory|memory\+swap|swap|kmem): usage (?P<usage>\d+)kB, limit (?P<limit>\d+)kB, "
    r"failcnt (?P<failcnt>\d+)$"
)
_STATS_PREFIX = "Memory cgroup stats for "
_RE_STAT = re.compile(r"^(?P<key>[a-z_0-9]+) (?P<value>\d+)$")
_TASKS_TITLE = "Tasks state (memory values in pages):"
#: what the lines that follow a memory.stat block start with (mem_cgroup_print_oom_meminfo, dump_tasks)
_REPORT_LINE_STARTS = ("Tasks state", "[ ", "[  pid", "oom-kill:", "Memory cgroup", "memory", "swap:", "kmem:", "Task in",
                       "Mem-Info", "oom_reaper")
_RE_TASK_ROW = re.compile(r"^\[\s*(?P<pid>\d+)\]\s+(?P<rest>.*)\Z", re.S)
_RE_KILLED = re.compile(
    # The comm is in parentheses and may itself hold ")" or a newline: match greedily up to
    # ") total-vm:". The message before it is one of the kernel's own (letters, no "/" or ":"), so
    # a cgroup path at the end of another line cannot make one.
    # Before 4.19 (e.g. 3.10 in RHEL 7): "Killed process N (comm), UID U, total-vm:...".
    r"^(?:(?P<message>[A-Za-z][A-Za-z0-9 ()_-]*?): )?Killed process (?P<pid>\d+) \((?P<comm>.*)\)"
    r"(?:, UID (?P<uid_old>\d+),)?(?: total-vm:(?P<total_vm>\d+)kB)?(?:, anon-rss:(?P<anon>\d+)kB)?"
    r"(?:, file-rss:(?P<file>\d+)kB)?(?:, shmem-rss:(?P<shmem>\d+)kB)?"
    r"(?:,? UID:(?P<uid>\d+))?(?: pgtables:(?P<pgtables>\d+)kB)?"
    r"(?: oom_score_adj:(?P<adj>-?\d+))?\s*\Z", re.S
)
_RE_KILLED_26 = re.compile(
    r"^(?:(?P<message>[A-Za-z][A-Za-z0-9 ()_-]*?): )?Killed process (?P<pid>\d+), UID (?P<uid>\d+), \((?P<comm>.*)\)"
    r"(?: total-vm:(?P<total_vm>\d+)kB)?(?:, anon-rss:(?P<anon>\d+)kB)?(?:, file-rss:(?P<file>\d+)kB)?\s*\Z", re.S)
#: before 4.19 the message was printed on its own line before the Killed line (3.10's
#: oom_kill_process(): "%s: Kill process %d (%s) score %u or sacrifice child", then "Killed process")
_RE_SACRIFICE = re.compile(r"^(?P<message>[A-Za-z][A-Za-z0-9 ()_-]*?): Kill process (?P<pid>\d+) \(.*\) score -?\d+ or sacrifice child\Z", re.S)
_RE_REAPED = re.compile(r"^oom_reaper: reaped process (?P<pid>\d+) \((?P<comm>.*)\), now anon-rss:", re.S)
_RE_GROUP = re.compile(r"^Tasks in (?P<path>.*) are going to be killed due to memory\.oom\.group set\Z", re.S)
#: a group kill's members are killed within the chosen victim's oom_kill_process() call, under oom_lock
_GROUP_SPAN_US = 2_000_000
_RE_MEMINFO_ITEM = re.compile(r"(?<![\w])([a-z_]+):(\d+)(?=\s|$)")
_RE_SWAP_LINE = re.compile(r"^(Free|Total) swap\s*=\s*(\d+)kB$")
_RE_RAM_LINE = re.compile(r"^(\d+) pages RAM$")
# Before 4.19 (mm/memcontrol.c, mem_cgroup_print_oom_info): the cgroups were named on their own
# line, memory.stat was printed on one line as "key:valueKB" pairs, and the task table had no
# "Tasks state" title.
_RE_TASK_IN = re.compile(r"^Task in (?P<task>.*) killed as a result of limit of (?P<oom>.*)\Z", re.S)
_RE_OLD_STATS = re.compile(r"^Memory cgroup stats for (?P<path>.*?): (?P<pairs>(?:[a-z_0-9]+:\d+KB ?)+)\Z", re.S)
_RE_OLD_PAIR = re.compile(r"([a-z_0-9]+):(\d+)KB")
# The summary's last fields: the pid (at most 4194304, PID_MAX_LIMIT) and the uid (32 bits) are
# digits at the end of the line, so this is matched against its last 30 characters only.
_RE_SUMMARY_IDS = re.compile(r",pid=(?P<pid>\d{1,10}),uid=(?P<uid>\d{1,10})\Z")
_SUMMARY_IDS_MAX = len(",pid=,uid=") + 20
#: TASK_COMM_LEN - 1: the bytes of a comm; with ",task=" before it, how far back the tail begins
_COMM_MAX = 15
#: The longest summary whose cgroup paths are split. A kernel log record holds at most 1 KiB of
#: text (PRINTKRB_RECORD_MAX, LOG_LINE_MAX before 5.10): printk starts a new record rather than
#: grow one further, so the kernel never prints a longer oom-kill: line; a syslog that writes each
#: byte as \xNN makes that 4 KiB. A longer line is one a workload printed (kubectl logs | import):
#: its tail (comm, pid, uid) is still read, its cgroup paths are not.
SUMMARY_SPLIT_MAX = 4096


def parse_counter_line(line: str) -> Optional[Tuple[str, CounterLine]]:
    m = _RE_COUNTER.match(line)
    if not m:
        return None
    return m.group("name"), CounterLine(int(m.group("usage")), int(m.group("limit")), int(m.group("failcnt")))


def parse_killed_line(line: str) -> Optional[KilledProcess]:
    m = _RE_KILLED.match(line) or _RE_KILLED_26.match(line) if "Killed process " in line else None
    if not m:
        return None
    # the groups at once (a group the older shape lacks is None): every kill's line is read here
    g = m.groupdict()
    total_vm, anon, file_, uid, pgtables, adj, shmem = (g["total_vm"], g["anon"], g["file"], g["uid"], g.get("pgtables"),
                                                        g.get("adj"), g.get("shmem"))
    if uid is None:
        uid = g.get("uid_old")
    return KilledProcess(
        message=g["message"] or "",
        pid=int(g["pid"]),
        comm=g["comm"],
        total_vm_kb=int(total_vm) if total_vm is not None else None,
        anon_rss_kb=int(anon) if anon is not None else None,
        file_rss_kb=int(file_) if file_ is not None else None,
        uid=int(uid) if uid is not None else None,
        pgtables_kb=int(pgtables) if pgtables is not None else None,
        oom_score_adj=int(adj) if adj is not None else None,
        shmem_rss_kb=int(shmem) if shmem is not None else None,
    )


def _is_cgroup_path(path: str) -> bool:
    return path.startswith("/")


def parse_oom_summary(
    line: str, victim_comm: Optional[str] = None, oom_memcg: Optional[str] = None
) -> Optional[OomSummary]:
    """Parse the ``oom-kill:`` line, whose cgroup paths and comm are printed raw.

    Cgroup names may hold ``,`` and ``=`` (even ``,oom_memcg=``) and a comm may hold ``,pid=``, so
    the line is not split on commas. Instead: the tail ``,task=C,pid=N,uid=U`` is matched at the
    end (using the victim's comm from the Killed line when known); ``oom_memcg`` is the path from
    ``Memory cgroup stats for`` when known; otherwise the split is the one where both paths start
    with ``/`` and task_memcg lies within oom_memcg (the OOM-ing cgroup is the task's or an
    ancestor: mem_cgroup_print_oom_context() in mm/memcontrol.c).

    The work is bounded whatever the line (a container's own output reaches import through
    ``kubectl logs``): the tail is looked for in the line's last characters only, and the paths
    are split in lines of at most SUMMARY_SPLIT_MAX characters (issue 24: trying every pair of
    keys took 28.6 s on a 77 KB line).
    """
    prefix = "oom-kill:"
    if not line.startswith(prefix):
        return None
    body = line[len(prefix):]
    out = OomSummary()

    # 1. The tail: task=<comm>,pid=<pid>,uid=<uid>. The pid and uid end the line (their place is
    #    the only one where digits alone follow ",uid=" and precede it after ",pid=").
    tail_at = -1
    ids_at = len(body) - _SUMMARY_IDS_MAX
    ids = _RE_SUMMARY_IDS.search(body, max(0, ids_at))
    if ids:
        ids_at = ids.start()
        if victim_comm is not None and body.endswith(",task=" + victim_comm, 0, ids_at):
            tail_at, out.task = ids_at - len(",task=" + victim_comm), victim_comm
        else:
            # Without the comm: the leftmost ",task=" before them with a comm that fits in 15
            # bytes (TASK_COMM_LEN); a cgroup path holding ",task=" leaves a longer "comm".
            for i in _find_all(body, ",task=", max(0, ids_at - len(",task=") - _COMM_MAX), ids_at - len(",task=")):
                if len(body[i + len(",task="):ids_at].encode("utf-8", "replace")) <= _COMM_MAX:
                    tail_at, out.task = i, body[i + len(",task="):ids_at]
                    break
        if tail_at >= 0:
            out.pid, out.uid = int(ids.group("pid")), int(ids.group("uid"))
    head = body if tail_at < 0 else body[:tail_at]

    # 2. constraint=..,nodemask=..: these never hold commas. Vendor backports print them empty or
    #    not at all ("oom-kill:constraint=,cpuset=..." and "oom-kill:,cpuset=..." on enterprise
    #    3.10 kernels): what follows is read all the same.
    m = re.match(r"(?:constraint=(?P<c>[A-Z_]*),)?(?:nodemask=(?P<n>[^,]*),)?,?(?=cpuset=)", head)
    if not m:
        return out
    out.constraint, out.nodemask = m.group("c") or None, m.group("n")
    rest = head[m.end():]

    # 3. cpuset=<path>,mems_allowed=<list>[,oom_memcg=<path>,task_memcg=<path>]
    #    or, for a global OOM: cpuset=<path>,mems_allowed=<list>,global_oom,task_memcg=<path>
    memcg_part = None
    g = rest.find(",global_oom,task_memcg=")
    if g >= 0 and _is_cgroup_path(rest[g + len(",global_oom,task_memcg="):]):
        out.task_memcg = rest[g + len(",global_oom,task_memcg="):]
        memcg_part = g
    if memcg_part is None and oom_memcg is not None:
        marker = ",oom_memcg=" + oom_memcg + ",task_memcg="
        i = rest.find(marker)
        if i >= 0:
            out.oom_memcg = oom_memcg
            out.task_memcg = rest[i + len(marker):]
            memcg_part = i
    if memcg_part is None and len(rest) <= SUMMARY_SPLIT_MAX:
        split = _split_memcgs(rest)
        if split is not None:
            memcg_part, out.oom_memcg, out.task_memcg = split
    # oom_memcg= is printed for a memcg OOM only (mem_cgroup_print_oom_context, mm/memcontrol.c). An
    # empty vendor constraint says nothing, and from 4.19 until "mm/oom_kill.c: fix uninitialized
    # oc->constraint" (5.3, backported to 5.1 stable) the summary said CONSTRAINT_NONE for every OOM,
    # a memcg's too (seen in a 5.0 report: tests/fixtures/logs/group-kill-caller-id-5.0.txt).
    if out.oom_memcg and out.constraint in (None, "CONSTRAINT_NONE"):
        out.constraint = "CONSTRAINT_MEMCG"
    cpuset_part = rest if memcg_part is None else rest[:memcg_part]
    m = None if len(cpuset_part) > SUMMARY_SPLIT_MAX else re.match(r"cpuset=(?P<cpuset>.*),mems_allowed=(?P<mems>[0-9,\-]*)\Z", cpuset_part, re.S)
    if m:
        out.cpuset, out.mems_allowed = m.group("cpuset"), m.group("mems")
    return out


def _split_memcgs(rest: str) -> Optional[Tuple[int, str, str]]:
    """(where ``,oom_memcg=`` begins, oom_memcg, task_memcg) of ``...,oom_memcg=P,task_memcg=Q``:
    the leftmost ``,oom_memcg=``, then the leftmost ``,task_memcg=``, where both paths start with
    ``/`` and Q is within P. Q runs to the end, so a pair is tried only when P is no longer than Q:
    at most (len/11) * (len/12) / 2 pairs, each a compare in C (rest is at most SUMMARY_SPLIT_MAX)."""
    ends = [j for j in _find_all(rest, ",task_memcg=") if rest.startswith("/", j + len(",task_memcg="))]
    for i in _find_all(rest, ",oom_memcg="):
        a = i + len(",oom_memcg=")
        if not rest.startswith("/", a):
            continue
        for j in ends:
            c = j + len(",task_memcg=")
            if j < a or j - a > len(rest) - c:
                continue
            p, q = rest[a:j], rest[c:]
            if cgroup_within(q, p):
                return i, p, q
    return None


def _find_all(text: str, needle: str, start: int = 0, end: Optional[int] = None) -> Iterator[int]:
    """Where ``needle`` begins in ``text``, from ``start``, up to ``end`` (None: anywhere)."""
    last = len(text) if end is None else end
    i = text.find(needle, start)
    while 0 <= i <= last:
        yield i
        i = text.find(needle, i + 1)


#: feed_block: a region of more lines is read line by line (the parser keeps a report's first 400)
_BLOCK_MAX = 300
#: a line between a block's header and its Killed line that the parser would read as another
#: report's line, a group kill's or a pre-4.19 kernel's: such a block is read line by line
#: (looked for anywhere in the lines: a literal search each, a sixth of one regex's time)
_BLOCK_DANGER = ("invoked oom-killer", "is already exiting", "or sacrifice child", "Killed process ", "memory.oom.group",
                 "oom_reaper", "killed as a result of limit of", "Mem-Info", "pages RAM", "Free swap", "Total swap")
#: the lines _report_line reads (for a line that is none of these it only keeps the text)
_RE_BLOCK_SPECIAL = re.compile(r"CPU: |memory|swap|kmem|Memory cgroup stats for |\[\s*pid|Tasks state|oom-kill:|Task in ")
#: the first characters of _RE_BLOCK_SPECIAL's lines: a line beginning otherwise is none of them
#: (a test of its first character, a tenth of the regex's failed match: most of a report's lines)
_BLOCK_SPECIAL_FIRST = frozenset("CmskM[To")
_COUNTER_ATTR = {"memory": "memory", "memory+swap": "memsw", "swap": "swap", "kmem": "kmem"}
#: a memory.stat line as _RE_STAT reads it, ASCII digits (any other is read line by line)
_RE_STAT_ASCII = re.compile(r"([a-z_0-9]+) ([0-9]+)\Z")
#: consecutive lines that _RE_STAT_ASCII takes, in lines joined by "\n" (feed_block reads them at
#: once: matched and read line by line, they were a third of a report's reading, issue 29)
_RE_STAT_LINES = re.compile(r"(?:[a-z_0-9]+ [0-9]+(?:\n|\Z))*")


class OomReportParser:
    """Feeds on kernel log records; yields an OomReport for every ``Killed process`` line.

    A report's lines come between ``invoked oom-killer`` and ``Killed process``; unrelated lines
    from other subsystems may be interleaved and are ignored. When the header was rate-limited
    away, the Killed line alone yields a report with ``has_header=False``. OOM kills are
    serialised by oom_lock (mm/oom_kill.c), so two reports never interleave with each other.
    """

    def __init__(self, summaries_are_kills: bool = False) -> None:
        #: a report whose ``oom-kill:`` summary came without its Killed line is given out as that
        #: victim's kill (import: a log is all there is; record has its own kill events)
        self.summaries_are_kills = summaries_are_kills
        self._cur: Optional[OomReport] = None
        self._mode: Optional[str] = None  # "stats", "tasks_header", "tasks"
        self._last_group: Optional[str] = None
        self._last_done: Optional[OomReport] = None  # the last report with a header, once its Killed line came
        self._sacrifice: Optional[Tuple[int, str]] = None  # (pid, message) of a pre-4.19 "Kill process" line
        #: headers read: a report begun by one (importer/split.py checks that a part begins so)
        self.headers = 0

    def feed(self, record: KmsgRecord) -> List[OomReport]:
        text = record.text
        cur = self._cur
        if "\n" in text and cur is not None and self._mode in ("stats", "meminfo"):
            first, rest = text.split("\n", 1)
            if self._data_line(cur, first.rstrip("\r")):  # a block of data lines (6.1's memory.stat)
                for line in rest.split("\n"):
                    self._line(line.rstrip("\r"), record, continued=True)
                return []
        rep = self._line(text.rstrip("\r"), record)
        return [rep] if rep is not None else []

    def feed_all(self, records: Iterable[KmsgRecord]) -> List[OomReport]:
        out: List[OomReport] = []
        for rec in records:
            out.extend(self.feed(rec))
        out.extend(self.finish())
        return out

    def feed_block(self, recs: Union[List[KmsgRecord], DmesgRecords]) -> Optional[OomReport]:
        """A whole report region's records at once (importer/kills.py, for plain dmesg regions):
        the report ``feed`` gives for them one by one, read with a few checks over the lines, when
        the region is a memcg report in its common shape (header, lines of no meaning here, the
        counters, memory.stat, the tasks table, the summary, the Killed line: mm/oom_kill.c's
        dump_header and __oom_kill_process) and the parser is between reports; None otherwise,
        and nothing changed (the caller feeds the records one by one). The per-line work of feed
        was most of a storm's parse (issue 29)."""
        if self._cur is not None or self._mode is not None or self._sacrifice is not None or not 8 <= len(recs) <= _BLOCK_MAX:
            return None
        texts = recs.texts if type(recs) is DmesgRecords else [r.text for r in recs]  # (a fresh list each)
        head, last = texts[0], texts[-1]
        h = _RE_HEADER.match(head)
        middle = "\n".join(texts[1:-1])
        if h is None or "\n" in head or "\r" in middle or middle.count("\n") != len(texts) - 3 \
                or any(d in middle for d in _BLOCK_DANGER):
            return None
        if "is already exiting. Skip killing the task" in last or "or sacrifice child" in last \
                or " invoked oom-killer: " in last and _RE_HEADER.match(last):
            return None
        killed = parse_killed_line(last) if "Killed process " in last else None
        if killed is None:
            return None
        rep = OomReport(has_header=True, started=True, trigger_comm=h.group("comm"), gfp_mask=h.group("gfp"),
                        order=int(h.group("order")), trigger_oom_score_adj=int(h.group("adj")),
                        first_seq=recs[0].seq, first_usec=recs[0].usec)
        n = len(texts) - 1
        i = 1
        # the lines before the counters: none may be one the parser reads (the danger above, then these)
        while i < n:
            t = texts[i]
            if t[:1] not in _BLOCK_SPECIAL_FIRST or _RE_BLOCK_SPECIAL.match(t) is None:
                i += 1
                continue
            if rep.trigger_pid is None and t.startswith("CPU: "):
                s = _RE_STACK_CPU.match(t)
                if s:
                    rep.trigger_pid = int(s.group("pid"))
                    i += 1
                    continue
            if _RE_COUNTER.match(t):
                break
            return None
        counters = 0
        while i < n:
            c = parse_counter_line(texts[i])
            if c is None:
                break
            name, counter = c
            setattr(rep, _COUNTER_ATTR[name], counter)
            counters += 1
            i += 1
        t = texts[i] if i < n else ""
        if not counters or not (t.startswith(_STATS_PREFIX) and t.endswith(":")) or _RE_OLD_STATS.match(t):
            return None
        rep.stats_cgroup = t[len(_STATS_PREFIX):-1]
        i += 1
        # memory.stat's lines at once: those _RE_STAT_ASCII takes one by one, from line i of middle
        # on, each "key value" with no other space: split, they are key, value, key, value, ...
        words = _RE_STAT_LINES.match(middle, sum(map(len, texts[1:i])) + i - 1).group().split()
        rep.memory_stat.update(zip(words[0::2], map(int, words[1::2])))
        i += len(words) // 2
        if i + 1 >= n or texts[i] != _TASKS_TITLE:
            return None
        cols = [c for c in re.sub(r"^\[\s*pid\s*\]", "pid", texts[i + 1]).split(" ") if c]
        if not cols or cols[0] != "pid":
            return None
        rep.task_columns = cols
        i += 2
        while i < n - 1:
            row = _RE_TASK_ROW.match(texts[i])
            if row is None:
                return None
            task = _parse_task_row(int(row.group("pid")), row.group("rest"), cols)
            if task is None:
                return None
            rep.tasks.append(task)
            i += 1
        summary = texts[n - 1] if i == n - 1 else ""
        if not summary.startswith("oom-kill:") or _RE_TASK_ROW.match(summary):
            return None
        rep.summary_usec, rep.summary_seq, rep.summary_raw = recs[n - 1].usec, recs[n - 1].seq, summary
        # (feed reads the summary twice, without the comm, then with the Killed line's: the first
        # reading is replaced by the second and cannot fail, string operations only; not done here)
        rep.killed, rep.killed_usec, rep.last_seq = killed, recs[n].usec, recs[n].seq
        rep.summary = parse_oom_summary(summary, killed.comm, rep.stats_cgroup)
        rep.lines = texts
        self.headers += 1
        self._last_group = None
        self._last_done = rep
        return rep

    def finish(self) -> List[OomReport]:
        """At the end of the log: a report whose summary names its victim but whose Killed line
        never came is still that kill's."""
        rep = self._orphan()
        return [rep] if rep is not None else []

    def _orphan(self) -> Optional[OomReport]:
        """The current report as a kill of the victim its ``oom-kill:`` summary names, when it has
        one and no Killed line: the summary is printed by oom_kill_process() just before the kill
        (dump_oom_victim, mm/oom_kill.c), so the kill happened unless the kernel then said the
        victim "is already exiting" (handled where that line is read)."""
        cur = self._cur
        if not self.summaries_are_kills or cur is None or cur.killed is not None or cur.summary is None \
                or cur.summary.pid is None:
            return None
        cur.killed = KilledProcess(message="", pid=cur.summary.pid, comm=cur.summary.task or "?", uid=cur.summary.uid, seen=False)
        cur.killed_usec, cur.last_seq, cur.killed_from_summary = cur.summary_usec, cur.summary_seq, True
        self._cur = None
        self._mode = None
        return cur

    def _line(self, line: str, rec: KmsgRecord, continued: bool = False) -> Optional[OomReport]:
        """One line: first the data line of the block being read (the mode), then, for a line
        that starts a record, the report's own lines. Nothing calls back into here."""
        cur = self._cur
        if cur is not None and self._mode is not None and self._data_line(cur, line):
            return None
        if continued:
            # Not the first line of its record, and not data: text of a name with a newline in
            # it, or a block this parser does not read. Never a report line (see the docstring).
            if cur is not None and len(cur.lines) < 400:
                cur.lines.append(line)
            return None
        return self._report_line(line, rec)

    def _data_line(self, cur: OomReport, line: str) -> bool:
        """Takes the line if it is a data line of the current mode's block; else leaves the mode
        (Mem-Info ends at its per-node lines or a blank one). True when the line was taken."""
        mode = self._mode
        if mode == "stats":
            # Most of a report's lines are memory.stat's "key value" (no header, Killed or group
            # line has that shape).
            s = _RE_STAT.match(line)
            if s:
                cur.memory_stat[s.group("key")] = int(s.group("value"))
                cur.lines.append(line)
                return True
            if not line.startswith(_REPORT_LINE_STARTS) and "Killed process" not in line and "invoked oom-killer" not in line:
                return False  # a line of another subsystem (or an elision, "...") amid memory.stat: the block goes on
        elif mode == "tasks_header":
            cols = re.sub(r"^\[\s*pid\s*\]", "pid", line).split(" ")
            cols = [c for c in cols if c]
            if cols and cols[0] == "pid":
                cur.task_columns = cols
                cur.lines.append(line)
                self._mode = "tasks"
                return True
        elif mode == "tasks":
            t = _RE_TASK_ROW.match(line)
            if t and cur.task_columns:
                row = _parse_task_row(int(t.group("pid")), t.group("rest"), cur.task_columns)
                if row is not None:
                    cur.tasks.append(row)
                    cur.lines.append(line)
                    return True
        elif mode == "meminfo":
            items = _RE_MEMINFO_ITEM.findall(line) if line.strip() and not line.startswith("Node ") else None
            if items and "Killed process " not in line and "invoked oom-killer" not in line:
                for key, value in items:
                    cur.mem_info[key] = int(value)
                cur.lines.append(line)
                return True
        self._mode = None
        return False

    def _report_line(self, line: str, rec: KmsgRecord) -> Optional[OomReport]:
        m = _RE_HEADER.match(line)
        if m:
            orphan = self._orphan()  # the previous report's summary without its Killed line
            self.headers += 1
            self._cur = OomReport(
                has_header=True,
                started=True,
                trigger_comm=m.group("comm"),
                gfp_mask=m.group("gfp"),
                order=int(m.group("order")),
                trigger_oom_score_adj=int(m.group("adj")),
                first_seq=rec.seq,
                first_usec=rec.usec,
            )
            self._mode = None
            self._last_group = None
            self._last_done = None
            self._cur.lines.append(line)
            return orphan

        if "is already exiting. Skip killing the task" in line:  # __oom_kill_process(): no kill after all
            if self._cur is not None and self._cur.killed is None:
                self._cur = None
                self._mode = None
            return None

        if "or sacrifice child" in line:
            sac = _RE_SACRIFICE.match(line)
            if sac:
                self._sacrifice = (int(sac.group("pid")), sac.group("message"))
                if self._cur is not None:
                    self._cur.lines.append(line)
                return None
        killed = parse_killed_line(line) if "Killed process " in line else None
        if killed is not None:
            if not killed.message and self._sacrifice is not None and self._sacrifice[0] == killed.pid:
                killed.message = self._sacrifice[1]  # "Memory cgroup out of memory", "Out of memory"
            self._sacrifice = None
            # The open report takes this line even when its summary names another pid: the kernel
            # prints both for one kill with two pids when it kills a child in the chosen parent's
            # place (before 5.0: "or sacrifice child") or a thread in the place of a dead group
            # leader (__oom_kill_process, find_lock_task_mm: mm/oom_kill.c). A check of the pids
            # made one kill two (a review of 2026-12-08, on the RHEL 7 fixture).
            rep = self._cur if (self._cur is not None and self._cur.killed is None) else OomReport(first_seq=rec.seq, first_usec=rec.usec)
            if rep is not self._cur and self._last_done is not None and self._last_done.killed_usec is not None \
                    and not 0 <= rec.usec - self._last_done.killed_usec <= _GROUP_SPAN_US:
                self._last_done = self._last_group = None  # too late to be a member of that group kill
            if rep is not self._cur:
                rep.group_kill_cgroup = self._last_group
            rep.killed = killed
            rep.killed_usec = rec.usec
            rep.last_seq = rec.seq
            rep.lines.append(line)
            if rep.summary_raw is not None:
                rep.summary = parse_oom_summary(rep.summary_raw, killed.comm, rep.stats_cgroup)
            if rep.group_kill_cgroup is None and self._last_group is not None:
                rep.group_kill_cgroup = self._last_group
            if rep is not self._cur and self._last_group is not None and self._last_done is not None:
                # a group member: its cgroup hit no limit of its own, the group's chosen victim's did
                head = self._last_done
                rep.group_head = head
                hs = head.summary
                if hs is not None:
                    rep.summary = OomSummary(constraint=hs.constraint, oom_memcg=hs.oom_memcg)
                elif head.stats_cgroup:
                    rep.summary = OomSummary(constraint="CONSTRAINT_MEMCG" if head.is_memcg else None, oom_memcg=head.stats_cgroup)
            if rep is self._cur and rep.started:  # a report cut at its start still names the group's cgroup
                self._last_done = rep
            # Later Killed lines (memory.oom.group) come without a report of their own.
            self._cur = None
            self._mode = None
            return rep

        g = _RE_GROUP.match(line)
        if g:
            self._last_group = g.group("path")
            if self._cur is not None:
                self._cur.group_kill_cgroup = self._last_group
                self._cur.lines.append(line)
            elif self._last_done is not None:  # printed after the chosen victim's Killed line (oom_kill_process)
                self._last_done.group_kill_cgroup = self._last_group
                self._last_done.lines.append(line)
            return None

        cur = self._cur
        if cur is None:
            # A log cut in the middle of a report (or a header lost): its cgroup lines still say
            # what was charged. Start a report without a header at the first of them.
            if _RE_TASK_IN.match(line) or parse_counter_line(line) or line.startswith(_STATS_PREFIX) \
                    or line.startswith("oom-kill:"):
                cur = self._cur = OomReport(first_seq=rec.seq, first_usec=rec.usec, started=True)
                self._mode = None
            else:
                return None
        reaped = _RE_REAPED.match(line)
        if reaped and cur.killed is None:
            # The Killed line is missing (lost, or cut from the log) but the reaper names the
            # victim: the report is still this kill's.
            cur.killed = KilledProcess(message="", pid=int(reaped.group("pid")), comm=reaped.group("comm"), seen=False)
            cur.killed_usec = rec.usec
            cur.last_seq = rec.seq
            cur.lines.append(line)
            self._cur = None
            self._mode = None
            return cur

        if cur.trigger_pid is None:
            s = _RE_STACK_CPU.match(line)
            if s:
                cur.trigger_pid = int(s.group("pid"))
                cur.lines.append(line)
                return None
        c = parse_counter_line(line)
        if c:
            name, counter = c
            attr = {"memory": "memory", "memory+swap": "memsw", "swap": "swap", "kmem": "kmem"}[name]
            setattr(cur, attr, counter)
            cur.lines.append(line)
            return None
        t_in = _RE_TASK_IN.match(line)
        if t_in:
            cur.summary = OomSummary(constraint="CONSTRAINT_MEMCG", oom_memcg=t_in.group("oom"), task_memcg=t_in.group("task"))
            cur.lines.append(line)
            return None
        old = _RE_OLD_STATS.match(line) if line.startswith(_STATS_PREFIX) else None
        if old:
            # Before 4.19 mem_cgroup_print_oom_info (mm/memcontrol.c) prints one line per cgroup
            # of the oom_memcg's subtree (for_each_mem_cgroup_tree), each with its own, local
            # counts: the first is the oom_memcg's, and the subtree's charge is their sum (a
            # kubepods pod's own line is all zeros; its containers' lines hold the memory).
            pairs = {k: int(v) * 1024 for k, v in _RE_OLD_PAIR.findall(old.group("pairs"))}
            if cur.stats_cgroup is None:
                cur.stats_cgroup = old.group("path")
                cur.memory_stat = pairs
            else:
                for k, v in pairs.items():
                    cur.memory_stat[k] = cur.memory_stat.get(k, 0) + v
            cur.lines.append(line)
            return None
        if line.startswith("[ pid ]") or line.startswith("[  pid  ]"):
            # Before 4.19 the table has no title: its column line starts it.
            self._mode = "tasks_header"
            self._data_line(cur, line)
            return None
        if line.startswith(_STATS_PREFIX) and line.endswith(":"):
            cur.stats_cgroup = line[len(_STATS_PREFIX):-1]
            self._mode = "stats"
            cur.lines.append(line)
            return None
        if line == "Mem-Info:":
            self._mode = "meminfo"
            cur.lines.append(line)
            return None
        sw = _RE_SWAP_LINE.match(line)
        if sw:
            cur.mem_info["free_swap_kb" if sw.group(1) == "Free" else "total_swap_kb"] = int(sw.group(2))
        ram = _RE_RAM_LINE.match(line)
        if ram:
            cur.mem_info["ram_pages"] = int(ram.group(1))
        if line == _TASKS_TITLE:
            self._mode = "tasks_header"
            cur.lines.append(line)
            return None
        if line.startswith("oom-kill:"):
            orphan = None
            if self.summaries_are_kills and cur.summary is not None and cur.killed is None:  # summaries alone (grep oom-kill)
                orphan = self._orphan()
                cur = self._cur = OomReport(first_seq=rec.seq, first_usec=rec.usec, started=True)
            cur.summary_usec, cur.summary_seq = rec.usec, rec.seq
            cur.summary_raw = line
            cur.summary = parse_oom_summary(line, None, cur.stats_cgroup)
            cur.lines.append(line)
            return orphan
        # Call trace, registers, Mem-Info of a global OOM: kept as text for the reader.
        if len(cur.lines) < 400:
            cur.lines.append(line)
        return None


def _parse_task_row(pid: int, rest: str, columns: List[str]) -> Optional[TaskRow]:
    # Columns after "pid" are numbers except the last ("name"), which may contain spaces.
    numeric = columns[1:-1]
    parts = rest.split(None, len(numeric))
    if len(parts) < len(numeric) + 1:
        if len(parts) == len(numeric):  # an empty comm
            parts.append("")
        else:
            return None
    values: Dict[str, int] = {}
    for col, text in zip(numeric, parts[: len(numeric)]):
        try:
            values[col] = int(text)
        except ValueError:
            return None
    return TaskRow(pid=pid, name=parts[len(numeric)], values=values)


def parse_reports(text: str) -> List[OomReport]:
    """Every OOM report in a /dev/kmsg dump (``cat /dev/kmsg`` format)."""
    return OomReportParser().feed_all(parse_kmsg_dump(text))
