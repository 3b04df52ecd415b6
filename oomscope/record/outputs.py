"""What one recorded kill leaves on disk: its capture (capture/writer.py), written here, by the
recorder, before anything else; its post-mortem and the output folder's index, done by a Finisher
(postmortem/finisher.py: in a worker process when record runs); the rewrite of its memory.oom.group's
first capture; each workload's disk budget and retention (record/retention.py: both share the
output folder out by workload, from a ledger of its kill folders read at the first write).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, TextIO, Tuple

from ..kernel.oom_report import OomReport
from ..capture.groups import GroupLinker, Head
from ..capture.writer import write_capture
from ..model import Capture
from ..postmortem.finisher import HTML, Finisher
from ..safefs import Dir, Syncer, atomic_write
from .budget import workload_key
from .retention import Ledger, Retention


@dataclass
class Written:
    capture_path: str
    html_path: Optional[str] = None  # set once the post-mortem is rendered
    render_error: Optional[str] = None
    job: int = 0  # the Finisher's job rendering its post-mortem


class Outputs:
    def __init__(self, out_dir: str, finisher: Finisher, retention: Optional[Retention], err: TextIO,
                 disk_budget: Optional[int] = None, syncer: Optional[Syncer] = None, max_disk: Optional[int] = None):
        self.out_dir = out_dir
        #: takes each capture's fsyncs beside record's loop (record: ``synced`` says when they are
        #: done); None: each capture is on disk when ``write`` returns
        self.syncer = syncer
        self.finisher = finisher
        self.retention = retention
        self.err = err
        self.groups = GroupLinker()
        #: the most bytes one workload's kill folders may take (record --workload-disk; None: no limit)
        self.disk_budget = disk_budget
        #: the most bytes all kill folders may take (record --max-disk; None: no limit)
        self.max_disk = max_disk
        #: the kill folders by workload (when either limit is set): read now, at record's start, not
        #: at its first kill, which waited for it: it reads every capture of the folder (2000 kill
        #: folders ~1 s, bench/README.md, issue 29); at the first write if it could not be read now
        self.ledger: Optional[Ledger] = None
        if retention is not None or disk_budget or max_disk:
            try:
                with Dir(out_dir) as out:
                    self.ledger = Ledger.read(out)
            except FileNotFoundError:  # made by the first write: nothing in it yet
                self.ledger = Ledger()
            except OSError:
                pass

    def head_for(self, report: Optional[OomReport], kill_ns: int) -> Tuple[Optional[Head], Optional[str]]:
        """A member of a memory.oom.group kill: the group's first victim (written already, with the
        kernel's report for the whole group), and the group's cgroup."""
        group = report.group_kill_cgroup if report is not None and not report.has_header else None
        if group is None:
            return None, None
        return self.groups.head_for(group, kill_ns), group

    def write(self, capture: Capture, kill_ns: int, head: Optional[Head] = None, group: Optional[str] = None) -> Written:
        """Writes the capture, and asks for its post-mortem (``Written.job``)."""
        if head is not None:
            self.groups.link(head, capture, group)
        # one line, by json's C encoder: indented, the pure-Python encoder took 1.6 ms of record's
        # loop a kill (0.3 ms: a 28 KiB capture, quiet; issue 29), which a storm's kills queue behind
        capture_path = write_capture(self.out_dir, capture, indent=None, syncer=self.syncer)
        self.groups.note_written(Head(capture, capture_path, os.path.join(os.path.dirname(capture_path), HTML), kill_ns,
                                      capture.at_kill_sources.get("kernel_report")))
        job = self.finisher.kill(capture_path, capture)
        if head is not None:
            # The first victim's capture and post-mortem, again, now listing every victim.
            atomic_write(head.capture_path, head.capture.to_json(None))
            self.finisher.rerender(head.capture_path, head.capture)
        if self.retention is not None or self.disk_budget or self.max_disk:
            self._share(capture, capture_path)
        return Written(capture_path, job=job)

    def synced(self, written: Written, timeout_s: float = 0.0) -> Tuple[bool, Optional[OSError]]:
        """Whether the capture's fsyncs are done (waiting up to ``timeout_s``), and their error once."""
        return (True, None) if self.syncer is None else self.syncer.done(written.capture_path, timeout_s)

    def _share(self, capture: Capture, capture_path: str) -> None:
        """The workload's disk budget, then --keep, then --max-disk, each taking from the workloads
        that hold most."""
        if self.ledger is None:
            with Dir(self.out_dir) as out:
                self.ledger = Ledger.read(out)
        key = workload_key(capture.workload, capture.cgroup)
        self.ledger.add(os.path.basename(os.path.dirname(capture_path)), key)
        removed = self.ledger.trim(self.out_dir, key, self.disk_budget) if self.disk_budget else []
        if self.retention is not None:
            removed += self.retention.prune(self.out_dir, keep={os.path.dirname(capture_path)}, ledger=self.ledger)
        if self.max_disk:
            removed += self.ledger.trim_total(self.out_dir, self.max_disk, keep={os.path.basename(os.path.dirname(capture_path))})
        for folder in removed:
            self.finisher.remove(folder)
