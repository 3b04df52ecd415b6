"""record/outputs.py and postmortem/ (finisher.py, stage.py): what one kill leaves on disk; the capture written by
the recorder, the post-mortem and the index by a Finisher."""

import io
import os

from oomscope.postmortem.stage import InProcess, PostMortems
from oomscope.record.outputs import Outputs

from .helpers import capture_from_fixture


class FakeIndex:
    def __init__(self):
        self.added, self.removed, self.writes = [], [], 0

    def add(self, capture_path, capture, analysis=None):
        self.added.append((os.path.basename(os.path.dirname(capture_path)), analysis))

    def remove(self, folder):
        self.removed.append(folder)

    def write(self):
        self.writes += 1


class Analysis:
    top_categories = ["anon"]


def test_a_kill_is_written_rendered_with_its_analysis_and_indexed(tmp_path):
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    rendered, index, err = [], FakeIndex(), io.StringIO()
    analysis = Analysis()
    fin = InProcess(PostMortems(str(tmp_path), lambda c, a=None: rendered.append(a) or "<html>", lambda c: analysis, index, err))
    written = Outputs(str(tmp_path), fin, None, err).write(cap, kill_ns=1)
    assert os.path.isfile(written.capture_path) and written.html_path is None  # set once rendered
    [done] = fin.results()
    assert done.job == written.job and done.category == "anon" and done.error is None
    assert done.html_path == os.path.join(os.path.dirname(written.capture_path), "postmortem.html")
    assert open(done.html_path).read() == "<html>"
    assert rendered == [analysis] and index.added == [(cap.kill_id, analysis)]
    assert index.writes == 1 and err.getvalue() == ""
    fin.results()  # nothing new: not written again
    assert index.writes == 1


def test_a_rendering_error_is_said_and_the_capture_kept(tmp_path):
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)

    def broken(c, a=None):
        raise ValueError("no template")

    err = io.StringIO()
    fin = InProcess(PostMortems(str(tmp_path), broken, None, FakeIndex(), err))
    written = Outputs(str(tmp_path), fin, None, err).write(cap, kill_ns=1)
    [done] = fin.results()
    assert os.path.isfile(written.capture_path) and done.html_path is None
    assert done.error == "ValueError: no template" and done.category == ""
    assert not os.path.exists(os.path.join(os.path.dirname(written.capture_path), "postmortem.html"))


def test_a_storm_under_keep_and_the_disk_budget_takes_only_its_own_post_mortems(tmp_path):
    """Workload A writes 30 kills with --keep 10 and a disk budget of about 3 of its kill folders:
    B's 3 older post-mortems stay, A keeps its newest."""
    from oomscope.model import Workload
    from oomscope.record.retention import Retention

    fin = InProcess(PostMortems(str(tmp_path), lambda c, a=None: "<html>" + "x" * 30000, None, FakeIndex(), io.StringIO()))
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    cap.workload = Workload(kind="kubernetes", pod_uid="B")
    b_out = Outputs(str(tmp_path), fin, None, io.StringIO())
    b_paths = []
    for i in range(3):
        cap.kill_id = f"b{i}"
        b_paths.append(b_out.write(cap, kill_ns=i).capture_path)
    fin.results()
    cap.workload = Workload(kind="kubernetes", pod_uid="A")
    out = Outputs(str(tmp_path), fin, Retention.parse("10"), io.StringIO(), disk_budget=3 * 64 * 1024)
    a_paths = []
    for i in range(30):
        cap.kill_id = f"a{i:02d}"
        a_paths.append(out.write(cap, kill_ns=100 + i).capture_path)
        fin.results()
    assert all(os.path.exists(p) for p in b_paths)
    a_left = [p for p in a_paths if os.path.exists(p)]
    assert a_paths[-1] in a_left and 2 <= len(a_left) <= 4  # the disk budget, then --keep 10
    assert a_left == a_paths[-len(a_left):]  # its newest


def test_the_ledger_of_kill_folders_is_read_when_record_starts_not_at_its_first_kill(tmp_path):
    """Issue 29: the disk budget's ledger read every capture of the output folder at the first
    kill's write (2000 kill folders ~1 s, which that kill and those queued behind it waited for)."""
    from oomscope.model import Workload

    fin = InProcess(PostMortems(str(tmp_path), lambda c, a=None: "<html>", None, FakeIndex(), io.StringIO()))
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    cap.workload = Workload(kind="kubernetes", pod_uid="B")
    for i in range(3):
        cap.kill_id = f"b{i}"
        Outputs(str(tmp_path), fin, None, io.StringIO()).write(cap, kill_ns=i)
    out = Outputs(str(tmp_path), fin, None, io.StringIO(), disk_budget=1 << 30)
    assert out.ledger is not None and sorted(out.ledger.folders) == ["b0", "b1", "b2"]
    assert Outputs(str(tmp_path / "new"), fin, None, io.StringIO(), disk_budget=1 << 30).ledger.folders == {}
    assert Outputs(str(tmp_path), fin, None, io.StringIO()).ledger is None  # no limit: never read
