"""`record --keep N|Nd`: prune old post-mortems, newest kept.

Only kill folders are touched (a folder holding capture.json), and only the files oomscope
writes in them; a folder with anything else in it is emptied of ours and left in place.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional

from ..errors import OomscopeError

OURS = ("capture.json", "postmortem.html")


@dataclass
class Retention:
    count: Optional[int] = None
    max_age_s: Optional[float] = None

    @classmethod
    def parse(cls, text: str) -> "Retention":
        t = text.strip().lower()
        try:
            if t.endswith("d"):
                days = float(t[:-1])
                if days <= 0:
                    raise ValueError
                return cls(max_age_s=days * 86400)
            n = int(t)
            if n < 1:
                raise ValueError
            return cls(count=n)
        except ValueError:
            raise OomscopeError(f"--keep must be a number of post-mortems (100) or of days (7d), not {text!r}") from None

    def prune(self, out_dir: str, keep: Iterable[str] = (), now: Optional[float] = None) -> List[str]:
        """Removes the kill folders beyond the limit; returns their names."""
        now = time.time() if now is None else now
        keep = {os.path.abspath(k) for k in keep}
        folders = []
        for cap in glob.glob(os.path.join(out_dir, "*", "capture.json")):
            folder = os.path.dirname(cap)
            try:
                folders.append((os.stat(cap).st_mtime, folder))
            except OSError:
                continue
        folders.sort(reverse=True)  # newest first
        doomed = []
        for i, (mtime, folder) in enumerate(folders):
            if os.path.abspath(folder) in keep:
                continue
            if (self.count is not None and i >= self.count) or (self.max_age_s is not None and now - mtime > self.max_age_s):
                doomed.append(folder)
        removed = []
        for folder in doomed:
            for name in OURS:
                try:
                    os.unlink(os.path.join(folder, name))
                except FileNotFoundError:
                    pass
                except OSError:
                    break
            try:
                os.rmdir(folder)
            except OSError:
                pass  # something else lives there: leave it
            removed.append(os.path.basename(folder))
        return removed
