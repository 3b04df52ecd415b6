"""Files written as root (issue 14): no link followed, only oomscope's own regular files replaced or
removed, kill folders known by their marker, output folders others can change refused, modes on
purpose. Each test here failed on the code before oomscope/safefs.py."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
from typer.testing import CliRunner

from oomscope import safefs
from oomscope.cli import app
from oomscope.record.retention import Retention
from oomscope.postmortem.stage import write_kill
from oomscope.postmortem.index import OutputIndex
from oomscope.report.render import render_html
from oomscope.safefs import MARKER, UnsafeOutput

from ..requires import require_tool
from .helpers import capture_from_fixture

runner = CliRunner()
NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another user (chown)")


@pytest.fixture(autouse=True)
def _default_settings():
    saved = (safefs.settings.file_mode, safefs.settings.allow_shared)
    yield
    safefs.settings.file_mode, safefs.settings.allow_shared = saved


def _capture():
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    return cap


def _kill(out, name, age_s=0):
    cap = _capture()
    cap.kill_id = name
    path, _, _ = write_kill(str(out), cap, render_html)
    t = os.stat(path).st_mtime - age_s
    os.utime(path, (t, t))
    return os.path.dirname(path)


def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    for n in ("capture.json", "postmortem.html", MARKER, "precious"):
        (victim / n).write_text("mine")
    return victim


def test_keep_never_follows_a_kill_folder_that_is_a_symlink(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = _victim(tmp_path)
    os.symlink(victim, out / "20200101T000000.000Z-pid1")  # the oldest "kill"
    for i in range(3):
        _kill(out, f"k{i}")
    removed = Retention.parse("1").prune(str(out))
    assert len(removed) == 2 and "20200101T000000.000Z-pid1" not in removed
    assert sorted(p.name for p in victim.iterdir()) == sorted(["capture.json", "postmortem.html", MARKER, "precious"])
    assert os.path.islink(out / "20200101T000000.000Z-pid1")


def test_keep_leaves_folders_oomscope_did_not_write(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    notes = out / "my-notes"
    notes.mkdir()
    for n in ("capture.json", "postmortem.html"):
        (notes / n).write_text("my own")
    os.utime(notes / "capture.json", (0, 0))  # older than every kill
    _kill(out, "k0", age_s=100)
    _kill(out, "k1")
    assert Retention.parse("1").prune(str(out)) == ["k0"]
    assert (notes / "capture.json").read_text() == "my own" and (notes / "postmortem.html").exists()


def test_keep_does_not_remove_a_planted_link_inside_a_kill_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    old = _kill(out, "old", age_s=10 * 86400)
    _kill(out, "new")
    target = tmp_path / "target"
    target.write_text("keep me")
    os.unlink(os.path.join(old, "postmortem.html"))
    os.symlink(target, os.path.join(old, "postmortem.html"))
    assert Retention.parse("7d").prune(str(out)) == ["old"]
    assert target.read_text() == "keep me" and os.path.islink(os.path.join(old, "postmortem.html"))


def test_write_kill_beside_a_planted_symlink_writes_a_new_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cap = _capture()
    os.symlink(elsewhere, out / cap.kill_id)
    path, html, err = write_kill(str(out), cap, render_html)
    assert err is None and os.path.dirname(path) == str(out / f"{cap.kill_id}.1")
    assert list(elsewhere.iterdir()) == []


def test_the_index_reads_no_capture_through_a_link(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _kill(out, "real")
    os.symlink(out / "real", out / "linked")
    assert sorted(OutputIndex(str(out)).rows) == ["real"]


def _report_to(tmp_path, dest, *extra):
    p = tmp_path / "capture.json"
    p.write_text(_capture().to_json())
    return runner.invoke(app, ["report", str(p), "-o", str(dest), *extra])


def test_report_o_does_not_replace_a_fifo(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = _report_to(tmp_path, fifo)
    assert r.exit_code == UnsafeOutput.exit_code and "a FIFO is there" in r.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_report_o_does_not_replace_a_symlink_or_its_target(tmp_path):
    target = tmp_path / "target"
    target.write_text("secret")
    link = tmp_path / "link.html"
    os.symlink(target, link)
    r = _report_to(tmp_path, link)
    assert r.exit_code == UnsafeOutput.exit_code and "symbolic link" in r.output
    assert os.path.islink(link) and target.read_text() == "secret"


@root_only
def test_report_o_does_not_replace_a_device(tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    r = _report_to(tmp_path, dev)
    assert r.exit_code == UnsafeOutput.exit_code and "a device" in r.output
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


@root_only
def test_report_o_does_not_replace_another_users_file(tmp_path):
    theirs = tmp_path / "theirs.html"
    theirs.write_text("theirs")
    os.chown(theirs, NOBODY, NOBODY)
    r = _report_to(tmp_path, theirs)
    assert r.exit_code == UnsafeOutput.exit_code and "belongs to user 65534" in r.output
    assert theirs.read_text() == "theirs"


def test_report_o_replaces_its_own_file(tmp_path):
    mine = tmp_path / "pm.html"
    mine.write_text("old")
    r = _report_to(tmp_path, mine)
    assert r.exit_code == 0, r.output
    assert "<html" in mine.read_text().lower()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


@root_only
def test_an_output_folder_of_another_user_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    log = tmp_path / "dmesg.txt"
    log.write_text(open(os.path.join(os.path.dirname(__file__), "..", "fixtures", "logs", "dmesg-v1-6.18.txt")).read())
    r = subprocess.run([sys.executable, "-m", "oomscope", "import", str(log), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == UnsafeOutput.exit_code, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"oomscope: error: {out}: the folder belongs to user 65534, who could redirect what oomscope writes there "
        "as root; use a folder of root's, or --allow-shared-output"]
    assert list(out.iterdir()) == []
    r = subprocess.run([sys.executable, "-m", "oomscope", "import", str(log), "-o", str(out), "--allow-shared-output"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "index.html").exists()


def test_a_world_writable_output_folder_is_refused_unless_sticky(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    with pytest.raises(UnsafeOutput, match="writable by group and others"):
        write_kill(str(out), _capture(), render_html)
    assert list(out.iterdir()) == []
    os.chmod(out, 0o1777)
    path, _, _ = write_kill(str(out), _capture(), render_html)
    assert os.path.exists(path)


def test_an_output_folder_that_is_a_link_of_another_user_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "out"
    os.symlink(real, link)
    if os.geteuid() == 0:
        os.lchown(link, NOBODY, NOBODY)
        with pytest.raises(UnsafeOutput, match="symbolic link of user 65534"):
            write_kill(str(link), _capture(), render_html)
        assert list(real.iterdir()) == []
        os.lchown(link, 0, 0)
    path, _, _ = write_kill(str(link), _capture(), render_html)  # a link of ours (or root's) is followed
    assert os.path.exists(path)


def test_files_are_0644_and_folders_0755_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        path, html, _ = write_kill(str(tmp_path / "out"), _capture(), render_html)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(html).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o755  # the output folder made too
    assert os.path.isfile(os.path.join(os.path.dirname(path), MARKER))


def test_mode_option(tmp_path):
    p = tmp_path / "capture.json"
    p.write_text(_capture().to_json())
    r = runner.invoke(app, ["report", str(p), "-o", str(tmp_path / "pm.html"), "--mode", "0640"])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(os.stat(tmp_path / "pm.html").st_mode) == 0o640
    safefs.configure(file_mode=0o640)
    path, _, _ = write_kill(str(tmp_path / "out"), _capture(), render_html)
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o750


@pytest.mark.parametrize("bad", ["999", "0400", "u+rw", "-1", "17777"])
def test_bad_mode_is_one_line(tmp_path, bad):
    p = tmp_path / "capture.json"
    p.write_text(_capture().to_json())
    r = runner.invoke(app, ["report", str(p), "-o", str(tmp_path / "pm.html"), "--mode", bad])
    assert r.exit_code == 1 and "--mode must be" in r.output


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user")
def test_a_user_other_than_root_can_report_what_root_recorded(tmp_path):
    require_tool("setpriv", package="util-linux")
    base = tempfile.mkdtemp(prefix="oomscope-modes-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        old = os.umask(0o077)  # a root shell's strict umask must not decide
        try:
            path, html, _ = write_kill(os.path.join(base, "out"), _capture(), render_html)
        finally:
            os.umask(old)
        env = dict(os.environ, PYTHONPATH=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-m", "oomscope",
                            "report", path, "-f", "md"], capture_output=True, text=True, timeout=60, env=env, cwd="/")
        assert r.returncode == 0, r.stderr
        assert "python3" in r.stdout
        with open(html) as f:
            assert "<html" in f.read().lower()
    finally:
        shutil.rmtree(base)


# --- batches (import, issue 18): the waits for the disk taken together, the guarantees kept ------

def test_a_batch_puts_files_in_place_only_at_its_flush(tmp_path):
    out = tmp_path / "out"
    batch = safefs.Batch()
    path, html, err = write_kill(str(out), _capture(), render_html, batch)
    assert err is None and len(batch) == 2
    folder = os.path.dirname(path)
    assert not os.path.exists(path) and not os.path.exists(html)  # only temporary names before the flush
    assert [n for n in os.listdir(folder) if n.startswith(safefs.TMP_PREFIX)]
    batch.flush()
    assert len(batch) == 0
    assert sorted(os.listdir(folder)) == sorted([MARKER, "capture.json", "postmortem.html"])
    assert stat.S_IMODE(os.stat(path).st_mode) == safefs.DEFAULT_FILE_MODE
    assert OutputIndex(str(out)).rows  # a capture that reads back


def test_a_batch_closed_without_a_flush_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "out"
    batch = safefs.Batch()
    path, _, _ = write_kill(str(out), _capture(), render_html, batch)
    batch.close()
    assert os.listdir(os.path.dirname(path)) == [MARKER]


def test_a_link_planted_before_the_flush_is_neither_followed_nor_replaced(tmp_path):
    out = tmp_path / "out"
    target = tmp_path / "precious"
    target.write_text("mine")
    batch = safefs.Batch()
    path, html, _ = write_kill(str(out), _capture(), render_html, batch)
    os.symlink(target, path)  # planted between the write and the rename
    with pytest.raises(UnsafeOutput, match="symbolic link"):
        batch.flush()
    assert target.read_text() == "mine" and os.path.islink(path)
    assert os.path.isfile(html)  # the other file of the batch was still put in place
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(safefs.TMP_PREFIX)]


@pytest.mark.parametrize("syncfs", ["syncfs", "fsync per file"])
def test_a_batch_flush_waits_for_the_disk_with_syncfs_or_each_file(tmp_path, monkeypatch, syncfs):
    calls = {"syncfs": 0, "fsync": 0}
    real_fsync = os.fsync

    def counted_fsync(fd):
        calls["fsync"] += 1
        real_fsync(fd)

    if syncfs == "syncfs":
        if not safefs._kernel_reports_syncfs_errors():
            pytest.skip("this kernel's syncfs does not report write errors (before 5.8): the batch fsyncs each file")
        monkeypatch.setattr(safefs, "_syncfs", lambda fd: calls.__setitem__("syncfs", calls["syncfs"] + 1))
    else:  # a C library without syncfs, or a kernel before 5.8
        monkeypatch.setattr(safefs, "_syncfs", lambda fd: (_ for _ in ()).throw(OSError(38, "no syncfs")))
    monkeypatch.setattr(safefs.os, "fsync", counted_fsync)
    out = tmp_path / "out"
    batch = safefs.Batch()
    paths = [write_kill(str(out), _capture(), render_html, batch)[0] for _ in range(3)]
    batch.flush()
    assert all(os.path.isfile(p) for p in paths) and len(set(paths)) == 3
    if syncfs == "syncfs":  # one before the renames and one after, for the one filesystem
        assert calls == {"syncfs": 2, "fsync": 0}
    else:  # 6 files, 3 kill folders and the output folder
        assert calls["fsync"] == 6 + 3 + 1


# --- issue 24: every component of an output path, not only the last ------------------------------

def _planted_parent(tmp_path, owner):
    """tmp_path/theirs -> tmp_path/elsewhere (a link of ``owner``), elsewhere/out a folder of ours."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "out").mkdir(parents=True)
    os.symlink(elsewhere, tmp_path / "theirs")
    os.lchown(tmp_path / "theirs", owner, owner)
    return elsewhere


@root_only
def test_report_o_does_not_follow_a_link_of_another_user_in_a_parent_folder(tmp_path):
    elsewhere = _planted_parent(tmp_path, NOBODY)
    dest = tmp_path / "theirs" / "out" / "pm.html"
    r = _report_to(tmp_path, dest)
    assert r.exit_code == UnsafeOutput.exit_code, r.output
    assert r.output.strip().splitlines() == [
        f"oomscope: error: {dest.parent}: {tmp_path / 'theirs'} is a symbolic link of user 65534; oomscope does not "
        "follow it as root (use the folder it points to, or --allow-shared-output)"]
    assert list((elsewhere / "out").iterdir()) == []


@root_only
def test_record_and_import_do_not_follow_a_link_of_another_user_in_a_parent_folder(tmp_path):
    elsewhere = _planted_parent(tmp_path, NOBODY)
    for out in (tmp_path / "theirs" / "out", tmp_path / "theirs" / "new" / "out"):  # made when missing
        with pytest.raises(UnsafeOutput, match="symbolic link of user 65534"):
            write_kill(str(out), _capture(), render_html)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["out"] and list((elsewhere / "out").iterdir()) == []
    safefs.configure(allow_shared=True)  # a site that wants it
    path, _, _ = write_kill(str(tmp_path / "theirs" / "out"), _capture(), render_html)
    assert path.startswith(str(tmp_path / "theirs" / "out"))


@root_only
def test_a_link_of_roots_in_a_folder_another_user_can_change_is_not_followed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, NOBODY, NOBODY)  # they could replace the link between our look and our use
    (tmp_path / "real" / "out").mkdir(parents=True)
    os.symlink(tmp_path / "real", shared / "l")
    with pytest.raises(UnsafeOutput, match="in a folder user 65534 can change"):
        write_kill(str(shared / "l" / "out"), _capture(), render_html)
    assert list((tmp_path / "real" / "out").iterdir()) == []


def test_links_of_ours_in_parent_folders_and_relative_paths_are_followed(tmp_path, monkeypatch):
    (tmp_path / "real" / "deep").mkdir(parents=True)
    os.symlink(tmp_path / "real", tmp_path / "abs")  # absolute target
    os.symlink("real/deep", tmp_path / "rel")  # relative target, two components
    os.symlink("../abs", tmp_path / "real" / "up")  # a link through a link
    for out in ("abs/deep/out", "rel/out2", "real/up/deep/out3"):
        path, _, _ = write_kill(str(tmp_path / out), _capture(), render_html)
        assert os.path.exists(path)
    assert sorted(os.listdir(tmp_path / "real" / "deep")) == ["out", "out2", "out3"]
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["report", str(tmp_path / "real" / "deep" / "out" / os.listdir(tmp_path / "real" / "deep" / "out")[0]
                                         / "capture.json"), "-o", "rel/./pm.html"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "real" / "deep" / "pm.html").exists()
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises((OSError, UnsafeOutput), match="Too many levels of symbolic links"):
        write_kill(str(tmp_path / "loop" / "out"), _capture(), render_html)


def test_a_batchs_markers_are_one_file_and_each_folder_stays_its_own(tmp_path):
    """In a batch (import) the markers after the first are hard links to it (no inode each, issue
    29): each folder still has its own marker name, ours and regular, that the index and --keep
    read; removing one kill folder leaves the others' markers; record (no batch) makes a file each."""
    from oomscope.capture.writer import write_capture
    from oomscope.importer.run import _write_batch

    out = tmp_path / "out"
    text = _capture().to_json(None)
    results, err = _write_batch(str(out), [(f"20261206T000000.00{i}Z-pid{i}", text) for i in range(3)])
    assert err is None and [k for k, _ in results] == ["ok"] * 3
    marks = [os.stat(os.path.join(os.path.dirname(p), MARKER)) for _, p in results]
    assert len({(m.st_dev, m.st_ino) for m in marks}) == 1 and marks[0].st_nlink == 3
    assert all(stat.S_ISREG(m.st_mode) and m.st_uid == os.geteuid() for m in marks)
    assert len(OutputIndex(str(out)).rows) == 3
    with safefs.Dir(str(out)) as d:
        assert sorted(n for n, _ in d.kill_folders()) == sorted(os.path.basename(os.path.dirname(p)) for _, p in results)
        assert d.remove_kill_folder(os.path.basename(os.path.dirname(results[0][1])))
    assert os.stat(os.path.join(os.path.dirname(results[1][1]), MARKER)).st_nlink == 2
    assert len(OutputIndex(str(out)).rows) == 2
    alone = tmp_path / "alone"
    p1 = write_capture(str(alone), _capture())
    p2 = write_capture(str(alone), _capture())
    m1, m2 = (os.stat(os.path.join(os.path.dirname(p), MARKER)) for p in (p1, p2))
    assert m1.st_ino != m2.st_ino and m1.st_nlink == m2.st_nlink == 1
