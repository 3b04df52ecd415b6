"""How record hands a written capture on to the post-mortem stage: the ``Finisher``.

The recorder writes every capture.json itself (record/outputs.py) and hands its path to a
``Finisher``, which has its analysis, its post-mortem (postmortem.html) and the output folder's
index.html done (postmortem/stage.py, ``PostMortems``). ``WorkerProcess`` has them done in a
worker process (postmortem/worker.py, fed the captures' paths over a pipe): the long-running
recorder then never imports pandas or jinja2 (bench/README.md, "A lean recorder": they were
~40 MiB of its anonymous memory). A worker that dies is said in record's log and started again;
the capture of the kill it was working on stays, without a post-mortem. ``InProcess`` (postmortem/stage.py) does
the work at once in the calling process (tests).

This module imports neither analysis/ nor report/: the recorder imports it.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Protocol, TextIO, Tuple

from ..model import Capture
from ..terminal import terminal_safe

#: a kill's post-mortem, beside its capture.json
HTML = "postmortem.html"


@dataclass
class Finished:
    """A kill's post-mortem, rendered or not."""

    job: int
    html_path: Optional[str]
    error: Optional[str] = None  # why there is no post-mortem (one line)
    category: str = ""  # the dominant category of the kill's memory ("" when unknown)
    cause: Optional[str] = None  # the cause in a few words (postmortem/cause.py); None: not analysed
    #: the kill's series (postmortem/series.py): {id, kill_number, kills_so_far, workload}; None: not known
    series: Optional[dict] = None


class Finisher(Protocol):
    """What record asks of the post-mortem stage for the kills it wrote. Never blocks record."""

    def kill(self, capture_path: str, capture: Capture) -> int:
        """Analyse, render and index a kill whose capture is written: a job number, answered in
        ``results``."""

    def rerender(self, capture_path: str, capture: Capture) -> None:
        """A memory.oom.group's first post-mortem again (its capture was rewritten)."""

    def remove(self, folder: str) -> None:
        """A kill folder that retention removed: out of the index."""

    def results(self) -> List[Finished]:
        """The kills finished since the last call."""

    @property
    def busy(self) -> bool:
        """Work asked for and not done yet."""

    def finish(self, timeout_s: float = 30.0) -> List[Finished]:
        """The last post-mortems (waiting up to ``timeout_s``), then the index, once more."""

    def close(self) -> None:
        """Stops, without waiting for work not done."""


class WorkerProcess:
    """A Finisher whose work is done by a worker process: one JSON line per request on its stdin,
    one answer per request on its stdout, in order (postmortem/worker.py). Never blocks the recorder:
    requests wait in an outbox when the pipe is full, answers are read when there are some."""

    RESTART_AFTER_S = (0.0, 1.0, 5.0, 30.0)  # after 1, 2, 3, 4+ crashes within a minute

    # A worker that has been idle ``--idle-exit`` seconds writes the index, says {"idle_exit": true}
    # and exits (issue 29: pandas, jinja2 and the analysis are ~50 MiB of anonymous memory the node
    # agent would hold between kills); it is started again by the next request, which it may not
    # have read (those are sent again): not a crash, nothing given up.

    def __init__(self, cmd: List[str], err: TextIO, env: Optional[Dict[str, str]] = None,
                 idle_exit_s: Optional[float] = None):
        self.cmd = cmd
        #: the worker's --idle-exit (None: it has none); ``keep`` asks well within it
        self.idle_exit_s = idle_exit_s
        self._last_sent = 0.0
        self.env = env
        self.err = err
        self._seq = 0
        self._next_job = 0
        #: requests not answered yet, oldest first: seq -> (request, capture path, kill job or 0)
        self._pending: "collections.OrderedDict[int, Tuple[dict, str, int]]" = collections.OrderedDict()
        self._outbox = bytearray()
        self._inbox = bytearray()
        self._done: List[Finished] = []
        self._crashes: Deque[float] = collections.deque(maxlen=8)
        self._restart_at: Optional[float] = None
        self.restarts = 0
        self.idle_exits = 0
        self._asleep = False  # exited when idle: started again by the next request
        self._saying_idle = False
        self._next_look = 0.0
        self.proc: Optional[subprocess.Popen] = None
        self._start()

    # --- the process ---
    def _start(self) -> None:
        self._restart_at = None
        self._last_sent = time.monotonic()  # a worker just started has its whole --idle-exit ahead
        self._asleep = self._saying_idle = False
        try:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env,
                                         close_fds=True)
        except OSError as exc:
            self.proc = None
            self._crashed(f"could not be started ({exc.strerror or exc})")
            return
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._outbox = bytearray()
        self._inbox = bytearray()
        for req, _path, _job in self._pending.values():  # what the last one left undone
            self._outbox += _line(req)

    def _crashed(self, how: str) -> None:
        """Says so, gives up the request it was on (its capture stays) and schedules a restart."""
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None
        now = time.monotonic()
        self._crashes.append(now)
        recent = sum(1 for t in self._crashes if now - t < 60.0)
        delay = self.RESTART_AFTER_S[min(recent, len(self.RESTART_AFTER_S)) - 1]
        lost = ""
        if self._pending:  # answered in order: the oldest request is the one it was on
            _seq, (_req, path, job) = self._pending.popitem(last=False)
            if job:
                self._done.append(Finished(job, None, f"the post-mortem worker {how}"))
            lost = f" while working on {terminal_safe(path)} (the capture is kept)"
        self.err.write(f"oomscope: error: the post-mortem worker {how}{lost}; "
                       f"starting it again{' in %.0f s' % delay if delay else ''}\n")
        self._restart_at = now + delay

    def _exit_status(self) -> str:
        proc = self.proc
        if proc is None:
            return "stopped"
        try:
            rc = proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        return f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"

    def wake(self) -> bool:
        """Starts a worker that exited when idle before a kill asks for it (record calls this when a
        cgroup is seconds from its limit): its start-up (interpreter, imports, templates: 0.6-1 s
        on a loaded 2-core host) is then not paid by the first kills of the storm. True when started."""
        if self.proc is not None or not self._asleep:
            return False
        self._start()
        return self.proc is not None

    # --- requests ---
    def _send(self, req: dict, path: str, job: int = 0) -> None:
        self._seq += 1
        req["seq"] = self._seq
        self._last_sent = time.monotonic()
        self._pending[self._seq] = (req, path, job)
        if self.proc is not None:
            self._outbox += _line(req)
        self._pump()

    def kill(self, capture_path: str, capture: Capture) -> int:
        self._next_job += 1
        self._send({"op": "kill", "capture": capture_path}, capture_path, self._next_job)
        return self._next_job

    def rerender(self, capture_path: str, capture: Capture) -> None:
        self._send({"op": "rerender", "capture": capture_path}, capture_path)

    def remove(self, folder: str) -> None:
        self._send({"op": "remove", "folder": folder}, folder)

    def keep(self) -> bool:
        """Keeps a running worker from its idle exit (record calls this while a watched cgroup is
        near its limit): a request that does nothing, sent when nothing was sent for a third of its
        --idle-exit, so that a kill that comes finds it started. True when sent."""
        if self.proc is None or self.idle_exit_s is None or self._pending or \
                time.monotonic() - self._last_sent < self.idle_exit_s / 3:
            return False
        self._send({"op": "keep"}, "")
        return True

    def _pump(self) -> None:
        """Writes what the pipe takes, reads what the worker answered; starts it again when due."""
        if self.proc is None and self._asleep:
            if not self._pending:
                return
            self._start()  # the next request wakes it (and every request it had not read is sent again)
            if self.proc is None:
                return
        if self.proc is None:
            if self._restart_at is None or time.monotonic() < self._restart_at:
                return
            self.restarts += 1
            self._start()
            if self.proc is None:
                return
        gone = False
        try:
            while self._outbox:
                n = os.write(self.proc.stdin.fileno(), self._outbox)
                del self._outbox[:n]
        except BlockingIOError:
            pass
        except OSError:  # EPIPE: it is gone. Whether it went idle is in what it said before it
            # went, read below: a request written just as it left is no crash (the VM suite's
            # 6.1 run took an idle exit for a crash and gave up that kill's post-mortem)
            gone = True
        try:
            while True:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    gone = True
                    break
                self._inbox += chunk
        except BlockingIOError:
            pass
        except OSError:
            gone = True
        if b"\n" in self._inbox:  # the answers it gave before it went, first
            *lines, rest = bytes(self._inbox).split(b"\n")
            self._inbox = bytearray(rest)
            for line in lines:
                self._answered(line)
        if gone and self._saying_idle:
            self._went_idle()
        elif gone:
            status = self._exit_status()
            if self.proc is not None and self.proc.returncode == 0:
                self._went_idle()  # it left on its own (an idle exit whose line was not read): no crash
            else:
                self._crashed(status)

    def _went_idle(self) -> None:
        proc, self.proc = self.proc, None
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._asleep, self._saying_idle = True, False
        self.idle_exits += 1
        self._outbox = bytearray()  # what it had not read is in _pending: sent again at the next start

    def _answered(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
            if isinstance(msg, dict) and msg.get("idle_exit") is True:
                self._saying_idle = True
                return
            seq = int(msg["seq"])
        except (ValueError, KeyError, TypeError):
            return  # not an answer
        entry = self._pending.pop(seq, None)
        if entry is not None and entry[2]:
            self._done.append(Finished(entry[2], msg.get("html"), msg.get("error"), msg.get("category") or "",
                                       msg.get("cause") if isinstance(msg.get("cause"), str) else None,
                                       msg.get("series") if isinstance(msg.get("series"), dict) else None))

    def results(self) -> List[Finished]:
        """The kills finished since the last call. Called at every drain of record's loop: with
        nothing asked, the worker is looked at once a second only (is it still there)."""
        now = time.monotonic()
        if self._pending or self._outbox or self.proc is None or now >= self._next_look:
            self._next_look = now + 1.0
            self._pump()
        done, self._done = self._done, []
        return done

    @property
    def busy(self) -> bool:
        """Work asked of the worker and not answered yet, or not even sent."""
        return bool(self._pending or self._outbox)

    def finish(self, timeout_s: float = 30.0) -> List[Finished]:
        """Waits up to ``timeout_s`` for every post-mortem asked for, then stops the worker (which
        writes index.html as it goes, and once more as it stops)."""
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            if self.proc is None and self._restart_at is not None:
                self._restart_at = min(self._restart_at, time.monotonic())
            self._pump()
            time.sleep(0.005)
        done = self.results()
        for _req, _path, job in self._pending.values():
            if job:
                done.append(Finished(job, None, "record stopped before its post-mortem was rendered"))
        self._pending.clear()
        self.close(max(2.0, deadline - time.monotonic()))
        return done

    def close(self, timeout_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        self._restart_at = None
        if proc is None:
            return
        try:
            proc.stdin.close()  # the worker writes a pending index.html and exits
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _line(req: dict) -> bytes:
    return json.dumps(req).encode() + b"\n"


#: seconds a worker waits idle before it exits (WorkerProcess); 0: it never does
WORKER_IDLE_EXIT_S = 60.0


def start_worker(out_dir: str, err: TextIO, series_window_s: Optional[float] = None) -> WorkerProcess:
    """The post-mortem worker (``python -m oomscope.postmortem.worker``) for ``out_dir``, running the
    same oomscope as this process, with its file mode and output-folder policy (oomscope/safefs.py)
    and the series window (postmortem/series.py)."""
    from .. import safefs
    from ..relaunch import module_command

    args = [out_dir, "--file-mode", str(safefs.settings.file_mode)]
    if series_window_s is not None:
        args += ["--series-window", repr(float(series_window_s))]
    idle = float(os.environ.get("OOMSCOPE_WORKER_IDLE_EXIT_S", WORKER_IDLE_EXIT_S))
    if idle > 0:
        args += ["--idle-exit", repr(idle)]
    if safefs.settings.allow_shared:
        args.append("--allow-shared")
    cmd, env = module_command("oomscope.postmortem.worker", args)
    return WorkerProcess(cmd, err, env, idle_exit_s=idle if idle > 0 else None)
