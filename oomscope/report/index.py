"""``index.html`` of an output folder: every kill, newest first, linking to its post-mortem."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..analysis.attribution import analyse
from ..analysis.result import KillAnalysis
from ..errors import OomscopeError
from ..model import Capture
from ..safefs import Dir
from ..units import fmt_bytes
from .render import _env


@dataclass
class IndexRow:
    kill_id: str
    when: str
    victim: str
    cgroup: str
    usage: str
    limit: str
    categories: str
    incident: str
    href: str
    host: str = ""
    #: the workload in its own words: namespace/pod and container, a docker container, a unit
    workload: str = ""


def row_for(capture: Capture, analysis: Optional[KillAnalysis] = None) -> IndexRow:
    """The index's row; the kill's analysis when the caller has it (record), else the attribution
    alone, which is all a row shows (a capture read from disk)."""
    try:
        cats = ", ".join((analysis or analyse(capture)).top_categories)
    except Exception:  # noqa: BLE001 - one odd capture must not cost the index
        cats = ""
    cg = capture.cgroup
    return IndexRow(
        kill_id=capture.kill_id,
        when=capture.times.kill_wall or "",
        victim=f"{capture.victim.pid} ({capture.victim.comm})",
        cgroup=cg.task_memcg or cg.oom_memcg or "?",
        usage=fmt_bytes(capture.at_kill.usage_bytes),
        limit=fmt_bytes(capture.at_kill.limit_bytes) if capture.at_kill.limit_bytes is not None else "none",
        categories=cats,
        incident=capture.incident.id if capture.incident and capture.incident.id != capture.kill_id else "",
        href=f"{capture.kill_id}/postmortem.html",
        host=capture.host.hostname or "",
        workload=_short_workload(capture),
    )


def _short_workload(capture: Capture) -> str:
    """The workload in an index cell: a pod by its name (a UID only as its first 8 digits)."""
    w = capture.workload
    if w.kind != "kubernetes":
        return w.label()
    pod = f"{w.namespace}/{w.pod}" if w.pod else f"pod {(w.pod_uid or '?')[:8]}…"
    return f"{pod}, {w.container or (w.container_id or '?')[:12]}"


class OutputIndex:
    """Keeps one row per kill folder of ``out_dir`` and writes index.html."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.rows: Dict[str, IndexRow] = {}
        #: kill folders whose capture could not be read: (folder, one-line reason)
        self.skipped: List[Tuple[str, str]] = []
        try:
            out = Dir(out_dir)
        except FileNotFoundError:
            return
        with out:
            for name, _ in out.kill_folders():
                # One capture is read at a time and any failure costs only that one row: a capture
                # planted or damaged in the output folder must not stop record or import.
                try:
                    with out.subdir(name) as folder:
                        cap = Capture.from_json(folder.read("capture.json").decode("utf-8"))
                    self._add(name, cap)
                except FileNotFoundError:
                    continue
                except (OSError, UnicodeDecodeError) as exc:
                    self.skipped.append((name, getattr(exc, "strerror", None) or str(exc)))
                except OomscopeError as exc:
                    self.skipped.append((name, str(exc)))
                except Exception as exc:  # noqa: BLE001 - any other failure of one capture
                    self.skipped.append((name, f"{type(exc).__name__}: {exc}"))

    def _add(self, folder: str, capture: Capture, analysis: Optional[KillAnalysis] = None) -> None:
        try:
            row = row_for(capture, analysis)
        except Exception:  # noqa: BLE001 - one odd capture gets a row of what is certain
            row = IndexRow(kill_id=str(capture.kill_id), when=str(capture.times.kill_wall or ""), victim=f"{capture.victim.pid}",
                           cgroup="?", usage="?", limit="?", categories="", incident="", href="")
        row.href = f"{folder}/postmortem.html"
        self.rows[folder] = row

    def remove(self, folder: str) -> None:
        self.rows.pop(folder, None)

    def add(self, capture_path: str, capture: Capture, analysis: Optional[KillAnalysis] = None) -> None:
        self._add(os.path.basename(os.path.dirname(capture_path)), capture, analysis)

    def render(self) -> str:
        rows: List[IndexRow] = sorted(self.rows.values(), key=lambda r: r.when, reverse=True)
        return _env().get_template("index.html.j2").render(rows=rows)

    def write(self, atomic_write=None) -> Optional[str]:
        """Writes index.html (through safefs; ``atomic_write`` is kept for its callers)."""
        with Dir(self.out_dir, create=True) as out:
            return out.write("index.html", self.render())
