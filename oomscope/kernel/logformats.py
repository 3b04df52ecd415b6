"""Kernel logs in the shapes people keep them, turned into kernel log records.

Each line is recognised on its own, so files that mix shapes (a syslog file with a pasted dmesg)
still work, and lines from other programs are skipped:

- /dev/kmsg records:       ``6,1234,567890,-;text`` (``cat /dev/kmsg``; continuation lines ignored)
- dmesg:                   ``[  567.890123] text``
- dmesg -T:                ``[Tue Nov 25 10:00:00 2026] text``
- syslog, journalctl -k:   ``Nov 25 10:00:00 host kernel: [  567.890123] text`` (the bracketed
                            time is there when the kernel's printk time was on and rsyslog kept it)
- RFC 3339 syslog/journal: ``2026-11-25T10:00:00.123456+00:00 host kernel: text``
- journalctl -o json:      one JSON object per line (``MESSAGE``, ``__REALTIME_TIMESTAMP``,
                            ``_SOURCE_MONOTONIC_TIMESTAMP``, ``_HOSTNAME``, ``_TRANSPORT``)
- a container that relays the kernel log (a ``dmesg -w`` sidecar, a node agent): any shape above
  inside ``docker logs -t`` / ``kubectl logs --timestamps`` (``2026-11-25T10:00:00.123456789Z
  [  567.890123] text``), a CRI log file (``... stdout F [  567.890123] text``) or docker's
  json-file (``{"log": "[  567.890123] text\n", "stream": "stdout", "time": ...}``); without
  ``-t`` the lines are the relayed ones as they are. The relay's own time is when it printed the
  line, at or after the kernel logged it (``dmesg`` prints the whole ring buffer when it starts),
  so it dates nothing: only the relayed line's own date or printk time counts.

A record keeps the printk time when the line has it (``usec``), else a made-up increasing one
(``clocked`` False); ``wall`` is the line's date when it has one. Shapes without a year (classic
syslog, ``journalctl``'s short format, in any locale) take the year given by the caller; else, a
log being in time order, the first year that does not put the date before the last date seen with
its year (a journal's ``-- Logs begin at Tue 2019-06-25 ...`` line, an RFC 3339 or ``dmesg -T``
line, or a date dated so before it: Dec 31 then Jan 1 turns the year); else the latest year that
does not put it after ``not_after`` (the log file's modification time: no line was written later);
else the line is left undated (``yearless`` keeps the date as printed). ``year_from`` says which.
Before the file's modification time, a date with its year anywhere in the log is used
(``dated_by``, found by ``full_date``: another program's RFC 3339 stamp, as a node agent's
``Timestamp:2025-06-24 18:49:43`` beside an AKS node's kernel lines): the year that puts the
yearless date nearest to it (``year_from`` "elsewhere"; issue 26: an AKS log said 2025, its page
2026, the year of the file's copy).

Classic syslog, ``journalctl``'s short format and ``dmesg -T`` print the local time of the
machine that wrote them, without its zone (RFC 3339 without an offset too): ``local`` says so,
and ``wall`` is then that clock reading taken as if it were UTC, to keep order and spans, not an
instant; the capture says the zone is unknown (importer/kills.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from .kmsg import KmsgRecord, _unescape

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_RE_KMSG = re.compile(r"^(?P<prio>\d+),(?P<seq>\d+),(?P<usec>\d+),[^;]*;(?P<text>.*)$")
_RE_DMESG = re.compile(r"^\[\s*(?P<sec>\d+)\.(?P<frac>\d+)\] ?(?P<text>.*)$")
_RE_DMESG_T = re.compile(r"^\[(?:[A-Z][a-z]{2} )?(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d) (?P<year>\d{4})\] ?(?P<text>.*)$")
_RE_SYSLOG = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)(?:\.\d+)? (?P<host>\S+) kernel: ?(?P<text>.*)$")
_RE_ZONE = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$")
_RE_ISO = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) (?P<host>\S+) kernel: ?(?P<text>.*)$")
# dmesg -T and syslog dates in any locale (strftime's %a %b %e): "[金 11月 27 20:31:35 2026]",
# "[Fr Nov 27 ...]", "11月 27 20:31:35 host kernel: ...", "avril 16 21:08:50 host kernel: ..."
_RE_DMESG_T_ANY = re.compile(r"^\[(?P<date>[^\]\d]{0,24}\S{1,12} +\S{1,12}) (?P<time>\d\d:\d\d:\d\d) (?P<year>\d{4})\] ?(?P<text>.*)$")
_RE_SYSLOG_ANY = re.compile(r"^(?P<date>\S{1,12} +\S{1,12}) (?P<time>\d\d:\d\d:\d\d)(?:\.\d+)? (?P<host>\S+) kernel: ?(?P<text>.*)$")
# a dated line of another program (syslog, RFC 3339): not kernel text, never a bare record
_RE_OTHER_PROGRAM = re.compile(r"^(?:\S{1,12} +\S{1,12} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)\S* \S+ \S+?(?:\[\d+\])?: ")
#: month names as dates print them in the locales people paste from (lower case, no dot)
_LOCALE_MONTHS = {}
for _i, _names in enumerate((
        "jan january janv janvier januar jänner ene enero gen gennaio янв января январь sty",
        "feb february fév févr février februar febrero febbraio fev фев февраля февраль lut",
        "mar march mars märz mär mrz marzo março мар марта март",
        "apr april avr avril abr abril aprile апр апреля апрель kwi",
        "may mai mayo mag maggio maio мая май",
        "jun june juin juni junio giu giugno июн июня июнь cze",
        "jul july juil juillet juli julio lug luglio июл июля июль lip",
        "aug august août ago agosto авг августа август sie",
        "sep sept september septembre septiembre set settembre setembro сен сентября сентябрь wrz",
        "oct october octobre okt oktober octubre ott ottobre out outubro окт октября октябрь paź",
        "nov november novembre noviembre novembro ноя ноября ноябрь lis",
        "dec december déc décembre dez dezember dic diciembre dicembre dezembro дек декабря декабрь gru"), 1):
    for _n in _names.split():
        _LOCALE_MONTHS[_n] = _i
_RE_CJK_MONTH = re.compile(r"^(\d{1,2})(?:月|월)$")
_RE_DICT = re.compile(r"^ [A-Z_]+=")
_RE_CALLER = re.compile(r"^\[\s*[TC]\d+\] ?")
_RE_PRINTK_TIME = re.compile(r"^\[\s*(?P<sec>\d+)\.(?P<frac>\d+)\] ?(?P<text>.*)$")
# docker logs -t, kubectl logs --timestamps (RFC 3339 with nanoseconds), a CRI log file's
# "<time> stdout F " (F a full line, P part of one): the relayed line follows
_RE_RELAY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d) (?:(?:stdout|stderr) [FP] )?")


#: a NamedTuple made without its __new__'s Python call (the hot path of read_log_lines)
_new = tuple.__new__
#: a dmesg line whose record the general branch of read_log_lines reads the same way: ASCII
#: digits, one dot, no space after them ("] " within 24 characters, the dot within 14: checked after)
_RE_FAST_DMESG = re.compile(r"\[ *([0-9]+)\.([0-9]+)\] ?(.*)", re.S)


#: a report region whose every line is dmesg's as the kernel prints it, "[%5lu.%06lu] text"
#: (kernel/printk/printk.c, print_time): read at once by plain_dmesg instead of line by line
_RE_PLAIN_DMESG = re.compile(r"^\[( {4}[0-9]| {3}[0-9]{2}| {2}[0-9]{3}| [0-9]{4}|[0-9]{5,11})\.([0-9]{6})\] ?([^\n]*)$", re.M)
#: a caller id after the time (CONFIG_PRINTK_CALLER), which read_log_lines takes off: such a region is read line by line
_RE_CALLER_AFTER_TIME = re.compile(r"\] ?\[\s*[TC]\d+\]")


def plain_dmesg(text: str) -> "Optional[List[Tuple[str, str, str]]]":
    """(seconds, microseconds, text) of every line of ``text`` (a report region, kernel/logscan.py)
    when each is dmesg's line as the kernel prints it: the records read_log_lines gives for them
    (numbered and clocked the same way, by the caller); None when any line is of another shape,
    empty, continued (a region after it begins with an indented line: the caller looks), or has
    a caller id, a carriage return or a time read_log_lines would read otherwise. The work is a
    few regexes over the text and one list, not a generator step per line (issue 29)."""
    if "\r" in text or "\n\n" in text or text[:1] != "[":
        return None
    recs = _RE_PLAIN_DMESG.findall(text)
    n = text.count("\n") + (0 if text.endswith("\n") else 1)
    if len(recs) != n or _RE_CALLER_AFTER_TIME.search(text):
        return None
    return recs


class DmesgRecords:
    """A plain dmesg region's records (plain_dmesg's lines, numbered on from ``seq``), each made
    when asked: OomReportParser.feed_block reads their texts and three records of a report, so a
    region read whole makes no record per line (issue 29, eighth pass). A record's printk time is
    read_log_lines' int(sec) * 10**6 + int(usec): plain_dmesg's microseconds are always six ASCII
    digits, so it is the int of the two strings together (int() reads past the seconds' padding)."""

    __slots__ = ("lines", "seq", "texts")

    def __init__(self, lines: List[Tuple[str, str, str]], seq: int):
        self.lines = lines
        self.seq = seq  # the record count before the first line
        self.texts = [t for _, _, t in lines]

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> KmsgRecord:
        if i < 0:
            i += len(self.lines)
        if i < 0:
            raise IndexError(i)
        sec, frac, text = self.lines[i]
        return _new(KmsgRecord, (6, 0, self.seq + i + 1, int(sec + frac), text))

    def __iter__(self) -> Iterator[KmsgRecord]:
        seq = self.seq
        for sec, frac, text in self.lines:
            seq += 1
            yield _new(KmsgRecord, (6, 0, seq, int(sec + frac), text))


def plain_top_usec(lines: List[Tuple[str, str, str]]) -> int:
    """The latest printk time of plain_dmesg's lines, as their records have it (DmesgRecords)."""
    return max([int(sec + frac) for sec, frac, _ in lines])


class LogLine(NamedTuple):
    record: KmsgRecord
    wall: Optional[float] = None  # seconds since the epoch, UTC, when the line carries a date
    host: Optional[str] = None
    shape: str = ""
    clocked: bool = True  # the printk time is the line's own (else made up, to keep the order)
    year_from: str = ""  # for a date printed without a year: "given", "log", "elsewhere", "mtime" (see the module)
    yearless: str = ""  # a date printed without a year that could not be given one, as printed
    local: bool = False  # the date is a local time printed without its zone (see the module)


#: a dmesg line read_log_lines skims (see its ``skim``): not given
_SKIPPED = _new(LogLine, (_new(KmsgRecord, (6, 0, 0, 0, "")), None, None, "dmesg", True, "", "", False))


#: "-- Logs begin at Tue 2019-06-25 10:00:00 CST, end at ... --" (journalctl before 250), "-- Journal
#: begins at ..." (250+): systemd prints these dates the same in every locale
_RE_JOURNAL_HEADER = re.compile(r"^-- (?:Logs begin|Journal begins) at \S+ (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)")


#: a date with its year as other programs print it (RFC 3339 and its space-separated form);
#: searched from its first dash, which keeps the regex engine's literal search (a leading digit
#: class made it ~100x slower: 2.9 s against 0.03 s for 64 MiB here); the year is checked after
_RE_FULL_DATE = re.compile(rb"-(0[1-9]|1[0-2])-([0-3][0-9])[T ]([0-2][0-9]):([0-5][0-9]):([0-5][0-9])")
#: what full_date looks at: a date near the log's start or end is as good as any for a year
FULL_DATE_WINDOW = 64 << 20


def full_date(buf) -> Optional[Tuple[float, str]]:
    """The first date with its year in ``buf`` (bytes or a mapping) within the first and last
    ``FULL_DATE_WINDOW`` bytes, as (seconds, taken as UTC, the zone not being needed for a year;
    the date as printed), or None."""
    n = len(buf)
    for lo, hi in ((0, min(n, FULL_DATE_WINDOW)), (max(min(n, FULL_DATE_WINDOW), n - FULL_DATE_WINDOW), n)):
        pos = lo
        while pos < hi:
            m = _RE_FULL_DATE.search(buf, pos, hi)
            if m is None:
                break
            pos = m.end()
            s = m.start()
            year = bytes(buf[max(0, s - 4):s])
            before = bytes(buf[max(0, s - 5):max(0, s - 4)])
            if len(year) == 4 and year.isdigit() and year[:2] in (b"19", b"20") and not before.isdigit():
                wall = _try_utc(int(year), *(int(g) for g in m.groups()))
                if wall is not None:
                    return wall, (year + bytes(buf[s:m.end()])).decode("ascii")
    return None


class _Years:
    """The year of a date printed without one (see the module's docstring)."""

    def __init__(self, year: Optional[int], not_after: Optional[float],
                 dated_by: Optional[Callable[[], Optional[Tuple[float, str]]]] = None):
        self.fixed = year
        self.not_after = not_after
        self.hint: Optional[float] = None  # the date of the last line that had a year
        self._dated_by = dated_by
        self.elsewhere: Optional[Tuple[float, str]] = None  # a date with its year elsewhere in the log

    def _elsewhere(self) -> Optional[Tuple[float, str]]:
        if self._dated_by is not None:  # looked for once, when a yearless date first needs it
            try:
                self.elsewhere = self._dated_by()
            except (OSError, ValueError):
                self.elsewhere = None
            self._dated_by = None
        return self.elsewhere

    def wall(self, month: int, day: int, time_: str) -> "Tuple[Optional[float], str]":
        try:
            h, mi, sec = (int(x) for x in time_.split(":"))
            if self.fixed:
                return _wall_ok(_utc(self.fixed, month, day, h, mi, sec)), "given"
            if self.hint is not None:  # a log is in time order: the first year not before the last date seen
                y = dt.datetime.fromtimestamp(self.hint, dt.timezone.utc).year
                for c in (y, y + 1):  # a day's slack: time zones
                    w = _try_utc(c, month, day, h, mi, sec)
                    if w is not None and w >= self.hint - 86400:
                        self.hint = max(self.hint, w)  # Dec 31 then Jan 1: the year turns
                        return _wall_ok(w), "log"
                return None, ""
            other = self._elsewhere()
            if other is not None:  # the year that puts the date nearest to one with its year
                y = dt.datetime.fromtimestamp(other[0], dt.timezone.utc).year
                near = [(abs(w - other[0]), w) for w in (_try_utc(c, month, day, h, mi, sec) for c in (y - 1, y, y + 1)) if w is not None]
                if near:
                    return _wall_ok(min(near)[1]), "elsewhere"
            if self.not_after is not None:
                y = dt.datetime.fromtimestamp(self.not_after, dt.timezone.utc).year
                for c in (y, y - 1):  # a day's slack: the file's time zone is not known
                    w = _try_utc(c, month, day, h, mi, sec)
                    if w is not None and w <= self.not_after + 86400:
                        return _wall_ok(w), "mtime"
        except (ValueError, OverflowError):
            pass
        return None, ""


def _utc(year: int, month: int, day: int, h: int, mi: int, sec: int) -> float:
    return dt.datetime(year, month, day, h, mi, sec, tzinfo=dt.timezone.utc).timestamp()


def _try_utc(year: int, month: int, day: int, h: int, mi: int, sec: int) -> Optional[float]:
    try:
        return _utc(year, month, day, h, mi, sec)
    except (ValueError, OverflowError):  # 29 February of another year
        return None


#: printk's clock is a u64 of nanoseconds (about 585 years): more digits of seconds than this is not
#: a kernel's time, and such a line is given a made-up one (as lines without a time are)
_MAX_SEC_DIGITS = 11
#: the dates a calendar (datetime) holds: 1970 to the end of 9999
_MAX_WALL = 253402300799.0
#: a kernel record is at most 1 KiB of text (PRINTKRB_RECORD_MAX), 8 KiB escaped: continuation
#: lines beyond this are not joined
_MAX_RECORD = 64 << 10


def _usec(sec: str, frac: str) -> Optional[int]:
    if len(sec.lstrip("0")) > _MAX_SEC_DIGITS:
        return None
    return int(sec) * 1_000_000 + int((frac + "000000")[:6])


def _wall_ok(wall: Optional[float]) -> Optional[float]:
    return wall if wall is not None and 0 <= wall <= _MAX_WALL else None


def _classic_wall(mon: str, day: str, time_: str, year: int) -> Optional[float]:
    try:
        h, m, s = (int(x) for x in time_.split(":"))
        return _wall_ok(dt.datetime(year, _MONTHS[mon], int(day), h, m, s, tzinfo=dt.timezone.utc).timestamp())
    except (KeyError, ValueError, OverflowError):
        return None


def _month_day(date: str) -> Optional[Tuple[int, int]]:
    """(month, day) of a date whose month and day are in any order and locale ("金 11月 27",
    "Fr Nov 27", "27 nov", "avril 16"; a weekday may come first); None when not sure."""
    month = day = None
    for tok in date.split():
        t = tok.lower().rstrip(".,")
        m = _RE_CJK_MONTH.match(t)
        if m:
            month = int(m.group(1))
        elif t.isdigit() and len(t) <= 2:
            if day is not None:
                return None
            day = int(t)
        elif t in _LOCALE_MONTHS and month is None:
            month = _LOCALE_MONTHS[t]
    if month is None or day is None:
        return None
    return month, day


def _locale_wall(date: str, time_: str, year: int) -> Optional[float]:
    """A date in any locale with its year (dmesg -T); None when it cannot be read for sure."""
    md = _month_day(date)
    if md is None:
        return None
    try:
        h, mi, sec = (int(x) for x in time_.split(":"))
        return _wall_ok(_utc(year, md[0], md[1], h, mi, sec))
    except (ValueError, OverflowError):
        return None


def _bare(line: str) -> Optional[str]:
    """A line with no date or time at all (``dmesg -t``, a console capture, a ticket): kernel text
    as it is, unless it is a dated line of another program."""
    if _RE_OTHER_PROGRAM.match(line):
        return None
    return line[len("kernel: "):] if line.startswith("kernel: ") else line


def _iso_wall(ts: str) -> Optional[float]:
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return _wall_ok(t.timestamp())
    except (ValueError, OverflowError):
        return None


def _journal_message(obj: dict) -> Optional[str]:
    msg = obj.get("MESSAGE")
    if isinstance(msg, list):  # journald gives non-UTF-8 messages as a list of byte values
        try:
            msg = bytes(int(b) & 0xFF for b in msg).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    return msg if isinstance(msg, str) else None


def _relayed(line: str) -> str:
    """The kernel log line a container relayed (see the module), or ``line`` as it is."""
    if line[0] == "{":
        if '"log"' in line and '"stream"' in line:  # docker's json-file
            try:
                obj = json.loads(line)
            except ValueError:
                return line
            if isinstance(obj, dict) and isinstance(obj.get("log"), str) and "MESSAGE" not in obj:
                return obj["log"].rstrip("\r\n")
        return line
    if line[10:11] == "T" and line[4:5] == "-":
        m = _RE_RELAY.match(line)
        # "<RFC 3339> host kernel: text" (a syslog) and another program's dated line stay as they
        # are; a relayed dmesg line ("<time> [  567.8] CPU: 1 ...") looks like the latter's "host prog: "
        if m and not _RE_ISO.match(line) and (line[m.end():m.end() + 1] == "[" or not _RE_OTHER_PROGRAM.match(line)):
            return line[m.end():]
    return line


class ReaderState:
    """What read_log_lines carries from one line to the next: the year of yearless dates, the
    made-up clock, the record count. Passed to two calls, the second reads on where the first
    stopped (importer/split.py: a log read in two parts, the second by another process)."""

    def __init__(self, year: Optional[int] = None, not_after: Optional[float] = None,
                 dated_by: Optional[Callable[[], Optional[Tuple[float, str]]]] = None):
        self.years = _Years(year, not_after, dated_by)
        self.synthetic = 0
        self.seq = 0


def read_log_lines(lines: Iterable[str], year: Optional[int] = None, not_after: Optional[float] = None,
                   dated_by: Optional[Callable[[], Optional[Tuple[float, str]]]] = None,
                   state: Optional[ReaderState] = None, skim: bool = False) -> Iterator[LogLine]:
    """Kernel log records of any supported shape; other lines are skipped. A record keeps its own
    newlines: dmesg's indented continuation lines are joined back to the record they continue, and
    a journal or /dev/kmsg message with newlines stays one record (kernel/oom_report.py decides
    which records are blocks of data lines). ``state``: carried from a call on the lines before
    (then ``year``, ``not_after`` and ``dated_by`` are its own); the last record of ``lines`` is
    given at their end (the next part must not begin with a continuation line). ``skim``: for the
    state alone (importer/split.py): a dmesg line with the printk time only and no "or sacrifice
    child" is not given (nothing in it is kept: kills.KillReader.skim)."""
    st = state if state is not None else ReaderState(year, not_after, dated_by)
    years = st.years
    synthetic = st.synthetic  # a made-up printk clock for shapes without one: keeps order, 1 ms apart
    seq = st.seq
    prev: Optional[LogLine] = None
    fast = _RE_FAST_DMESG.match
    for raw in lines:
        line = raw.rstrip("\r\n")
        m = fast(line)
        if m is not None:
            # dmesg's "[  567.890123] text", the most of a large log: the same record as the
            # general branch below gives, at half its time (measured for issue 29: 2 µs a line)
            sec, frac, fast_text = m.groups()
            if m.end(2) < 24 and m.start(2) <= 14 and len(sec.lstrip("0")) <= _MAX_SEC_DIGITS and fast_text[:1] != "[":
                seq += 1
                fast_usec = int(sec) * 1_000_000 + int((frac + "000000")[:6])
                if fast_usec > synthetic:
                    synthetic = fast_usec
                if prev is not None and prev is not _SKIPPED:
                    yield prev
                if skim and "or sacrifice child" not in fast_text:
                    prev = _SKIPPED  # (a line indented under it is still given, joined to nothing)
                    continue
                prev = _new(LogLine, (_new(KmsgRecord, (6, 0, seq, fast_usec, fast_text)), None, None, "dmesg", True, "", "",
                                      False))
                continue
        if not line:
            continue
        if line[0] == "{" or line[10:11] == "T":
            line = _relayed(line)
            if not line:
                continue
        if line[0] == " ":
            # dmesg prints the further lines of a multi-line record indented under the first
            # (util-linux dmesg.c; 6.1's cgroup v2 memory.stat is one such record); a /dev/kmsg
            # dump's " KEY=value" dictionary lines are skipped
            if prev is not None and prev.shape in ("dmesg", "dmesg-T") and not _RE_DICT.match(line) \
                    and len(prev.record.text) < _MAX_RECORD:
                prev = prev._replace(record=prev.record._replace(text=prev.record.text + "\n" + line.strip()))
            continue
        if line.startswith("-- "):
            h = _RE_JOURNAL_HEADER.match(line)
            if h:  # journalctl's first line: the year of the short format's dates
                years.hint = _try_utc(*(int(x) for x in h.groups()))
            continue
        seq += 1
        usec: Optional[int] = None
        wall: Optional[float] = None
        host: Optional[str] = None
        level = 6
        text: Optional[str] = None
        shape = ""
        year_from = yearless = ""
        local = False
        if line[0] == "{":
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if obj.get("_TRANSPORT") not in (None, "kernel") and obj.get("SYSLOG_IDENTIFIER") != "kernel":
                continue
            text = _journal_message(obj)
            try:
                if "_SOURCE_MONOTONIC_TIMESTAMP" in obj:
                    usec = int(obj["_SOURCE_MONOTONIC_TIMESTAMP"])
                    usec = usec if 0 <= usec < 10 ** (_MAX_SEC_DIGITS + 6) else None
                if "__REALTIME_TIMESTAMP" in obj:
                    wall = _wall_ok(int(obj["__REALTIME_TIMESTAMP"]) / 1e6)
                level = int(obj.get("PRIORITY", 6)) & 7
            except (TypeError, ValueError, OverflowError):
                pass
            host = obj.get("_HOSTNAME") if isinstance(obj.get("_HOSTNAME"), str) else None
            shape = "journal-json"
        elif line[0] == "[" and "." in line[1:14]:
            close = line.find("]", 1, 24)
            try:
                if close < 0:
                    raise ValueError(line)
                sec, frac = line[1:close].strip().split(".")
                text = line[close + 2:] if line[close + 1:close + 2] == " " else line[close + 1:]
                usec, shape = _usec(sec, frac), "dmesg"
            except ValueError:
                m = _RE_DMESG.match(line)
                if not m:
                    continue
                usec, text, shape = _usec(m.group("sec"), m.group("frac")), m.group("text"), "dmesg"
        elif line[0] == "[":
            m = _RE_DMESG.match(line)
            if m:
                usec, text, shape = _usec(m.group("sec"), m.group("frac")), m.group("text"), "dmesg"
            else:
                m = _RE_DMESG_T.match(line)
                if m:
                    wall = _classic_wall(m.group("mon"), m.group("day"), m.group("time"), int(m.group("year")))
                    text, shape, local = m.group("text"), "dmesg-T", True
                else:
                    m = _RE_DMESG_T_ANY.match(line)
                    if m:  # dmesg -T in another locale: dated when the date reads for sure, else undated
                        wall = _locale_wall(m.group("date"), m.group("time"), int(m.group("year")))
                        text, shape, local = m.group("text"), "dmesg-T", True
                    else:
                        text, shape = _bare(line), "bare"  # "[  pid  ]" rows of an undated log
        elif line[0].isdigit():
            m = _RE_KMSG.match(line)
            if m:
                prio = int(m.group("prio"))
                level, usec, text, shape = prio & 7, int(m.group("usec")), _unescape(m.group("text")), "kmsg"
                usec = usec if usec < 10 ** (_MAX_SEC_DIGITS + 6) else None
                seq = int(m.group("seq"))
            else:
                m = _RE_ISO.match(line)
                if m:
                    wall, host, text, shape = _iso_wall(m.group("ts")), m.group("host"), m.group("text"), "syslog-iso"
                    local = not _RE_ZONE.search(m.group("ts"))
                else:
                    m = _RE_SYSLOG_ANY.match(line)
                    if m:  # "11月 27 20:31:35 host kernel: ..."
                        md = _month_day(m.group("date"))
                        wall, year_from = years.wall(md[0], md[1], m.group("time")) if md else (None, "")
                        yearless = "" if wall is not None or md is None else f"{m.group('date')} {m.group('time')}"
                        host, text, shape, local = m.group("host"), m.group("text"), "syslog", True
                    else:
                        text, shape = _bare(line), "bare"
        else:
            m = _RE_SYSLOG.match(line) or _RE_SYSLOG_ANY.match(line)
            if m:  # classic syslog / journalctl's short format, in any locale: no year
                md = _month_day(f"{m.group('mon')} {m.group('day')}" if "mon" in m.re.groupindex else m.group("date"))
                wall, year_from = years.wall(md[0], md[1], m.group("time")) if md else (None, "")
                if wall is None and md is not None:
                    yearless = line[:m.start("time")] + m.group("time")
                host, text, shape, local = m.group("host"), m.group("text"), "syslog", True
            else:
                text, shape = _bare(line), "bare"
        if text is None:
            continue
        if text[:1] == "[":
            c = _RE_CALLER.match(text)
            if c:  # CONFIG_PRINTK_CALLER: "[ T9185]" (a thread) or "[ C3]" (a CPU) before the text
                text = text[c.end():]
        if shape.startswith("syslog") or shape == "journal-json":
            p = _RE_PRINTK_TIME.match(text)
            if p:  # rsyslog kept the printk time inside the message
                usec = _usec(p.group("sec"), p.group("frac")) if usec is None else usec
                text = p.group("text")
        clocked = usec is not None
        if usec is None:
            synthetic += 1000
            usec = synthetic
        else:
            synthetic = max(synthetic, usec)
        if wall is not None and not year_from:
            years.hint = wall  # a date with its year: the year of the yearless dates near it
        if prev is not None and prev is not _SKIPPED:
            yield prev
        prev = LogLine(KmsgRecord(level, 0, seq, usec, text), wall, host, shape, clocked, year_from, yearless, local)
    st.synthetic, st.seq = synthetic, seq
    if prev is not None and prev is not _SKIPPED:
        yield prev
