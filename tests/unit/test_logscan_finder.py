"""kernel/logscan.py's memmem finder (issue 29): the kills it finds in a log are those
``bytes.find`` finds, on every kind of buffer the importer scans (bytes from a stream's block, a
bytearray, the file's private mapping; a read-only mapping falls back to bytes.find), at the
buffer's edges, in binary junk, and it stays linear on hostile input."""

import mmap
import os
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from oomscope.importer.sources import _map, open_log
from oomscope.kernel import logscan
from oomscope.kernel.logscan import _Finder, fast_report_regions, report_regions

from ..conftest import fixture_text

NEEDLE = b"Killed process"


def _all(finder, needle=NEEDLE):
    hits, at = [], finder.find(needle, 0)
    while at >= 0:
        hits.append(at)
        at = finder.find(needle, at + 1)
    return hits


def _want(data: bytes):
    hits, at = [], data.find(NEEDLE)
    while at >= 0:
        hits.append(at)
        at = data.find(NEEDLE, at + 1)
    return hits


@settings(max_examples=200, deadline=2000)
@given(st.lists(st.one_of(st.binary(max_size=64), st.just(NEEDLE), st.just(b"Killed proces"), st.just(b"\0\n\xff")), max_size=40))
def test_memmem_finds_what_bytes_find_finds(parts):
    data = b"".join(parts)
    want = _want(data)
    for buf in (data, bytearray(data)):
        f = _Finder(buf)
        assert _all(f) == want
        assert f.find(NEEDLE, len(data) + 5) == -1 and f.find(NEEDLE, -3) == (want[0] if want else -1)
        f.close()


def test_memmem_is_used_and_each_buffer_kind_gives_the_same_regions(tmp_path):
    if logscan._MEMMEM is None:
        print("the C library has no memmem here: bytes.find is used (tested by the other tests)")
    text = fixture_text("kmsg", "v1-6.18-storm.kmsg").encode()
    noise = b"".join(b"6,%d,%d,-;eth0: some ordinary message\n" % (i, i) for i in range(300))
    data = noise + text + noise + text + b"\x00\xffKilled process\n" + noise
    want = list(report_regions(data))
    p = tmp_path / "storm.kmsg"
    p.write_bytes(data)
    with open(p, "rb") as fh:
        private = _map(fh.fileno())
        readonly = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    for buf in (data, bytearray(data), private, readonly):
        assert list(fast_report_regions(buf)) == want, type(buf)
        f = _Finder(buf)
        assert bool(f.base) == (logscan._MEMMEM is not None and not isinstance(buf, mmap.mmap) or buf is private)
        f.close()
    private.close()  # no export left behind: a mapping still exported cannot be closed
    readonly.close()
    assert sum(1 for line in open_log(str(p)) if "Killed process" in line) == 2 * 105 + 1


def test_a_log_of_needles_and_near_misses_is_linear(tmp_path):
    """Every line a near miss, or every line a kill without a report: the scan stays linear."""
    for line in (b"Killed proces" * 5000 + b"\n", b"[ 1.0] Killed process 1 (x)\n"):
        p = tmp_path / "hostile.log"
        p.write_bytes(line * ((8 << 20) // len(line) if len(line) < 1000 else 100))
        t = time.monotonic()
        n = sum(1 for _ in open_log(str(p)))
        assert time.monotonic() - t < 20, n
    os.unlink(p)
