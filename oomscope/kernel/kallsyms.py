"""Kernel code addresses named from /proc/kallsyms, without holding the kernel's symbol table.

bcc's ``BPF.ksym`` loads the whole of /proc/kallsyms into a cache of its own the first time it is
asked and keeps it for the life of the process: on this project's host (121,520 symbols) that was a
12 MiB step in the recorder's resident memory at the first growth-site check that named a kernel
stack (bench/README.md, the soak). The growth-site checks name a few kernel frames at a time and
the same ones again (the page-fault and reclaim paths repeat), so here the names asked for are kept
(a bounded cache) and an address not seen before is named by one streaming pass over the file:
~0.1 s, nothing of the table kept.

/proc/kallsyms is the kernel's, not a workload's; it is still read bounded (lines and their count).
It is not sorted (modules' and BPF programs' symbols follow the core's), hence the pass below: each
symbol is offered to the smallest wanted address at or above it, then each wanted address takes the
highest symbol offered to it or to any smaller wanted address.
"""

from __future__ import annotations

import bisect
from typing import Dict, Iterable, List, Optional, Tuple

KALLSYMS = "/proc/kallsyms"
#: names kept at most; past it the cache starts again (a few hundred distinct frames are usual)
MAX_NAMES = 4096
#: a bound on the pass (the host's file has ~120,000 lines; 6.x kernels with many modules ~250,000)
MAX_LINES = 1 << 21
MAX_LINE = 512


class KernelSymbols:
    def __init__(self, path: str = KALLSYMS, max_names: int = MAX_NAMES):
        self.path = path
        self.max_names = max_names
        self._names: Dict[int, Optional[str]] = {}
        self.passes = 0

    def names(self, addrs: Iterable[int]) -> List[str]:
        """The function each address is in ("0x..." where none is known), in the order given."""
        addrs = list(addrs)
        unknown = sorted({a for a in addrs if a not in self._names})
        if unknown:
            if len(self._names) + len(unknown) > self.max_names:
                self._names.clear()
            self._names.update(self._resolve(unknown))
        return [self._names.get(a) or f"{a:#x}" for a in addrs]

    def _resolve(self, wanted: List[int]) -> Dict[int, Optional[str]]:
        self.passes += 1
        offered: List[Optional[Tuple[int, bytes]]] = [None] * len(wanted)
        try:
            with open(self.path, "rb") as f:
                for n, line in enumerate(f):
                    if n >= MAX_LINES:
                        break
                    sp = line.find(b" ", 0, 20)
                    if sp <= 0:
                        continue
                    try:
                        start = int(line[:sp], 16)
                    except ValueError:
                        continue
                    if start == 0:  # addresses hidden (kptr_restrict, not root): nothing to name
                        continue
                    i = bisect.bisect_left(wanted, start)
                    if i < len(wanted) and (offered[i] is None or offered[i][0] < start):
                        offered[i] = (start, line[:MAX_LINE])
        except OSError:
            return {a: None for a in wanted}
        out: Dict[int, Optional[str]] = {}
        best: Optional[Tuple[int, bytes]] = None
        for addr, cand in zip(wanted, offered):
            if cand is not None and (best is None or cand[0] > best[0]):
                best = cand
            out[addr] = _name(best[1]) if best is not None else None
        return out


def _name(line: bytes) -> Optional[str]:
    """'ffffffff81000080 T entry_SYSCALL_64\\n' -> 'entry_SYSCALL_64' (a module's: without [module])."""
    parts = line.split()
    if len(parts) < 3:
        return None
    return parts[2].decode("utf-8", "replace")
