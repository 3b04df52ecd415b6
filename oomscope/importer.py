"""``oomscope import``: post-mortems of kills from kernel logs, for kills from before record ran.

Logs in (files, .gz, stdin, the running host's /dev/kmsg or journal), the kernel's OOM reports
parsed from them (kernel/kmsg.py, kernel/logformats.py), a capture and post-mortem per kill, the
same as record writes. A log gives only what the kernel printed: every figure's source is
``kernel_log``, there is no timeline, and the processes are the report's tasks table.
"""

from __future__ import annotations

import dataclasses
import itertools
import datetime as dt
import zlib
import mmap
import re
import os
import stat
import subprocess
import sys
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from .containers import NodeNames, workload_of
from .errors import OomscopeError
from .kernel.kmsg import KmsgReader, KmsgRecord, kmsg_escape
from .kernel.oom_report import OomReport, OomReportParser
from .kernel.logformats import LogLine, read_log_lines
from .kernel.logscan import fast_report_regions, report_lines
from .model import SOURCE_KERNEL_LOG, Capture, Host
from .capture.assemble import assemble
from .capture.groups import killed_again, link
from .capture.inputs import Recording
from .terminal import terminal_safe

NOTE = ("Imported from a kernel log: every figure is what the kernel printed in its OOM report. A log has no "
        "timeline, no per-process data beyond the report's tasks table, and no reading of the cgroup before "
        "or after the kill.")


class ImportProblem(OomscopeError):
    exit_code = 2


@dataclasses.dataclass
class Imported:
    capture: Capture
    report: OomReport


def open_log(path: str) -> Iterator[str]:
    """The lines of a log file that can belong to OOM reports (kernel/logscan.py): a plain file is
    scanned through mmap, a gzip'd one (by its magic bytes, not its name) and stdin ("-") are
    decompressed or read in blocks and scanned the same way."""
    if path == "-":
        yield from _scan_stream(sys.stdin.buffer, "stdin")
        return
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ImportProblem(f"cannot read {path}: {exc.strerror}") from None
    with f:
        magic = f.read(2)
        f.seek(0)
        if magic == b"\x1f\x8b":
            yield from _scan_stream(_Gunzip(f), path)
            return
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # empty file, or not mappable (a pipe, /proc)
            yield from _scan_stream(f, path)
            return
        with buf:
            yield from report_lines(buf)


def _scan_stream(raw, name: str, block: int = 64 << 20) -> Iterator[str]:
    """Blocks of whole lines from a stream, scanned for reports. A report still open at the end
    of a block (its Killed line is in the next one) is carried over with the partial line."""
    carry = b""
    try:
        while True:
            data = raw.read(block)
            if not data:
                break
            buf = carry + data
            cut = buf.rfind(b"\n") + 1
            whole, carry = buf[:cut], buf[cut:]
            regions = list(fast_report_regions(whole))  # as a file's mmap: report_regions' one regex is 10x slower (2.2 s for a 417 MB journal export)
            if regions and regions[-1][1] == len(whole) and not _ends_a_kill(whole[regions[-1][0]:]):
                carry = whole[regions[-1][0]:] + carry
                regions.pop()
            for s, e in regions:
                yield from whole[s:e].decode("utf-8", "replace").split("\n")  # never splitlines(): U+2028 & co. are text
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or damaged .gz: keep what was read
        sys.stderr.write(f"oomscope: warning: {terminal_safe(f'{name}: {exc}')}; the rest of the file is skipped\n")
    if carry:
        yield from report_lines(carry)


class _Gunzip:
    """A .gz file's bytes, decompressed by zlib in large blocks, its members one after another.
    gzip.GzipFile took 2.4x zcat's time on a 1 GiB log, this about zcat's (issue 18). A file
    cut short raises EOFError at its end, damaged data zlib.error."""

    def __init__(self, f, raw_block: int = 16 << 20):
        self._f = f
        self._raw_block = raw_block
        self._d = zlib.decompressobj(wbits=31)  # a gzip header and trailer

    def read(self, n: int) -> bytes:
        """Up to n bytes; b"" only at the end of the file."""
        d = self._d
        while True:
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            elif d.eof:  # this member is over: another may follow (cat a.gz b.gz)
                data = d.unused_data or self._f.read(self._raw_block)
                if not data.strip(b"\0"):
                    return b""  # the end (tar and some writers pad with zeros)
                d = self._d = zlib.decompressobj(wbits=31)
            else:
                data = self._f.read(self._raw_block)
                if not data:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            out = d.decompress(data, n)
            if out:
                return out


def _ends_a_kill(region: bytes) -> bool:
    lines = region.rstrip(b"\n").split(b"\n")
    while len(lines) > 1 and lines[-1].startswith(b" "):  # a record's indented further lines
        lines.pop()
    return b"Killed process" in lines[-1] or b"oom_reaper: reaped process" in lines[-1]


def _mtime(path: str) -> Optional[float]:
    """A log file's modification time: no line of it was written later (the year of dates printed
    without one); None for stdin and what is not a regular file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime if path != "-" and stat.S_ISREG(st.st_mode) else None


def host_log() -> Tuple[Iterator[str], str]:
    """The running host's kernel log: /dev/kmsg from its start, else the journal."""
    try:
        reader = KmsgReader(from_end=False)
    except OSError:
        reader = None
    if reader is not None:
        records = []
        try:
            while True:
                batch = reader.read_available()
                if not batch:
                    break
                records.extend(batch)
        finally:
            reader.close()
        # the records' text is unescaped: escaped again, so that reading it as /dev/kmsg text does
        # not unescape a name's literal "\x0a" a second time
        return iter(f"{(r.facility << 3) | r.level},{r.seq},{r.usec},-;{kmsg_escape(r.text)}" for r in records), "/dev/kmsg"
    try:
        out = subprocess.run(["journalctl", "-k", "-o", "json", "--no-pager"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImportProblem(f"cannot read the kernel log: no /dev/kmsg and no journalctl ({exc})") from None
    return iter(out.stdout.split("\n")), "journalctl -k"


def _version_of(rep: OomReport) -> Optional[int]:
    if "anon" in rep.memory_stat or rep.swap is not None:
        return 2
    if "rss" in rep.memory_stat or "cache" in rep.memory_stat or rep.memsw is not None or rep.kmem is not None:
        return 1
    return None


def import_reports(lines: Iterable[str], since: Optional[float] = None, boot_wall: Optional[float] = None,
                   year: Optional[int] = None, host: Optional[Host] = None,
                   names: Optional[NodeNames] = None, problems: Optional[List[str]] = None,
                   not_after: Optional[float] = None) -> List[Imported]:
    """Captures of every kill in the log (not written). ``boot_wall``: the wall time of the
    printk clock's zero, when known (the running host), to date lines that carry no date.
    ``year`` / ``not_after`` (the log file's modification time): for dates printed without a year
    (kernel/logformats.py).

    Every kill is made on its own: one that fails is left out and described in one line in
    ``problems`` (when given), and the others go on."""
    return list(iter_imports(lines, since, boot_wall, year, host, names, problems, not_after))


def iter_imports(lines: Iterable[str], since: Optional[float] = None, boot_wall: Optional[float] = None,
                 year: Optional[int] = None, host: Optional[Host] = None,
                 names: Optional[NodeNames] = None, problems: Optional[List[str]] = None,
                 not_after: Optional[float] = None) -> Iterator[Imported]:
    """As import_reports, one capture at a time, so that a large log's captures are written as
    they come instead of all held at once. A kill is given out once the next report with a header
    begins (or the log ends): the Killed lines of a memory.oom.group kill that follow it may still
    add to it."""
    parser = OomReportParser(summaries_are_kills=True)
    walls: Dict[int, LogLine] = {}  # the lines that say more than their printk time, by it
    pending: List[Imported] = []
    heads: Dict[int, Imported] = {}  # the last report with a header (a group kill's chosen victim), by id

    def given(imps: List[Imported]) -> Iterator[Imported]:
        for i in imps:
            if since is None or _when(i) is None or _when(i) >= since:
                yield i

    for ll in itertools.chain(read_log_lines(lines, year=year, not_after=not_after), [None]):
        if ll is None:  # the end of the log: a summary whose Killed line never came
            ll = LogLine(KmsgRecord(6, 0, -1, 0, ""))
            reports = parser.finish()
        else:
            if ll.wall is not None or ll.host is not None or not ll.clocked or ll.yearless:
                walls[ll.record.usec] = ll
            reports = None
        try:
            reports = parser.feed(ll.record) if reports is None else reports
        except Exception as exc:  # noqa: BLE001 - a parser bug costs this log region, not the import
            _problem(problems, f"a report near log record {ll.record.seq} was not read ({type(exc).__name__}: {exc})")
            parser = OomReportParser(summaries_are_kills=True)
            continue
        for rep in reports:
            try:
                head = heads.get(id(rep.group_head)) if rep.group_head is not None else None
                if head is not None and rep.killed is not None and head.report.killed is not None \
                        and rep.killed.pid == head.report.killed.pid:
                    _killed_again(head, rep)  # the chosen victim, killed a second time as a member: one victim
                    continue
                imp = _capture(rep, walls, boot_wall, host, names)
                if rep.started:
                    yield from given(pending)
                    pending = []
                    heads = {id(rep): imp}
                elif head is not None:
                    _join_group(head, imp)
                pending.append(imp)
            except Exception as exc:  # noqa: BLE001 - one odd kill must not cost the others
                who = f"pid {rep.killed.pid}" if rep.killed is not None else "?"
                _problem(problems, f"the kill of {who} near log record {ll.record.seq} was skipped ({type(exc).__name__}: {exc})")
            if len(walls) > 100_000:
                walls.clear()
        if len(pending) > 1000 and not heads:
            yield from given(pending)
            pending = []
        elif len(pending) > 1000:  # a long run of rate-limited kills after a report: the group (if any) is long over
            yield from given(pending)
            pending, heads = [], {}
    yield from given(pending)

def _killed_again(head: Imported, rep: OomReport) -> None:
    killed_again(head.capture, rep.group_kill_cgroup or head.report.group_kill_cgroup, rep.lines[-1] if rep.lines else "")


def _join_group(head: Imported, imp: Imported) -> None:
    """A member of the head's group kill (capture/groups.py), said in the member's notes."""
    link(head.capture, imp.capture, head.report.group_kill_cgroup)
    imp.capture.notes.append(f"Killed as a member of the memory.oom.group kill of {imp.report.group_kill_cgroup}: the cgroup that "
                             f"hit its limit ({imp.capture.cgroup.oom_memcg or 'unknown'}) and its memory are those the report of the "
                             f"group's first victim, pid {head.capture.victim.pid}, printed just before.")


_RE_LONG_NUMBER = re.compile(r"\d{21,}")


def _problem(problems: Optional[List[str]], text: str) -> None:
    if problems is None:
        return
    text = _RE_LONG_NUMBER.sub(lambda m: f"<a number of {len(m.group())} digits>", text)
    problems.append(terminal_safe(text[:500]))


def _when(imp: Imported) -> Optional[float]:
    try:
        return dt.datetime.fromisoformat(imp.capture.times.kill_wall).timestamp() if imp.capture.times.kill_wall else None
    except (ValueError, OverflowError):
        return None


_RE_RELEASE = re.compile(r"^CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: .*? (?:Not tainted|Tainted: [A-Z \-]*?) +(?P<rel>\d+\.\d+\S*)")
_RE_NODE_ANON = re.compile(r"^Node \d+ active_anon:(\d+)kB inactive_anon:(\d+)kB")
#: what a call trace or register dump looks like on each architecture (arch/*/kernel/traps.c,
#: process.c: show_regs): the first that matches a report line names the logging machine's
_ARCH_SIGNS = (
    (re.compile(r"^(?:RIP: [0-9a-f]{4}:|RSP: [0-9a-f]{4}:|R1[0-5]: [0-9a-f]{16}| (?:entry_SYSCALL_64|asm_exc_page_fault|system_call_fastpath|page_fault)\b)"), "x86_64"),
    (re.compile(r"^(?:EIP: |EAX: [0-9a-f]{8} )"), "i386"),
    (re.compile(r"^(?:pc : |lr : | el0_(?:da|svc|sync)\b)"), "aarch64"),
    (re.compile(r"^(?:NIP: |NIP \[|LR \[)"), "ppc64"),
    (re.compile(r"^Krnl PSW "), "s390x"),
)
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
    its per-node lines (kB), else from the architecture when it has one page size."""
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
        if out.arch is None:
            for rx, arch in _ARCH_SIGNS:
                if rx.match(line):
                    out.arch, out.arch_from = arch, "the report's register dump / call trace"
                    break
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


def _capture(rep: OomReport, walls, boot_wall: Optional[float], host: Optional[Host],
             names: Optional[NodeNames] = None) -> Imported:
    usec = rep.killed_usec or 0
    line = walls.get(usec)
    wall, hostname = (line.wall, line.host) if line is not None else (None, None)
    clocked = line is None or line.clocked
    dated = wall is not None or boot_wall is not None
    if wall is None and boot_wall is not None:
        wall = boot_wall + usec / 1e6
    offset = int((wall or 0) * 1e9) - usec * 1000
    version = _version_of(rep)
    h = dataclasses.replace(host) if host is not None else Host()
    logged = rep
    member = rep.group_head is not None and not rep.started
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
    cap = assemble(rep.killed.pid, None, rep, Recording(cgroup_version=version, host=h, clock_offset_ns=offset,
                                                        report_source=SOURCE_KERNEL_LOG), now_wall=now)
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
    if host is None:
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
    elif line is not None and line.year_from == "mtime":
        cap.notes.append("The log's dates have no year: it is inferred from the log file's modification time (the latest "
                         "year that does not put the kill after it); a copy made over a year later would be dated a year late.")
    elif line is not None and line.year_from == "log":
        cap.notes.append("The log's dates have no year: it is taken from the line before them that has one (the log is in time order).")
    if not rep.has_header and rep.group_head is None and not rep.has_body:
        cap.notes.append("Only the 'Killed process' line of this kill is in the log: the kernel rate-limited its report "
                         "(or the log lost it), so the cgroup and its memory are unknown.")
    return Imported(cap, logged)


def run_import(paths: List[str], journal: bool, since: Optional[str], output: str,
               render_html: Callable[..., str], out, err, year: Optional[int] = None) -> List[str]:
    from .postmortem.index import OutputIndex  # noqa: WPS433
    from .safefs import Batch  # noqa: WPS433

    since_ts = parse_since(since) if since else None
    sources: List[Tuple[Iterator[str], str]] = []
    boot_wall = None
    if journal:
        try:
            res = subprocess.run(["journalctl", "-k", "-o", "json", "--no-pager"], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ImportProblem(f"cannot run journalctl: {exc}") from None
        sources.append((iter(res.stdout.split("\n")), "journalctl -k"))
    for p in paths:
        sources.append((open_log(p), p))
    not_after = {p: _mtime(p) for p in paths}
    if not sources:
        lines, name = host_log()
        sources.append((lines, name))
        boot_wall = time.time() - time.monotonic()  # printk's clock runs with CLOCK_MONOTONIC here
    written: List[str] = []
    index = OutputIndex(output)
    for folder, why in index.skipped:
        err.write(f"oomscope: warning: {terminal_safe(os.path.join(output, folder))}: left out of the index: {terminal_safe(why[:300])}\n")
    batch = Batch()
    try:
        for lines, name in sources:
            _import_source(lines, name, since_ts, boot_wall, output, index, batch, written, render_html, out, err,
                           not_after.get(name), year)
    finally:
        batch.close()
    if written:
        index.write()
    return written


#: kills written between two flushes (safefs.Batch): each flush waits for the disk once for all
#: of them; at most this long between two, so that what is printed keeps up with a slow log
_BATCH_KILLS = 256
_BATCH_SECONDS = 1.0


def _import_source(lines: Iterator[str], name: str, since_ts, boot_wall, output: str, index, batch, written: List[str],
                   render_html, out, err, not_after: Optional[float] = None, year: Optional[int] = None) -> None:
    this_host = name in ("/dev/kmsg", "journalctl -k")
    problems: List[str] = []  # kills not read or not written
    read_problems: List[str] = []
    shown = 0
    found = 0
    pending: List[Tuple[Imported, str, Optional[str], Optional[str], object]] = []
    last_flush = time.monotonic()

    def show_read_problems() -> None:
        nonlocal shown
        for p in read_problems[shown:]:
            err.write(f"oomscope: warning: {terminal_safe(name)}: {p}\n")
            problems.append(p)
        shown = len(read_problems)

    def flush() -> None:
        nonlocal pending, last_flush
        try:
            batch.flush()
        except OomscopeError:
            raise
        except OSError as exc:
            raise ImportProblem(f"cannot write to {output}: {exc.strerror or exc}") from None
        for done in pending:  # on disk now: said, and in the index
            written.append(_written(*done, index=index, out=out, err=err))
        pending, last_flush = [], time.monotonic()

    for imp in iter_imports(lines, since=since_ts, boot_wall=boot_wall if name == "/dev/kmsg" else None,
                            names=NodeNames() if this_host else None, problems=read_problems, not_after=not_after,
                            year=year):
        found += 1
        show_read_problems()  # as they come: the captures are written as they come too
        try:
            pending.append(_write_one(imp, output, render_html, batch))
        except OomscopeError:
            raise  # the output folder is refused: nothing more can be written
        except OSError as exc:
            raise ImportProblem(f"cannot write to {output}: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - one odd kill must not cost the others
            problems.append(f"kill {imp.capture.kill_id}: skipped ({type(exc).__name__}: {exc})")
            err.write(f"oomscope: warning: {terminal_safe(name)}: {terminal_safe(problems[-1][:500])}\n")
        if len(pending) >= _BATCH_KILLS or time.monotonic() - last_flush >= _BATCH_SECONDS:
            flush()
    flush()
    show_read_problems()
    err.write(f"oomscope: {terminal_safe(name)}: {found} kill(s)" + (f", {len(problems)} skipped" if problems else "") + "\n")


def _write_one(imp: Imported, output: str, render_html, batch) -> Tuple[Imported, str, Optional[str], Optional[str], object]:
    from .analysis.result import analyse_kill  # noqa: WPS433 - only when writing
    from .postmortem.stage import write_kill  # noqa: WPS433

    cap = imp.capture
    try:
        analysis = analyse_kill(cap)  # once: for the post-mortem and the index
    except Exception:  # noqa: BLE001 - the renderer reports it; the capture is written regardless
        analysis = None
    capture_path, html_path, render_error = write_kill(
        output, cap, lambda c: render_html(c, analysis) if analysis is not None else render_html(c), batch,
        indent=None)  # capture.json on one line: json's C encoder, a third of the indented time
    return imp, capture_path, html_path, render_error, analysis


def _written(imp: Imported, capture_path: str, html_path: Optional[str], render_error: Optional[str], analysis,
             index, out, err) -> str:
    cap = imp.capture
    if render_error:
        err.write(f"oomscope: error: post-mortem not rendered ({terminal_safe(render_error)}); the capture is at {terminal_safe(capture_path)}\n")
    index.add(capture_path, cap, analysis)
    state = ("full report" if imp.report.has_header else
             "report without its first lines" if imp.report.memory_stat or imp.report.memory else
             "summary line only" if imp.report.killed_from_summary else "Killed line only")
    label = cap.workload.label()
    out.write(f"{cap.times.kill_wall or cap.kill_id} kill pid={cap.victim.pid} comm={terminal_safe(cap.victim.comm)!r} "
              f"memcg={terminal_safe(cap.cgroup.oom_memcg or '?')}" + (f" workload={terminal_safe(label)!r}" if label else "")
              + f" ({state}) -> {terminal_safe(html_path or capture_path)}\n")
    return html_path or capture_path


def parse_since(text: str) -> float:
    """An ISO date or date-time (UTC unless it says), or a duration back from now: 2h, 30m, 7d."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return time.time() - int(text[:-1]) * units[text[-1]]
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ImportProblem(f"--since: not a date (2026-11-25, 2026-11-25T10:00) or a duration (2h, 7d): {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()
