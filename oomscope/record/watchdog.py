"""Whether record's threads still make progress: the sampler (every cgroup's readings) and the
/dev/kmsg reader (the kernel's reports).

A thread that stops is invisible otherwise: the main thread goes on recording kills from the BPF
events, but without readings before them (a stuck sampler) or without the kernel's report (a stuck
reader). Before issue 24 a planted hsperfdata file spun the sampler forever and nothing said so.

Each watched thread holds a :class:`Heartbeat` and, at every step, promises when it will beat next
(``beat(now, within)``: before a sleep, the sleep; while working, now). The main thread asks
:meth:`Watchdog.check` once per drain; a thread past its promise by more than ``grace_ns``, or
dead while record runs, is said once in the log (with the place it is stuck at, from the
interpreter's own frames), counted in the metrics, noted on each kill recorded meanwhile, and
said again when it recovers. A Python thread cannot be stopped from outside: a stuck one stays
stuck, and kills go on being recorded without what it supplied.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

#: a step of a watched thread (one cgroup's reading, one batch of log records) that takes longer
#: than this is a stall: each takes milliseconds here (a JVM's file 0.55 ms, a cgroup ~1 ms)
STALL_GRACE_NS = 10_000_000_000

#: what each thread supplies, for the sentences
SUPPLIES = {
    "sampler": "cgroups are not read: kills are recorded without the state and timeline before them",
    "kmsg": "the kernel log is not read: kills are recorded without the kernel's OOM report",
}


class Heartbeat:
    """Written by one thread, read by the main thread (a plain int: no lock needed in CPython)."""

    def __init__(self) -> None:
        self.due_ns = 0  # 0: not started yet

    def beat(self, now_ns: int, within_ns: int = 0) -> None:
        self.due_ns = now_ns + within_ns


@dataclass
class ThreadState:
    name: str
    state: str  # "running", "stalled" or "dead"
    since_ns: int  # when it went past its promise (stalled/dead) or came back (running)
    where: str = ""  # the place a stalled thread is at: file:line in function


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB = os.path.dirname(os.__file__) + os.sep


def _where(thread: Optional[threading.Thread]) -> str:
    """Where ``thread`` is: its innermost frame in oomscope's own code, else outside the standard
    library (a waiting lock is not news), else its innermost frame."""
    if thread is None or thread.ident is None:
        return ""
    frame = sys._current_frames().get(thread.ident)  # the interpreter's own view, read only
    ours = outside = first = None
    while frame is not None and ours is None:
        name = frame.f_code.co_filename
        here = f"{os.path.basename(name)}:{frame.f_lineno} in {frame.f_code.co_name}"
        first = first or here
        if name.startswith(_PACKAGE):
            ours = f"oomscope/{name[len(_PACKAGE):]}:{frame.f_lineno} in {frame.f_code.co_name}"
        elif outside is None and not name.startswith(_STDLIB):
            outside = here
        frame = frame.f_back
    return ours or outside or first or ""


class Watchdog:
    def __init__(self, grace_ns: int = STALL_GRACE_NS) -> None:
        self.grace_ns = grace_ns
        self.states: Dict[str, ThreadState] = {}
        #: (from ns, until ns or None while it lasts, thread): for the notes of kills meanwhile
        self.episodes: List[Tuple[int, Optional[int], str]] = []

    def check(self, now_ns: int, watched: Dict[str, Tuple[Optional[threading.Thread], Heartbeat]]) -> List[ThreadState]:
        """The threads whose state changed since the last call."""
        changed = []
        for name, (thread, beat) in watched.items():
            prev = self.states.get(name)
            if thread is not None and not thread.is_alive():
                state, since = "dead", beat.due_ns or now_ns
            elif beat.due_ns and now_ns - beat.due_ns > self.grace_ns:
                state, since = "stalled", beat.due_ns
            else:
                state, since = "running", now_ns
            if prev is None and state == "running":
                self.states[name] = ThreadState(name, state, since)
                continue
            if prev is not None and prev.state == state:
                continue
            ts = ThreadState(name, state, since, _where(thread) if state == "stalled" else "")
            self.states[name] = ts
            if state == "running":
                self.episodes = [(a, now_ns if b is None and n == name else b, n) for a, b, n in self.episodes]
            elif prev is None or prev.state == "running":
                self.episodes.append((since, None, name))
            self.episodes = self.episodes[-100:]
            changed.append(ts)
        return changed

    def stalled(self) -> List[str]:
        return sorted(n for n, s in self.states.items() if s.state != "running")

    def notes_for_kill(self, kill_ns: int) -> List[str]:
        out = []
        for since, until, name in self.episodes:
            if since <= kill_ns and (until is None or kill_ns <= until):
                out.append(f"The {name} thread of oomscope had stopped making progress when this kill was "
                           f"recorded: {SUPPLIES.get(name, 'what it reads is missing')}.")
        return out


def sentence(ts: ThreadState, now_ns: int) -> str:
    """The log line's words for a change of state."""
    if ts.state == "running":
        return f"the {ts.name} thread is making progress again"
    if ts.state == "dead":
        return f"the {ts.name} thread has died; {SUPPLIES.get(ts.name, '')}; kills are still recorded"
    return (f"the {ts.name} thread has made no progress for {(now_ns - ts.since_ns) / 1e9:.0f} s"
            + (f" (at {ts.where})" if ts.where else "")
            + f"; {SUPPLIES.get(ts.name, '')}; kills are still recorded")
