"""The post-mortem worker of ``oomscope record`` (postmortem/finisher.py starts it): analyses and
renders the kills whose captures the recorder wrote, and keeps the output folder's index.html, so
that the long-running recorder never holds pandas, jinja2 or the analysis.

    python -m oomscope.postmortem.worker OUT_DIR [--file-mode N] [--allow-shared] [--series-window S] [--idle-exit S]

Reads one JSON request per line on stdin ({"seq", "op": kill|rerender|remove|keep, "capture" or
"folder"}; keep does nothing but put the idle exit off), answers each on stdout, in order ({"seq"}, and for a kill "html", "error",
"category", "cause", "series"). Stops at the end of its input, writing index.html once more. SIGINT and SIGTERM are
ignored: the recorder stops it by closing the pipe, once the last post-mortems are done.
With ``--idle-exit S``, after S seconds with nothing asked it writes index.html, says
{"idle_exit": true} and exits: the recorder starts it again at the next kill (postmortem/finisher.py).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from typing import Optional

from .. import safefs
from ..analysis.result import analyse_kill
from ..errors import OomscopeError
from ..model import Capture
from ..record import heap
from ..analysis.series import analyse_series
from ..report.render import render_html
from ..report.series import render_series_html
from .cause import cause_words
from ..terminal import terminal_safe
from .index import OutputIndex
from .series import WINDOW_S
from .stage import PostMortems


def _read_capture(out_dir: str, capture_path: str) -> Capture:
    """The capture the recorder wrote, read as the index reads one (never through a link)."""
    folder = os.path.basename(os.path.dirname(capture_path))
    with safefs.Dir(out_dir) as out, out.subdir(folder) as kill_dir:
        return Capture.from_json(kill_dir.read("capture.json").decode("utf-8"))


def _answer(req: dict, post: PostMortems, out_dir: str) -> dict:
    op, seq = req.get("op"), req.get("seq")
    if op == "keep":  # nothing to do: the request itself put the idle exit off (record's keep)
        return {"seq": seq}
    if op == "remove":
        post.remove(str(req["folder"]))
        return {"seq": seq}
    path = str(req["capture"])
    try:
        capture = _read_capture(out_dir, path)
    except (OSError, UnicodeDecodeError, OomscopeError) as exc:
        return {"seq": seq, "html": None, "error": terminal_safe(f"the capture could not be read back: {exc}")[:500]}
    if op == "rerender":
        post.rerender(path, capture)
        return {"seq": seq}
    done = post.kill(0, path, capture)
    return {"seq": seq, "html": done.html_path, "error": done.error, "category": done.category, "cause": done.cause,
            "series": done.series}


def render_series(series, read, has_page) -> str:
    """A series page: its analysis (analysis/series.py), rendered (report/series.py)."""
    return render_series_html(analyse_series(series, read, cause_words), has_page, series.host)


def warm() -> None:
    """What the first post-mortem would otherwise wait for, done before any kill is asked: its
    template compiled (23-24 ms on a quiet 2-core host). The index's and the series' templates
    (5-6 ms each) are compiled when first written, which is when no kill waits (serve). numpy is
    no longer loaded at all: analysis/advice.py fits in plain Python (numpy was 26-30 ms of the
    start there, 69 ms loaded, and ~5 MiB; issue 29, bench/README.md)."""
    from ..report.render import load_templates

    load_templates("postmortem.html.j2")


def serve(out_dir: str, stdin=None, stdout=None, err=None, window_s: float = WINDOW_S,
          idle_exit_s: Optional[float] = None) -> None:
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    err = err or sys.stderr
    index = OutputIndex(out_dir, window_s, cache=True)  # rows kept between its starts (postmortem/index.py)
    for folder, why in index.skipped:  # a capture in the output folder that cannot be read
        err.write(f"oomscope: warning: {terminal_safe(os.path.join(out_dir, folder))}: left out of the index: "
                  f"{terminal_safe(why[:300])}\n")
    err.flush()
    post = PostMortems(out_dir, render_html, analyse_kill, index, err, render_series=render_series)
    warm()
    fd = stdin.fileno()
    buf = b""
    idle_since = time.monotonic()
    while True:
        due: Optional[float] = post.index_due
        if idle_exit_s is not None and not buf:
            left = max(0.0, idle_since + idle_exit_s - time.monotonic())
            due = left if due is None else min(due, left)
        readable, _, _ = select.select([fd], [], [], due)
        if not readable:
            post.write_index()
            if idle_exit_s is not None and not buf and post.index_due is None and \
                    time.monotonic() - idle_since >= idle_exit_s:
                post.write_index(force=True)
                _keep_index(index, err)
                stdout.write(json.dumps({"idle_exit": True}) + "\n")
                stdout.flush()
                return
            continue
        idle_since = time.monotonic()
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            req: dict = {}
            try:
                req = json.loads(line)
                reply = _answer(req, post, out_dir)
            except Exception as exc:  # one odd kill must not stop the others
                reply = {"seq": req.get("seq"), "html": None, "error": terminal_safe(f"{type(exc).__name__}: {exc}")[:500]}
            stdout.write(json.dumps(reply) + "\n")
            stdout.flush()
        # index.html, series.json and the series pages (each fsynced) when no kill waits, so that a
        # storm's next post-mortem is not queued behind them; at least every 5 s all the same
        if not select.select([fd], [], [], 0)[0] or post.index_overdue(5.0):
            post.write_index()
            heap.trim()  # what the post-mortems freed, back to the kernel (record/heap.py)
    post.write_index(force=True)
    _keep_index(index, err)


def _keep_index(index: OutputIndex, err) -> None:
    """The index's rows for the next worker's start (postmortem/index.py INDEX_CACHE)."""
    try:
        index.write_cache()
    except OSError as exc:  # the next start reads every capture again: slower, nothing lost
        err.write(f"oomscope: warning: the index's rows not kept for the next start: {terminal_safe(str(exc))[:300]}\n")


def main(argv=None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    args = list(sys.argv[1:] if argv is None else argv)
    file_mode = allow_shared = None
    if "--file-mode" in args:
        i = args.index("--file-mode")
        file_mode = int(args[i + 1])
        del args[i:i + 2]
    if "--allow-shared" in args:
        args.remove("--allow-shared")
        allow_shared = True
    idle_exit_s = None
    if "--idle-exit" in args:
        i = args.index("--idle-exit")
        idle_exit_s = float(args[i + 1])
        del args[i:i + 2]
    window_s = WINDOW_S
    if "--series-window" in args:
        i = args.index("--series-window")
        window_s = float(args[i + 1])
        del args[i:i + 2]
    safefs.configure(file_mode=file_mode, allow_shared=allow_shared)
    heap.configure()
    try:
        serve(args[0], window_s=window_s, idle_exit_s=idle_exit_s)
    except Exception as exc:  # one line, never a traceback (the recorder says it stopped)
        sys.stderr.write(f"oomscope: post-mortem worker: {type(exc).__name__}: {terminal_safe(str(exc))}\n")
        sys.exit(70)


if __name__ == "__main__":
    main()
