"""record/outputs.py: what one kill leaves on disk, with rendering and the index passed in."""

import io
import os

from oomscope.record.outputs import Outputs

from .helpers import capture_from_fixture


class FakeIndex:
    def __init__(self):
        self.added, self.removed, self.writes = [], [], 0

    def add(self, capture_path, capture, analysis=None):
        self.added.append((os.path.basename(os.path.dirname(capture_path)), analysis))

    def remove(self, folder):
        self.removed.append(folder)

    def write(self, atomic_write):
        self.writes += 1


def test_a_kill_is_written_rendered_with_its_analysis_and_indexed(tmp_path):
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)
    rendered, index, err = [], FakeIndex(), io.StringIO()
    out = Outputs(str(tmp_path), lambda c, a=None: rendered.append(a) or "<html>", index, None, err)
    written = out.write(cap, "the analysis", kill_ns=1)
    assert os.path.isfile(written.capture_path) and open(written.html_path).read() == "<html>"
    assert rendered == ["the analysis"] and index.added == [(cap.kill_id, "the analysis")]
    assert index.writes == 1 and written.render_error is None and err.getvalue() == ""
    out.write_index()  # nothing new: not written again
    assert index.writes == 1


def test_a_rendering_error_is_said_and_the_capture_kept(tmp_path):
    cap, _ = capture_from_fixture("v2-6.1-anon.kmsg", version=2)

    def broken(c, a=None):
        raise ValueError("no template")

    err = io.StringIO()
    written = Outputs(str(tmp_path), broken, FakeIndex(), None, err).write(cap, None, kill_ns=1)
    assert os.path.isfile(written.capture_path) and written.html_path is None
    assert "post-mortem not rendered (ValueError: no template)" in err.getvalue()
