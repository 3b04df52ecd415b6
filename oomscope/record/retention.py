"""`record --keep N|Nd`: prune old post-mortems, newest kept.

Only kill folders are touched: real folders (never a link) of ours holding the marker oomscope
writes when it makes one (safefs.MARKER), not folders that merely hold a capture.json; and only
the files oomscope writes in them: a folder with anything else in it is emptied of ours and left
in place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional

from ..errors import OomscopeError
from ..safefs import Dir


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
        keep = {os.path.basename(os.path.abspath(k)) for k in keep}
        try:
            out = Dir(out_dir)
        except FileNotFoundError:
            return []
        with out:
            folders = sorted(((t, name) for name, t in out.kill_folders()), reverse=True)  # newest first
            removed = []
            for i, (mtime, name) in enumerate(folders):
                if name in keep:
                    continue
                if (self.count is not None and i >= self.count) or (self.max_age_s is not None and now - mtime > self.max_age_s):
                    if out.remove_kill_folder(name):
                        removed.append(name)
        return removed
