"""Imported logs' times (issue 26, point 5): a local time printed without its zone (syslog,
dmesg -T) is kept as printed, said as local with its zone unknown, with no offset and no
milliseconds the log did not print; the year of a yearless date comes from the log first (a
date with its year in any line), and where it comes from the file's modification time the capture
says so. RHEL 7 (3.10): a kill whose report is only its Killed line (no message on it before
4.19) is not said to lack that line, and its "Kill process ... or sacrifice child" line says
whose limit it was. Fixtures: tests/fixtures/logs (their origins in tests/fixtures/README.md)."""

import datetime as dt
import io
import os
import shutil

from oomscope.importer import import_reports, open_log
from oomscope.importer.run import run_import
from oomscope.importer.sources import file_mtime, full_date_of
from oomscope.kernel.logformats import full_date
from oomscope.report.formats import render_markdown
from oomscope.report.render import render_html

from ..conftest import FIXTURES

LOGS = os.path.join(FIXTURES, "logs")
DEC_2026 = dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc).timestamp()


def _copy(tmp_path, name, mtime=DEC_2026):
    p = tmp_path / name
    shutil.copy(os.path.join(LOGS, name), p)
    os.utime(p, (mtime, mtime))
    return str(p)


def _imports(path):
    return import_reports(open_log(path), not_after=file_mtime(path), dated_by=lambda: full_date_of(path))


def test_aks_syslog_takes_its_year_from_its_own_lines_not_the_files_time(tmp_path):
    """The AKS node's syslog: kernel lines without a year, node-problem-detector's line after them
    with 'Timestamp:2025-06-24 18:49:43'; the copy's modification time is December 2026."""
    path = _copy(tmp_path, "syslog-aks-group-kill-npd.txt")
    (imp,) = _imports(path)
    cap = imp.capture
    assert cap.times.kill_wall == "2025-06-24T18:49:43" and cap.times.kill_wall_zone == "unknown"
    assert cap.kill_id == "20250624T184943-pid68061"
    assert any("another line of the log (2025-06-24 18:49:43)" in n for n in cap.notes)
    assert not any("modification time" in n for n in cap.notes)


def test_the_whole_command_writes_the_logs_year_and_local_time(tmp_path):
    path = _copy(tmp_path, "syslog-aks-group-kill-npd.txt")
    out = tmp_path / "out"
    run_import([path], False, None, str(out), render_html, io.StringIO(), io.StringIO())
    (folder,) = [d for d in os.listdir(out) if d.startswith("2025")]
    page = (out / folder / "postmortem.html").read_text()
    assert "2025-06-24 18:49:43 (local time, zone unknown)" in page
    assert "2026-06-24" not in page and "18:49:43.000" not in page and "18:49:43+00:00" not in page


def test_dmesg_T_is_local_time_without_invented_zone_or_milliseconds(tmp_path):
    (imp,) = _imports(_copy(tmp_path, "dmesg-T-v1-6.18.txt"))
    cap = imp.capture
    assert cap.times.kill_wall == "2026-11-25T10:42:39" and cap.times.kill_wall_zone == "unknown"
    assert any("local time without its zone" in n for n in cap.notes)
    md = render_markdown(cap)
    assert "| When | 2026-11-25 10:42:39 (local time, zone unknown) |" in md
    assert "10:42:39.000" not in md and "10:42:39+00:00" not in md


def test_a_time_with_its_zone_stays_utc():
    (imp,) = _imports(os.path.join(LOGS, "syslog-iso-v2-6.1.txt"))
    assert imp.capture.times.kill_wall_zone == "" and imp.capture.times.kill_wall.endswith("+00:00")


def test_a_year_from_the_files_time_is_said_so(tmp_path):
    """RHEL 7's syslog has no line with a year: the year is the file's, and the capture says so."""
    imps = _imports(_copy(tmp_path, "rhel7-3.10-syslog.txt"))
    assert [i.capture.times.kill_wall for i in imps] == ["2026-08-16T20:29:54", "2026-08-16T20:29:54", "2026-08-17T06:27:51"]
    for imp in imps:
        assert any("inferred from the log file's modification time" in n for n in imp.capture.notes)


def test_rhel7_killed_line_only_kills_have_their_line_and_their_limit(tmp_path):
    """3.10 prints 'Memory cgroup out of memory: Kill process N (comm) score S or sacrifice child',
    then 'Killed process N (comm), UID ...' with no message: the Killed line was read (before: 'was
    not seen: the oom_reaper's line names the victim'), and the kill was a cgroup's."""
    bare = _imports(_copy(tmp_path, "rhel7-3.10-syslog.txt"))[:2]
    for imp in bare:
        cap = imp.capture
        assert cap.kernel_report.killed_line_seen
        assert not any("was not seen" in n for n in cap.notes), cap.notes
        assert cap.cgroup.constraint == "CONSTRAINT_MEMCG"
        assert "oom_reaper" not in render_markdown(cap)


def test_full_date_is_bounded_and_reads_only_real_years(tmp_path):
    assert full_date(b"x 9999-12-31 10:00:00 y 12020-01-01 10:00:00 2019-13-01 10:00:00") is None
    assert full_date(b"junk\x00\xff 2019-06-25T10:00:00Z more")[1] == "2019-06-25T10:00:00"
    big = tmp_path / "big.log"
    with open(big, "wb") as f:  # nothing to find in 200 MiB of dashes: at most the two windows are read
        f.truncate(200 << 20)
        f.seek(100 << 20)
        f.write(b"2020-01-01 10:00:00\n")
    assert full_date_of(str(big)) is None
    assert full_date_of(str(tmp_path / "missing.log")) is None
