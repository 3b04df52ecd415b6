import os
import time

import pytest

from oomscope.errors import OomscopeError
from oomscope.record.retention import Retention
from oomscope.safefs import MARKER


def _kill(d, name, age_s):
    f = d / name
    f.mkdir()
    for n in ("capture.json", "postmortem.html", MARKER):
        (f / n).write_text("{}")
    t = time.time() - age_s
    os.utime(f / "capture.json", (t, t))
    return f


def test_keep_newest_n_and_never_the_one_just_written(tmp_path):
    for i in range(5):
        _kill(tmp_path, f"k{i}", age_s=100 * i)  # k0 newest
    removed = Retention.parse("2").prune(str(tmp_path), keep={str(tmp_path / "k4")})
    assert sorted(removed) == ["k2", "k3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k0", "k1", "k4"]


def test_keep_days_and_foreign_files_are_left(tmp_path):
    _kill(tmp_path, "new", 3600)
    old = _kill(tmp_path, "old", 9 * 86400)
    (old / "notes.txt").write_text("mine")
    (tmp_path / "unrelated").mkdir()
    assert Retention.parse("7d").prune(str(tmp_path)) == ["old"]
    assert (old / "notes.txt").exists() and not (old / "capture.json").exists()
    assert (tmp_path / "unrelated").exists() and (tmp_path / "new" / "capture.json").exists()


@pytest.mark.parametrize("bad", ["0", "-3", "x", "0d", ""])
def test_bad_keep_is_one_line(bad):
    with pytest.raises(OomscopeError, match="--keep"):
        Retention.parse(bad)
