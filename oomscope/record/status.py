"""record's own state, for ``oomscope doctor``: ``recorder-status.json`` in the output folder,
rewritten (atomically, never through a link: safefs) when a thread stalls or recovers and every
STATUS_EVERY_NS otherwise. doctor reads it back: a file older than STALE_S is a recorder that has
stopped (or hangs as a whole), and each of its threads says whether it makes progress."""

from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional, Tuple

STATUS_FILE = "recorder-status.json"
STATUS_EVERY_NS = 10_000_000_000
STALE_S = 60.0
MAX_STATUS_BYTES = 64 * 1024


def status_document(threads: Dict[str, Tuple[str, float, str]], kills_recorded: int,
                    losses: Dict[str, int], now_unix: Optional[float] = None) -> str:
    """``threads``: name -> (state, seconds in that state, where a stalled one is)."""
    return json.dumps({
        "pid": os.getpid(),
        "updated_unix": round(time.time() if now_unix is None else now_unix, 3),
        "threads": {n: {"state": s, "for_s": round(d, 1), "where": w} for n, (s, d, w) in sorted(threads.items())},
        "kills_recorded": kills_recorded,
        "losses": losses,
    }, ensure_ascii=True) + "\n"


def read_status(data: bytes, now_unix: Optional[float] = None) -> Tuple[bool, str]:
    """(all well, one line) from a status file's bytes. Anything odd is said, never raised."""
    now = time.time() if now_unix is None else now_unix
    try:
        doc = json.loads(data[:MAX_STATUS_BYTES])
        pid = int(doc["pid"])
        age = now - float(doc["updated_unix"])
        threads = doc.get("threads") or {}
        bad: List[str] = [f"{n} {t.get('state')} for {float(t.get('for_s', 0)):.0f} s"
                          + (f" at {t.get('where')}" if t.get("where") else "")
                          for n, t in sorted(threads.items())[:8] if t.get("state") != "running"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, "the recorder's status file is not one record wrote"
    if age > STALE_S:
        return False, f"the recorder (pid {pid}) last wrote its status {age:.0f} s ago: stopped, or hung as a whole"
    if bad:
        return False, f"the recorder (pid {pid}) runs, but its " + "; ".join(bad) + ": kills are still recorded"
    return True, (f"the recorder (pid {pid}) runs, its threads make progress "
                  f"({', '.join(sorted(threads)) or 'none'}); {int(doc.get('kills_recorded', 0))} kills recorded")
