"""The kills in a kernel log: a pure iterator from its lines to one capture per kill (not written).

The kernel's OOM reports are parsed from the lines (kernel/oom_report.py, kernel/logformats.py)
and each is assembled as record assembles a kill (capture/assemble.py), the kills of a
memory.oom.group linked as one incident (capture/groups.py). A log gives only what the kernel
printed: every figure's source is ``kernel_log``, there is no timeline, and the processes are the
report's tasks table. Where the lines come from is importer/sources.py; writing them, importer/run.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import re
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ..capture.assemble import assemble, capture_from_report
from ..capture.groups import killed_again, link
from ..capture.inputs import Recording
from ..containers import NodeNames, workload_of
from ..kernel.kmsg import KmsgRecord
from ..kernel.logformats import DmesgRecords, LogLine, ReaderState, plain_dmesg, plain_top_usec, read_log_lines
from ..kernel.oom_report import OomReport, OomReportParser
from ..model import Capture, Host, Source
from ..terminal import terminal_safe

NOTE = ("Imported from a kernel log: every figure is what the kernel printed in its OOM report. A log has no "
        "timeline, no per-process data beyond the report's tasks table, and no reading of the cgroup before "
        "or after the kill.")


@dataclasses.dataclass
class Imported:
    capture: Capture
    report: OomReport


def _version_of(rep: OomReport) -> Optional[int]:
    if "anon" in rep.memory_stat or rep.swap is not None:
        return 2
    if "rss" in rep.memory_stat or "cache" in rep.memory_stat or rep.memsw is not None or rep.kmem is not None:
        return 1
    return None


def import_reports(lines: Iterable[str], since: Optional[float] = None, boot_wall: Optional[float] = None,
                   year: Optional[int] = None, host: Optional[Host] = None,
                   names: Optional[NodeNames] = None, problems: Optional[List[str]] = None,
                   not_after: Optional[float] = None,
                   dated_by: Optional[Callable[[], Optional[Tuple[float, str]]]] = None) -> List[Imported]:
    """Captures of every kill in the log (not written). ``boot_wall``: the wall time of the
    printk clock's zero, when known (the running host), to date lines that carry no date.
    ``year`` / ``dated_by`` (a date with its year elsewhere in the log) / ``not_after`` (the log
    file's modification time): for dates printed without a year (kernel/logformats.py).

    Every kill is made on its own: one that fails is left out and described in one line in
    ``problems`` (when given), and the others go on."""
    return list(iter_imports(lines, since, boot_wall, year, host, names, problems, not_after, dated_by))


def iter_imports(lines: Iterable[str], since: Optional[float] = None, boot_wall: Optional[float] = None,
                 year: Optional[int] = None, host: Optional[Host] = None,
                 names: Optional[NodeNames] = None, problems: Optional[List[str]] = None,
                 not_after: Optional[float] = None,
                 dated_by: Optional[Callable[[], Optional[Tuple[float, str]]]] = None) -> Iterator[Imported]:
    """As import_reports, one capture at a time, so that a large log's captures are written as
    they come instead of all held at once. A kill is given out once the next report with a header
    begins (or the log ends): the Killed lines of a memory.oom.group kill that follow it may still
    add to it."""
    reader = KillReader(since, boot_wall, year, host, names, problems, not_after, dated_by)
    yield from reader.read(lines)
    yield from reader.end()


class NotAHeader(Exception):
    """A part of a log that was to begin with a report's header begins otherwise (importer/split.py)."""


class KillReader:
    """iter_imports' state, read on from one part of a log to the next (importer/split.py reads a
    large log in two processes: the second reads the first part for this state alone)."""

    def __init__(self, since: Optional[float] = None, boot_wall: Optional[float] = None,
                 year: Optional[int] = None, host: Optional[Host] = None,
                 names: Optional[NodeNames] = None, problems: Optional[List[str]] = None,
                 not_after: Optional[float] = None,
                 dated_by: Optional[Callable[[], Optional[Tuple[float, str]]]] = None):
        self.since, self.boot_wall, self.host, self.names, self.problems = since, boot_wall, host, names, problems
        self.dated_by = dated_by
        self.parser = OomReportParser(summaries_are_kills=True)
        self.walls: Dict[int, LogLine] = {}  # the lines that say more than their printk time, by it
        self.pending: List[Imported] = []
        self.heads: Dict[int, Imported] = {}  # the last report with a header (a group kill's chosen victim), by id
        #: a date with its year elsewhere in the log, once looked for
        self.elsewhere: List[Optional[Tuple[float, str]]] = []
        self.lines = ReaderState(year, not_after, self._dated_once)
        self.kept = 0  # lines kept in walls (importer/split.py: none was dropped while it is at most _WALLS_KEPT)

    def _dated_once(self) -> Optional[Tuple[float, str]]:
        if not self.elsewhere:
            self.elsewhere.append(self.dated_by() if self.dated_by is not None else None)
        return self.elsewhere[0]

    def _given(self, imps: List[Imported]) -> Iterator[Imported]:
        since = self.since
        for i in imps:
            if since is None or _when(i) is None or _when(i) >= since:
                yield i

    def read(self, lines: Iterable[str], capture: bool = True, first_is_header: bool = False) -> Iterator[Imported]:
        """The kills of these lines, read on from the lines before. ``capture`` False: the lines
        are read for the state alone (nothing is made or given). ``first_is_header``: the first
        record must begin a report with a header (else NotAHeader, before anything is given): the
        kills of the lines before are then complete (no group kill goes on past a header)."""
        return self._read(read_log_lines(lines, state=self.lines), capture, first_is_header)

    def read_regions(self, texts: Iterable[str], capture: bool = True, first_is_header: bool = False) -> Iterator[Imported]:
        """As ``read`` of the lines of these report regions' texts (sources.MappedLog.texts), the
        same kills and state, with a region of plain dmesg lines (logformats.plain_dmesg) read at
        once: its records made without read_log_lines' step per line, and a memcg report in its
        common shape parsed whole (OomReportParser.feed_block). Regions of other shapes, and the
        first when ``first_is_header``, are read line by line, consecutive ones in one stream
        (a record may go on in the next region's indented lines)."""
        slow: List[str] = []
        it = iter(texts)
        text = next(it, None)
        first = first_is_header  # the first region is read line by line, its first record checked there
        check = False  # the regions in ``slow`` begin with it
        st = self.lines
        while text is not None:
            nxt = next(it, None)
            recs = None
            if not first and (nxt is None or nxt.lstrip("\r\n")[:1] != " "):
                recs = plain_dmesg(text)
            if recs is None:
                slow.append(text)
                check, first = check or first, False
                text = nxt
                continue
            if slow:
                yield from self._read(read_log_lines(_lines_of(slow), state=st), capture, check)
                slow, check = [], False
            records = DmesgRecords(recs, st.seq)  # (each record made when asked)
            st.seq += len(recs)
            top = plain_top_usec(recs)
            if top > st.synthetic:
                st.synthetic = top
            try:
                rep = self.parser.feed_block(records)
            except Exception:  # read line by line below, where a parser's failure is said
                rep = None
            if rep is None:
                yield from self._read((_new(LogLine, (r, None, None, "dmesg", True, "", "", False)) for r in records), capture, False)
            else:
                ll = _new(LogLine, (records[-1], None, None, "dmesg", True, "", "", False))
                if capture:
                    yield from self._reports([rep], ll)
                elif len(self.walls) > 100_000:
                    self.walls.clear()
            text = nxt
        if slow:
            yield from self._read(read_log_lines(_lines_of(slow), state=st), capture, check)
        elif first:
            raise NotAHeader("no record")

    def _read(self, lls: Iterable[LogLine], capture: bool, first_is_header: bool) -> Iterator[Imported]:
        walls, problems = self.walls, self.problems
        check = first_is_header
        for ll in lls:
            if ll.wall is not None or ll.host is not None or not ll.clocked or ll.yearless:
                walls[ll.record.usec] = ll
                self.kept += 1
            if check and ("\n" in ll.record.text or _first_word(ll.record.text) == "pid"):
                # a header a parser in another state may take otherwise (a block of memory.stat
                # lines, the tasks table's column line): the lines before it are not forgotten
                raise NotAHeader(f"log record {ll.record.seq}")
            headers = self.parser.headers
            try:
                reports = self.parser.feed(ll.record)
            except Exception as exc:  # a parser bug costs this log region, not the import
                if capture:
                    _problem(problems, f"a report near log record {ll.record.seq} was not read ({type(exc).__name__}: {exc})")
                self.parser = OomReportParser(summaries_are_kills=True)
                reports = None
            if check:
                if self.parser.headers == headers or reports is None:
                    raise NotAHeader(f"log record {ll.record.seq}")
                check = False
            if not reports:  # (the kills held are given out only as reports come)
                continue
            if not capture:
                for _ in reports:
                    if len(walls) > 100_000:
                        walls.clear()
                continue
            yield from self._reports(reports, ll)
        if check:
            raise NotAHeader("no record")

    def skim_regions(self, texts: Iterable[str]) -> bool:
        """As ``skim`` of these regions' lines, a region of plain dmesg lines counted at once
        (read_regions: they are records with the printk time only, nothing of them is kept)."""
        clean = True
        slow: List[str] = []
        st = self.lines
        it = iter(texts)
        text = next(it, None)
        while text is not None:
            nxt = next(it, None)
            recs = plain_dmesg(text) if nxt is None or nxt.lstrip("\r\n")[:1] != " " else None
            if recs is None:
                slow.append(text)
            else:
                if slow:
                    clean = self.skim(_lines_of(slow)) and clean
                    slow = []
                st.seq += len(recs)
                top = plain_top_usec(recs)
                if top > st.synthetic:
                    st.synthetic = top
                if "or sacrifice child" in text:
                    clean = False
            text = nxt
        if slow:
            clean = self.skim(_lines_of(slow)) and clean
        return clean

    def skim(self, lines: Iterable[str]) -> bool:
        """The reader's state over these lines, without the parser (importer/split.py: a header
        after them begins the parser anew): False when a line could leave the parser a state a
        header does not forget (a pre-4.19 "or sacrifice child" line)."""
        walls = self.walls
        clean = True
        for ll in read_log_lines(lines, state=self.lines, skim=True):
            if ll.wall is not None or ll.host is not None or not ll.clocked or ll.yearless:
                walls[ll.record.usec] = ll
                self.kept += 1
            if "or sacrifice child" in ll.record.text:
                clean = False
        return clean

    def _reports(self, reports: List[OomReport], ll: LogLine) -> Iterator[Imported]:
        walls = self.walls
        for rep in reports:
            try:
                head = self.heads.get(id(rep.group_head)) if rep.group_head is not None else None
                if head is not None and rep.killed is not None and head.report.killed is not None \
                        and rep.killed.pid == head.report.killed.pid:
                    _killed_again(head, rep)  # the chosen victim, killed a second time as a member: one victim
                    continue
                imp = _capture(rep, walls, self.boot_wall, self.host, self.names, self.elsewhere[0] if self.elsewhere else None)
                if rep.started:
                    yield from self._given(self.pending)
                    self.pending = []
                    self.heads = {id(rep): imp}
                elif head is not None:
                    _join_group(head, imp)
                self.pending.append(imp)
            except Exception as exc:  # one odd kill must not cost the others
                who = f"pid {rep.killed.pid}" if rep.killed is not None else "?"
                _problem(self.problems, f"the kill of {who} near log record {ll.record.seq} was skipped ({type(exc).__name__}: {exc})")
            if len(walls) > 100_000:
                walls.clear()
        if len(self.pending) > 1000 and not self.heads:
            yield from self._given(self.pending)
            self.pending = []
        elif len(self.pending) > 1000:  # a long run of rate-limited kills after a report: the group (if any) is long over
            yield from self._given(self.pending)
            self.pending, self.heads = [], {}

    def flush(self) -> Iterator[Imported]:
        """The kills held for a group kill that may go on (the next part begins with a header: it does not)."""
        pending, self.pending, self.heads = self.pending, [], {}
        yield from self._given(pending)

    def end(self) -> Iterator[Imported]:
        """The end of the log: a summary whose Killed line never came, and the kills held."""
        ll = LogLine(KmsgRecord(6, 0, -1, 0, ""))
        yield from self._reports(self.parser.finish(), ll)
        yield from self.flush()


#: a NamedTuple made without its __new__'s Python call (as logformats does)
_new = tuple.__new__


def _lines_of(texts: List[str]) -> Iterator[str]:
    """The lines of these regions' texts, as sources.MappedLog.lines gives them."""
    for text in texts:
        yield from text.split("\n")  # never splitlines(): U+2028 & co. are text


def _killed_again(head: Imported, rep: OomReport) -> None:
    killed_again(head.capture, rep.group_kill_cgroup or head.report.group_kill_cgroup, rep.lines[-1] if rep.lines else "")


def _join_group(head: Imported, imp: Imported) -> None:
    """A member of the head's group kill (capture/groups.py), said in the member's notes."""
    link(head.capture, imp.capture, head.report.group_kill_cgroup)
    imp.capture.notes.append(f"Killed as a member of the memory.oom.group kill of {imp.report.group_kill_cgroup}: the cgroup that "
                             f"hit its limit ({imp.capture.cgroup.oom_memcg or 'unknown'}) and its memory are those the report of the "
                             f"group's first victim, pid {head.capture.victim.pid}, printed just before.")


def _first_word(text: str) -> str:
    """The first word of a record, as the parser reads a tasks table's column line (kernel/oom_report.py)."""
    words = re.sub(r"^\[\s*pid\s*\]", "pid", text).split(" ")
    return next((w for w in words if w), "")


_RE_LONG_NUMBER = re.compile(r"\d{21,}")


def _problem(problems: Optional[List[str]], text: str) -> None:
    if problems is None:
        return
    text = _RE_LONG_NUMBER.sub(lambda m: f"<a number of {len(m.group())} digits>", text)
    problems.append(terminal_safe(text[:500]))


def _when(imp: Imported) -> Optional[float]:
    try:
        t = dt.datetime.fromisoformat(imp.capture.times.kill_wall) if imp.capture.times.kill_wall else None
    except (ValueError, OverflowError):
        return None
    if t is not None and t.tzinfo is None:  # a local time, its zone unknown: compared as --since's UTC
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp() if t is not None else None


_RE_RELEASE = re.compile(r"^CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: .*? (?:Not tainted|Tainted: [A-Z \-]*?) +(?P<rel>\d+\.\d+\S*)")
_RE_NODE_ANON = re.compile(r"^Node \d+ active_anon:(\d+)kB inactive_anon:(\d+)kB")
#: what a call trace or register dump looks like on each architecture (arch/*/kernel/traps.c,
#: process.c: show_regs): the first that matches a report line names the logging machine's
_ARCH_SIGNS = (
    (re.compile(r"^(?:RIP: [0-9a-f]{4}:|RSP: [0-9a-f]{4}:|R1[0-5]: [0-9a-f]{16}"
                r"| (?:entry_SYSCALL_64|asm_exc_page_fault|system_call_fastpath|page_fault)\b)"), "x86_64"),
    (re.compile(r"^(?:EIP: |EAX: [0-9a-f]{8} )"), "i386"),
    (re.compile(r"^(?:pc : |lr : | el0_(?:da|svc|sync)\b)"), "aarch64"),
    (re.compile(r"^(?:NIP: |NIP \[|LR \[)"), "ppc64"),
    (re.compile(r"^Krnl PSW "), "s390x"),
)
#: _ARCH_SIGNS as one pattern: at a line's start the alternatives are tried in their order, so
#: the group that matches is the first sign of the list that does (one match a line, not five)
_RE_ARCH = re.compile("|".join(f"(?:{rx.pattern})" for rx, _ in _ARCH_SIGNS))
#: _RE_ARCH after a newline (logged_host's text of lines: a line's start is after its newline)
_RE_ARCH_AFTER_NEWLINE = re.compile("\n(?:" + "|".join(f"(?:{rx.pattern[1:]})" for rx, _ in _ARCH_SIGNS) + ")")
_ARCH_IN_RELEASE = (("x86_64", "x86_64"), ("amd64", "x86_64"), ("aarch64", "aarch64"), ("arm64", "aarch64"),
                    ("ppc64le", "ppc64"), ("ppc64", "ppc64"), ("s390x", "s390x"), ("i686", "i386"))
#: base page sizes fixed by the architecture (x86 and s390 have only 4 KiB base pages); arm64
#: and ppc64 kernels are built with 4, 16 or 64 KiB
_FIXED_PAGE = {"x86_64": 4096, "i386": 4096, "s390x": 4096}
ASSUMED_PAGE = 4096


@dataclasses.dataclass
class LoggedHost:
    """The host facts an OOM report itself states; None: not in the log."""

    kernel_release: Optional[str] = None
    arch: Optional[str] = None
    arch_from: str = ""
    page_size: Optional[int] = None
    page_size_from: str = ""
    hardware: Optional[str] = None


def logged_host(rep: OomReport) -> LoggedHost:
    """Reads the logging machine's facts from its report's lines: the kernel release from dump_stack's
    ``CPU: .. Comm: .. Not tainted <release>`` line, the architecture from the register dump or call
    trace (else the release's suffix), the page size from a global OOM's Mem-Info (pages) against
    its per-node lines (kB), else from the architecture when it has one page size.

    The lines are looked at in one text (each line after a newline): the few that begin with what
    is read are found by a search, not each line tried in turn (a fifth of an imported kill's
    capture, issue 29, eighth pass); lines holding a newline of their own are read one by one
    (_logged_host_each: the same facts, tests/unit/test_import_fast.py)."""
    lines = rep.lines
    text = "\n" + "\n".join(lines)
    if text.count("\n") != len(lines):
        return _logged_host_each(rep)
    out = LoggedHost()
    node_kb = 0
    i = text.find("\nCPU: ")
    while i >= 0 and out.kernel_release is None:
        m = _RE_RELEASE.match(_line_at(text, i))
        if m:
            out.kernel_release = m.group("rel")
        i = text.find("\nCPU: ", i + 1)
    i = text.find("\nHardware name: ")
    if i >= 0:
        out.hardware = _line_at(text, i)[len("Hardware name: "):].strip()
    i = text.find("\nNode ")
    while i >= 0:
        m = _RE_NODE_ANON.match(_line_at(text, i))
        if m:
            node_kb += int(m.group(1)) + int(m.group(2))
        i = text.find("\nNode ", i + 1)
    a = _RE_ARCH_AFTER_NEWLINE.search(text)
    if a is not None:
        line = _line_at(text, a.start())
        for rx, arch in _ARCH_SIGNS:
            if rx.match(line):
                out.arch, out.arch_from = arch, "the report's register dump / call trace"
                break
    return _logged_host_end(rep, out, node_kb)


def _line_at(text: str, i: int) -> str:
    """The line after the newline at ``i``."""
    end = text.find("\n", i + 1)
    return text[i + 1:end] if end >= 0 else text[i + 1:]


def _logged_host_each(rep: OomReport) -> LoggedHost:
    """logged_host, its report's lines tried one by one."""
    out = LoggedHost()
    node_kb = 0
    for line in rep.lines:
        if out.kernel_release is None and line.startswith("CPU: "):
            m = _RE_RELEASE.match(line)
            if m:
                out.kernel_release = m.group("rel")
        elif out.hardware is None and line.startswith("Hardware name: "):
            out.hardware = line[len("Hardware name: "):].strip()
        elif line.startswith("Node "):
            m = _RE_NODE_ANON.match(line)
            if m:
                node_kb += int(m.group(1)) + int(m.group(2))
        if out.arch is None and _RE_ARCH.match(line):
            for rx, arch in _ARCH_SIGNS:
                if rx.match(line):
                    out.arch, out.arch_from = arch, "the report's register dump / call trace"
                    break
    return _logged_host_end(rep, out, node_kb)


def _logged_host_end(rep: OomReport, out: LoggedHost, node_kb: int) -> LoggedHost:
    """logged_host's facts from its lines' facts: the architecture from the release, the page size."""
    if out.arch is None and out.kernel_release:
        for needle, arch in _ARCH_IN_RELEASE:
            if needle in out.kernel_release:
                out.arch, out.arch_from = arch, "the kernel release's name"
                break
    pages = rep.mem_info.get("active_anon", 0) + rep.mem_info.get("inactive_anon", 0)
    if node_kb and pages:
        size = round(node_kb * 1024 / pages)
        if size in (4096, 8192, 16384, 65536):
            out.page_size, out.page_size_from = size, "Mem-Info's page counts against its per-node kB"
    if out.page_size is None and out.arch in _FIXED_PAGE:
        out.page_size, out.page_size_from = _FIXED_PAGE[out.arch], f"{out.arch} has only this base page size"
    return out


#: import's fast path on (capture/assemble.py capture_from_report); tests turn it off to compare
FAST = True
#: below this, a report's number makes no capture figure absurd (model.ABSURD is 2**80): the
#: largest factor one is multiplied by is a page size (at most 64 KiB: logged_host)
_BOUND = 1 << 63
#: the numbers of a report and of its parts (tests/unit/test_import_fast.py checks that these are
#: every int field of kernel/oom_report.py's dataclasses)
REPORT_INTS = ("trigger_pid", "order", "trigger_oom_score_adj", "first_seq", "last_seq", "first_usec", "killed_usec",
               "summary_usec", "summary_seq")
COUNTER_INTS = ("usage_kb", "limit_kb", "failcnt")
KILLED_INTS = ("pid", "total_vm_kb", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb", "uid", "pgtables_kb", "oom_score_adj")
SUMMARY_INTS = ("pid", "uid")
_report_ints = operator.attrgetter(*REPORT_INTS)
_counter_ints = operator.attrgetter(*COUNTER_INTS)
_killed_ints = operator.attrgetter(*KILLED_INTS)
_summary_ints = operator.attrgetter(*SUMMARY_INTS)
_INT_OR_NONE = frozenset((int, type(None)))


def bounded(rep: OomReport) -> bool:
    """Every number of this report is an int (not a bool) of magnitude below 2**63: then no figure
    of its capture is absurd (model.unknown_if_absurd would change nothing), and import may make it
    by capture_from_report. False sends the kill the general way (its numbers walked)."""
    nums = list(_report_ints(rep))
    for c in (rep.memory, rep.memsw, rep.swap, rep.kmem):
        if c is not None:
            nums.extend(_counter_ints(c))
    if rep.killed is not None:
        nums.extend(_killed_ints(rep.killed))
    if rep.summary is not None:
        nums.extend(_summary_ints(rep.summary))
    nums.extend(rep.memory_stat.values())
    nums.extend(rep.mem_info.values())
    for row in rep.tasks:
        nums.append(row.pid)
        nums.extend(row.values.values())
    if not set(map(type, nums)) <= _INT_OR_NONE:
        return False
    nums = list(filter(None, nums))  # (ints and None: without the Nones, and the zeros, which are in bounds)
    return not nums or (-_BOUND < min(nums) and max(nums) < _BOUND)


def _host_note(lh: LoggedHost, h: Host, rep: OomReport) -> str:
    known = []
    if lh.kernel_release:
        known.append(f"kernel {lh.kernel_release} (the report's CPU line)")
    if lh.arch:
        known.append(f"architecture {lh.arch} ({lh.arch_from})")
    if lh.hardware:
        known.append(f"hardware {lh.hardware!r}")
    if lh.page_size:
        known.append(f"page size {lh.page_size // 1024} KiB ({lh.page_size_from})")
    if h.swap_total_bytes is not None:
        known.append("host swap (the report's Total swap / Free swap lines)")
    if h.mem_total_bytes is not None:
        known.append("host RAM (the report's pages RAM line)")
    unknown = [name for name, v in (("kernel release", lh.kernel_release), ("architecture", lh.arch),
                                    ("host swap", h.swap_total_bytes), ("host RAM", h.mem_total_bytes)) if v is None]
    unknown += ["transparent huge page mode", "vm.overcommit_memory", "vm.oom_dump_tasks", "vm.panic_on_oom"]
    text = ("Host facts read from the log: " + "; ".join(known) + ". " if known else "The log states no host facts. ")
    text += "Not in the log, so unknown: " + ", ".join(unknown) + "."
    if lh.page_size is None and (rep.tasks or rep.mem_info):
        text += (f" The log does not tell the page size: page counts (tasks table, Mem-Info) were converted assuming "
                 f"{ASSUMED_PAGE // 1024} KiB pages" + (f" on {lh.arch}" if lh.arch else "") + ", which may be wrong "
                 "(arm64 and ppc64 kernels also use 16 or 64 KiB).")
    return text


def _local_time(cap: Capture, wall: float, pid: int) -> None:
    """A kill dated by a local time the log printed without its zone (syslog, dmesg -T): the
    capture keeps that time as printed, without an offset and at the log's precision (kill_wall
    with ``kill_wall_zone`` "unknown"), not as UTC (issue 26: shown as +00:00 with .000 ms)."""
    t = dt.datetime.fromtimestamp(wall, dt.timezone.utc).replace(tzinfo=None)
    cap.times.kill_wall = t.isoformat(timespec="auto")
    cap.times.kill_wall_zone = "unknown"
    cap.kill_id = t.strftime("%Y%m%dT%H%M%S") + (f".{t.microsecond // 1000:03d}" if t.microsecond else "") + f"-pid{pid}"
    cap.notes.append("The log prints local time without its zone: the kill's time is shown as the log printed it, in the "
                     "zone of the machine that wrote the log, which the log does not say (not UTC).")


def _capture(rep: OomReport, walls, boot_wall: Optional[float], host: Optional[Host],
             names: Optional[NodeNames] = None, elsewhere: Optional[Tuple[float, str]] = None) -> Imported:
    usec = rep.killed_usec or 0
    line = walls.get(usec)
    wall, hostname = (line.wall, line.host) if line is not None else (None, None)
    clocked = line is None or line.clocked
    dated = wall is not None or boot_wall is not None
    if wall is None and boot_wall is not None:
        wall = boot_wall + usec / 1e6
    offset = int((wall or 0) * 1e9) - usec * 1000
    version = _version_of(rep)
    logged = rep
    member = rep.group_head is not None and not rep.started
    fast = FAST and host is None and not member and bounded(rep)
    h = dataclasses.replace(host) if host is not None else Host()
    facts = rep.group_head if member else rep  # a member: its group's report
    if member and rep.memory is None and not rep.memory_stat:
        # A member of a memory.oom.group kill is charged to the group's cgroup, whose memory the
        # first victim's report printed just before (under oom_lock): that is its cgroup's state too.
        h_rep = rep.group_head
        rep = dataclasses.replace(rep, memory=h_rep.memory, memsw=h_rep.memsw, swap=h_rep.swap, kmem=h_rep.kmem,
                                  stats_cgroup=h_rep.stats_cgroup, memory_stat=dict(h_rep.memory_stat))
    lh = logged_host(facts)
    if host is None:  # a log's host: only what the log says (never this machine's defaults)
        h.kernel_release = lh.kernel_release or ""
        if "total_swap_kb" in facts.mem_info:
            h.swap_total_bytes = facts.mem_info["total_swap_kb"] * 1024
            h.swap_free_bytes = facts.mem_info["free_swap_kb"] * 1024 if "free_swap_kb" in facts.mem_info else None
        h.page_size_bytes = lh.page_size or ASSUMED_PAGE  # for the conversion only: reset below when assumed
        if "ram_pages" in facts.mem_info and lh.page_size:
            h.mem_total_bytes = facts.mem_info["ram_pages"] * lh.page_size
    if hostname and not h.hostname:
        h.hostname = hostname
    h.cgroup_version = h.cgroup_version or version
    now = dt.datetime.now(dt.timezone.utc)
    recording = Recording(cgroup_version=version, host=h, clock_offset_ns=offset, report_source=Source.KERNEL_LOG)
    cap = capture_from_report(rep.killed.pid, rep, recording, now) if fast else assemble(rep.killed.pid, None, rep, recording, now_wall=now)
    cap.workload = workload_of(cap.cgroup.task_memcg or cap.cgroup.oom_memcg, names)
    cap.notes = [n for n in cap.notes if "log for this kill was not seen" not in n]
    # record's words for what it could not see on a live host say nothing true of a log
    live = ("The victim's cgroup is unknown: no kernel report", "as /proc showed them after the kill")
    if any(n.startswith(live[0]) or live[1] in n for n in cap.notes):
        cap.notes = [n for n in cap.notes if not (n.startswith(live[0]) or live[1] in n)]
        if cap.cgroup.task_memcg is None:
            cap.notes.append("The victim's own cgroup is not in the log.")
        if not rep.tasks:
            cap.notes.append("The kernel's tasks table for this kill is not in the log: the other processes of the cgroup are unknown.")
    if rep.killed_from_summary:  # record's words are for a Killed line the oom_reaper's line stood in for
        said = ("The 'Killed process' line of this kill is not in the log: its one-line summary (oom-kill:) names the "
                "victim; the victim's memory at the kill is " + ("in its row of the tasks table." if rep.tasks else "unknown."))
        cap.notes = [said if n.startswith("The 'Killed process' line of this kill was not seen") else n for n in cap.notes]
    cap.notes.insert(0, NOTE)
    if fast:  # cap.host is h, this kill's own
        cap.host.page_size_bytes = lh.page_size
        cap.notes.insert(1, _host_note(lh, cap.host, facts))
    elif host is None:
        cap.host = dataclasses.replace(cap.host, page_size_bytes=lh.page_size)
        cap.notes.insert(1, _host_note(lh, cap.host, facts))
    if not dated:
        cap.times.kill_wall = None
        if clocked:
            cap.kill_id = f"boot+{usec / 1e6:.6f}s-pid{rep.killed.pid}"
            cap.notes.append(f"The log has no dates: the kill was {usec / 1e6:.3f} s after its host booted.")
        else:  # neither a date nor the kernel's clock (dmesg -t, a console): when is not in the log
            cap.kill_id = f"undated-line{rep.last_seq}-pid{rep.killed.pid}"
            cap.times.kill_monotonic_ns = cap.times.kernel_report_usec = None  # the reader's order-keeping clock
            if line is None or not line.yearless:  # a date without its year is said below
                cap.notes.append("The log has neither dates nor the kernel's clock: when this kill happened is not in it.")
        if line is not None and line.yearless:
            cap.notes.append(f"The log dates this kill {terminal_safe(line.yearless)!r} without a year, and nothing else in it "
                             "gives the year: the kill is left undated (it is not dated with this year).")
    else:
        if line is not None and line.local and line.wall is not None:
            _local_time(cap, line.wall, rep.killed.pid)
        if line is not None and line.year_from == "mtime":
            cap.notes.append("The log's dates have no year, and no line of it has one: the year is inferred from the log file's "
                             "modification time (the latest year that does not put the kill after it); a copy made over a year "
                             "later would be dated a year late.")
        elif line is not None and line.year_from == "log":
            cap.notes.append("The log's dates have no year: it is taken from the line before them that has one (the log is in time order).")
        elif line is not None and line.year_from == "elsewhere" and elsewhere is not None:
            cap.notes.append(f"The log's kernel lines have no year: it is taken from a date with its year in another line of the log "
                             f"({terminal_safe(elsewhere[1])}), the year that puts the kill nearest to it.")
    if not rep.has_header and rep.group_head is None and not rep.has_body:
        cap.notes.append("Only the 'Killed process' line of this kill is in the log: the kernel rate-limited its report "
                         "(or the log lost it), so the cgroup and its memory are unknown.")
    return Imported(cap, logged)
