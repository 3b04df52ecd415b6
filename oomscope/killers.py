"""User-space OOM killers: who they are, their rules, and whether a kill was a memory kill (pure).

A SIGKILL or SIGTERM one process sends another (bpf/signal_kills.c) is a *memory kill* when the
target's cgroup or the host was under memory pressure (``PRESSURE_RULES``), or when the sender is
a killer oomscope knows. Anything else (``kill -9`` from a shell, a deploy script, a supervisor
stopping its child with memory to spare) is not a memory post-mortem.

How each known killer is recognised, the executable first (its path's last component, read from
/proc/<pid>/exe; a comm is the process's own to set, so a comm that names a killer while the
executable is something else is not trusted), the comm (15 characters) when the executable cannot
be read:

=================  ===============================================  ==========================
killer             executable (basename)                            comm
=================  ===============================================  ==========================
earlyoom           ``earlyoom``                                     ``earlyoom``
systemd-oomd       ``systemd-oomd`` (/usr/lib/systemd/systemd-oomd)  ``systemd-oomd``
oomd (Meta)        ``oomd``                                         ``oomd``
kubelet            ``kubelet``                                      ``kubelet``
kubelet, through   ``runc``, ``crun``, ``youki``, ``conmon``,       the same, and
its runtime        ``containerd``, ``containerd-shim*``, ``crio``   ``containerd-shim`` (cut)
=================  ===============================================  ==========================

A container runtime stops containers for many reasons (a deploy, a liveness probe): its signal is
the kubelet's eviction only when the target runs under ``kubepods`` *and* memory pressure was met;
otherwise it is no memory kill. The others kill for memory only.

The rules read here: earlyoom's command line (``-m/-s/-M/-S``, defaults from earlyoom 1.7's
manual), systemd-oomd's ``oomd.conf`` and the units' ``ManagedOOM*`` settings (unit files and
drop-ins), the kubelet's eviction thresholds (``--eviction-hard`` or its ``--config`` file). Text
in, records out: record/userkill.py reads the files.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .model import KillPressure

__all__ = ["KNOWN", "PRESSURE_RULES", "Pressure", "Decision", "recognise", "classify", "EarlyoomRule",
           "earlyoom_rule", "OomdConf", "parse_oomd_conf", "parse_managed_oom", "kubelet_eviction",
           "parse_size", "signal_name"]

KNOWN = ("earlyoom", "systemd-oomd", "oomd", "kubelet")
RUNTIMES = ("runc", "crun", "youki", "conmon", "containerd", "crio", "cri-o")

#: oomscope's own test of "under memory pressure", each with why:
#: - the cgroup at 90% or more of its limit (memory.max, or the nearest limited ancestor's), or at
#:   its memory.high: the kernel reclaims there, and a kernel OOM kill is a few allocations away;
#: - the cgroup's PSI (v2 memory.pressure) some avg10 >= 10%: a tenth of the last 10 s some task
#:   waited for memory (systemd-oomd's default limit is 60% over 30 s; 10% is well before it, and
#:   far above an idle cgroup's 0-1%); full avg10 >= 5%: every task stalled at once, 0.5 s of 10;
#: - the host's MemAvailable at or below 10% of MemTotal: earlyoom's default threshold.
#: The host's PSI (/proc/pressure/memory) is recorded, never a rule: it counts every task stalled
#: anywhere, a single cgroup reclaiming at its own limit included (measured here: an OOM storm in
#: one 96 MiB cgroup took the host's some avg10 to 25% with 20 GiB free), so it says nothing of a
#: process in another cgroup.
PRESSURE_RULES = {"cgroup_ratio": 0.9, "psi_some_avg10": 10.0, "psi_full_avg10": 5.0, "available_ratio": 0.10}
MAX_ARGS = 4096  # a command line's arguments looked at (a hostile one may hold a million)
MAX_TEXT = 1 << 16  # a config file's characters looked at


def signal_name(sig: int) -> str:
    return {9: "SIGKILL", 15: "SIGTERM"}.get(sig, f"signal {sig}")


def _base(path: Optional[str]) -> str:
    if not path:
        return ""
    path = path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path
    return os.path.basename(path)


def _is_runtime(name: str) -> bool:
    return name in RUNTIMES or name.startswith("containerd-shim")


def recognise(comm: str, exe: Optional[str]) -> Tuple[Optional[str], str]:
    """(the known killer's name, or None; how it was recognised). The kubelet's runtime is
    "runtime" here: classify() decides whether it acted for the kubelet."""
    base = _base(exe)
    if base:
        if base in KNOWN:
            return base, f"its executable {exe}"
        if _is_runtime(base):
            return "runtime", f"its executable {exe} (a container runtime)"
        if comm in KNOWN or _is_runtime(comm):
            return None, f"its comm {comm!r} names a killer but its executable is {exe}: not trusted"
        return None, ""
    if comm in KNOWN:
        return comm, f"its comm {comm!r} (its executable could not be read)"
    if _is_runtime(comm):
        return "runtime", f"its comm {comm!r} (a container runtime; its executable could not be read)"
    return None, ""


Pressure = KillPressure  # the model's record (model.py), the rules on it here


def met_rules(p: KillPressure, host_only: bool = False) -> List[str]:
    """Each pressure rule this reading meets, in words with its figures (``host_only``: the host's)."""
    out = []
    r = None if host_only else p.cgroup_ratio
    if r is not None and r >= PRESSURE_RULES["cgroup_ratio"]:
        out.append(f"the cgroup {p.limit_cgroup or p.cgroup} at {r:.0%} of its limit "
                   f"({_mib(p.cgroup_usage_bytes)} of {_mib(p.cgroup_limit_bytes)})")
    if (not host_only and p.cgroup_high_bytes is not None and p.cgroup_usage_bytes is not None
            and p.cgroup_usage_bytes >= p.cgroup_high_bytes):
        out.append(f"the cgroup at its memory.high ({_mib(p.cgroup_usage_bytes)} of {_mib(p.cgroup_high_bytes)})")
    if not host_only:
        some, full = p.cgroup_psi.get("some_avg10"), p.cgroup_psi.get("full_avg10")
        if some is not None and some >= PRESSURE_RULES["psi_some_avg10"]:
            out.append(f"the cgroup's memory PSI some avg10 {some:.1f}%")
        if full is not None and full >= PRESSURE_RULES["psi_full_avg10"]:
            out.append(f"the cgroup's memory PSI full avg10 {full:.1f}%")
    a = p.available_ratio
    if a is not None and a <= PRESSURE_RULES["available_ratio"]:
        out.append(f"the host's MemAvailable {_mib(p.mem_available_bytes)}, {a:.1%} of {_mib(p.mem_total_bytes)}")
    return out


def _mib(n: Optional[int]) -> str:
    return "?" if n is None else f"{n / 1048576:.1f} MiB"


@dataclass
class Decision:
    """Whether a user-space kill is a memory kill, and why."""

    memory_kill: bool
    killer: Optional[str]  # earlyoom, systemd-oomd, oomd, kubelet; None: no killer oomscope knows
    how: str  # how the killer was recognised ("" when it was not)
    met: List[str]  # the pressure rules met
    why: str  # in words


def _same_subtree(a: Optional[str], b: Optional[str]) -> bool:
    if not a or not b or a == "/" or b == "/":
        return False
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def classify(comm: str, exe: Optional[str], pressure: Pressure, target_cgroup: Optional[str],
             sender_cgroup: Optional[str] = None) -> Decision:
    """A memory kill: a known killer's, or any sender's under memory pressure; a container runtime
    counts as the kubelet's only for a target under kubepods. A sender in the target's own cgroup
    subtree (a parent ending its workers, a shell its jobs, inside one container) is the workload's
    own doing: for it only the host's pressure counts, its cgroup's limit is the kernel's to enforce."""
    name, how = recognise(comm, exe)
    inside = name is None and _same_subtree(sender_cgroup, target_cgroup)
    met = met_rules(pressure, host_only=inside)
    if name == "runtime":
        in_pods = bool(target_cgroup) and "kubepods" in target_cgroup
        if in_pods and met:
            return Decision(True, "kubelet", how + ", on behalf of the kubelet (the target runs under kubepods)", met,
                            "the kubelet's eviction, carried out by its container runtime, under memory pressure")
        name = None
        how = how + (": its target is no Kubernetes pod's" if not in_pods else ": with no memory pressure, not an eviction")
    if name is not None:
        return Decision(True, name, how, met, f"sent by {name}, a user-space OOM killer")
    if met:
        return Decision(True, None, how, met, "sent under memory pressure")
    if inside:
        return Decision(False, None, how, met, "sent from inside the target's own cgroup, with the host under no pressure")
    return Decision(False, None, how, met, "no known killer and no memory pressure")


# --- earlyoom ---

@dataclass
class EarlyoomRule:
    """earlyoom's thresholds (earlyoom 1.7, earlyoom(1)): SIGTERM once MemAvailable *and* free
    swap are both at or below their minimum, SIGKILL below the kill minimum (default: half).
    Percentages of total; ``None`` sizes: not given."""

    mem_term_pct: float = 10.0
    mem_kill_pct: Optional[float] = None  # None: mem_term_pct / 2
    swap_term_pct: float = 10.0
    swap_kill_pct: Optional[float] = None
    mem_term_kib: Optional[float] = None  # -M: SIZE[,KILL_SIZE] in KiB; the lower of -m and -M is used
    mem_kill_kib: Optional[float] = None
    swap_term_kib: Optional[float] = None
    swap_kill_kib: Optional[float] = None
    mem_pct_given: bool = False
    swap_pct_given: bool = False
    dryrun: bool = False
    given: List[str] = field(default_factory=list)  # the options read, as given (for the report)

    def effective(self, mem_total: Optional[int], swap_total: Optional[int]) -> Dict[str, float]:
        """The percentages earlyoom acts at: -M/-S converted with the totals; with both -m and -M
        given, the lower (earlyoom(1)); -M alone replaces -m's default."""
        def pick(pct: float, kill: Optional[float], pct_given: bool, kib: Optional[float], kill_kib: Optional[float],
                 total: Optional[int]) -> Tuple[float, float]:
            term = pct
            kill = kill if kill is not None else pct / 2
            if kib is not None and total:
                k_term, k_kill = 100.0 * kib * 1024 / total, 100.0 * (kill_kib if kill_kib is not None else kib / 2) * 1024 / total
                term, kill = (min(term, k_term), min(kill, k_kill)) if pct_given else (k_term, k_kill)
            return min(term, 100.0), min(kill, 100.0)
        mt, mk = pick(self.mem_term_pct, self.mem_kill_pct, self.mem_pct_given, self.mem_term_kib, self.mem_kill_kib, mem_total)
        st, sk = pick(self.swap_term_pct, self.swap_kill_pct, self.swap_pct_given, self.swap_term_kib, self.swap_kill_kib,
                      swap_total)
        return {"mem_term_pct": mt, "mem_kill_pct": mk, "swap_term_pct": st, "swap_kill_pct": sk}

    def words(self, mem_total: Optional[int], swap_total: Optional[int]) -> str:
        e = self.effective(mem_total, swap_total)
        text = (f"earlyoom sends SIGTERM when MemAvailable is at or below {e['mem_term_pct']:.1f}% of RAM and free swap at or "
                f"below {e['swap_term_pct']:.1f}% of swap, SIGKILL below {e['mem_kill_pct']:.1f}% and {e['swap_kill_pct']:.1f}%")
        text += f" (options: {' '.join(self.given)})" if self.given else " (its defaults: -m 10 -s 10)"
        if self.dryrun:
            text += "; --dryrun was given, yet a kill was seen"
        return text


def _pct_pair(value: str) -> Optional[Tuple[float, Optional[float]]]:
    first, _, second = value.partition(",")
    a = _num(first, 0.0, 100.0)
    if a is None:
        return None
    b = _num(second, 0.0, 100.0) if second else None
    return a, b


def _num(text: str, lo: float, hi: float) -> Optional[float]:
    text = text.strip()
    if not text or len(text) > 32:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) and lo <= v <= hi else None


def earlyoom_rule(argv: List[str]) -> EarlyoomRule:
    """earlyoom's thresholds from its argv (``argv[0]`` the program). Unknown options and bad
    values are skipped (earlyoom itself would have refused to start with them)."""
    rule = EarlyoomRule()
    args = list(argv[1:MAX_ARGS])
    takes_value = {"-m", "-s", "-M", "-S", "-N", "-r", "--prefer", "--avoid", "--ignore", "-t"}
    i = 0
    while i < len(args):
        a = args[i]
        opt, value = a, None
        if a.startswith("--"):
            opt, eq, v = a.partition("=")
            value = v if eq else None
        elif a.startswith("-") and len(a) > 2:
            opt, value = a[:2], a[2:]
        if value is None and opt in takes_value:
            i += 1
            value = args[i] if i < len(args) else None
        i += 1
        if opt == "--dryrun":
            rule.dryrun = True
            rule.given.append(opt)
        if value is None or opt not in ("-m", "-s", "-M", "-S") or value.count(",") > 1:
            continue
        if opt in ("-m", "-s"):
            pair = _pct_pair(value)
            if pair is None:
                continue
            if opt == "-m":
                (rule.mem_term_pct, rule.mem_kill_pct), rule.mem_pct_given = pair, True
            else:
                (rule.swap_term_pct, rule.swap_kill_pct), rule.swap_pct_given = pair, True
        else:
            first, _, second = value.partition(",")
            a_kib = _num(first, 0.0, 2.0 ** 60)
            if a_kib is None:
                continue
            b_kib = _num(second, 0.0, 2.0 ** 60) if second else None
            if opt == "-M":
                rule.mem_term_kib, rule.mem_kill_kib = a_kib, b_kib
            else:
                rule.swap_term_kib, rule.swap_kill_kib = a_kib, b_kib
        rule.given.append(f"{opt} {value[:40]}")
    return rule


def earlyoom_met(rule: EarlyoomRule, p: Pressure) -> Optional[str]:
    """Which of earlyoom's thresholds the host's memory met, in words (None: unknown)."""
    a, s = p.available_ratio, p.swap_free_ratio
    if a is None:
        return None
    e = rule.effective(p.mem_total_bytes, p.swap_total_bytes)
    swap = ("no swap (earlyoom counts its free swap as 0%)" if not p.swap_total_bytes else
            f"free swap {100 * s:.1f}%" if s is not None else "free swap unknown")
    at = ("its SIGKILL threshold" if 100 * a <= e["mem_kill_pct"] and (s is None or 100 * s <= e["swap_kill_pct"]) else
          "its SIGTERM threshold" if 100 * a <= e["mem_term_pct"] and (s is None or 100 * s <= e["swap_term_pct"]) else
          "neither threshold (as read by oomscope)")
    return f"MemAvailable {100 * a:.1f}% of RAM, {swap}: {at}"


# --- systemd-oomd ---

@dataclass
class OomdConf:
    """/etc/systemd/oomd.conf's [OOM] section (systemd 252 defaults, oomd.conf(5))."""

    swap_used_limit: str = "90%"
    default_memory_pressure_limit: str = "60%"
    default_memory_pressure_duration: str = "30s"
    read_from: List[str] = field(default_factory=list)


_KEY = re.compile(r"^\s*([A-Za-z]+)\s*=\s*(.*?)\s*$")


def _ini(text: str, sections: Tuple[str, ...]) -> Dict[str, str]:
    """key=value lines of the given sections (systemd's syntax: the last assignment wins)."""
    out: Dict[str, str] = {}
    section = ""
    for line in text[:MAX_TEXT].split("\n"):
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
            continue
        if section in sections:
            m = _KEY.match(line)
            if m:
                out[m.group(1)] = m.group(2)[:100]
    return out


def parse_oomd_conf(texts: List[Tuple[str, str]]) -> OomdConf:
    """oomd.conf then its drop-ins, in order: (path, text)."""
    conf = OomdConf()
    for path, text in texts:
        kv = _ini(text, ("OOM",))
        if "SwapUsedLimit" in kv:
            conf.swap_used_limit = kv["SwapUsedLimit"]
        if "DefaultMemoryPressureLimit" in kv:
            conf.default_memory_pressure_limit = kv["DefaultMemoryPressureLimit"]
        if "DefaultMemoryPressureDurationSec" in kv:
            conf.default_memory_pressure_duration = kv["DefaultMemoryPressureDurationSec"]
        conf.read_from.append(path)
    return conf



_MANAGED_VALUES = {
    "ManagedOOMSwap": re.compile(r"^(auto|kill)$"),
    "ManagedOOMMemoryPressure": re.compile(r"^(auto|kill)$"),
    "ManagedOOMMemoryPressureLimit": re.compile(r"^[0-9]{1,3}(\.[0-9]{1,2})?%$"),
    "ManagedOOMMemoryPressureDurationSec": re.compile(r"^[0-9a-z ]{1,24}$"),
    "ManagedOOMPreference": re.compile(r"^(none|avoid|omit)$"),
}


def parse_managed_oom(texts: List[Tuple[str, str]]) -> Dict[str, str]:
    """A unit's ManagedOOM* settings from its file then its drop-ins: (path, text), in order.
    A value systemd would refuse is left out."""
    out: Dict[str, str] = {}
    for _path, text in texts:
        kv = _ini(text, ("Slice", "Service", "Scope", "Unit"))
        out.update({k: v for k, v in kv.items() if k in _MANAGED_VALUES and _MANAGED_VALUES[k].match(v)})
    return out


def oomd_words(unit: Optional[str], managed: Dict[str, str], conf: OomdConf) -> str:
    if not managed:
        return ("systemd-oomd kills within cgroups whose unit sets ManagedOOMSwap= or ManagedOOMMemoryPressure=kill; "
                f"none was readable for this one (oomd.conf: SwapUsedLimit={conf.swap_used_limit}, "
                f"DefaultMemoryPressureLimit={conf.default_memory_pressure_limit} over {conf.default_memory_pressure_duration})")
    parts = []
    if managed.get("ManagedOOMMemoryPressure") == "kill":
        limit = managed.get("ManagedOOMMemoryPressureLimit") or conf.default_memory_pressure_limit
        dur = managed.get("ManagedOOMMemoryPressureDurationSec") or conf.default_memory_pressure_duration
        parts.append(f"ManagedOOMMemoryPressure=kill: its cgroup's memory PSI full above {limit} for {dur}")
    if managed.get("ManagedOOMSwap") == "kill":
        parts.append(f"ManagedOOMSwap=kill: the host's swap more than {conf.swap_used_limit} used")
    if not parts:
        parts.append(", ".join(f"{k}={v}" for k, v in managed.items()))
    return f"systemd-oomd, by {unit or 'its unit'}'s settings: " + "; ".join(parts)


# --- the kubelet ---

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]i?|[kmgtpe])?\s*$")
_MULT = {"": 1, "k": 1000, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4, "P": 1000 ** 5, "E": 1000 ** 6,
         "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4, "Pi": 1024 ** 5, "Ei": 1024 ** 6}


def parse_size(text: str) -> Optional[int]:
    """A Kubernetes quantity (100Mi, 1G, 512) in bytes; None for anything else."""
    if len(text) > 40:
        return None
    m = _SIZE.match(text)
    if not m:
        return None
    unit = m.group(2) or ""
    mult = _MULT.get(unit) or _MULT.get(unit.upper())
    return int(float(m.group(1)) * mult) if mult else None


def kubelet_eviction(argv: List[str], config_text: Optional[str]) -> Dict[str, str]:
    """The kubelet's memory.available eviction thresholds: {"hard": "100Mi", "soft": ...}. Flags
    override the config file, as the kubelet does; the default hard threshold is 100Mi."""
    out: Dict[str, str] = {}
    if config_text:
        block = ""
        for line in config_text[:MAX_TEXT].split("\n"):
            if line and not line[0].isspace():
                block = line.split(":", 1)[0].strip()
                continue
            key, _, value = line.strip().partition(":")
            if key.strip("\"'") == "memory.available" and block in ("evictionHard", "evictionSoft"):
                out["hard" if block == "evictionHard" else "soft"] = value.strip().strip("\"'")[:40]
    for a in argv[1:MAX_ARGS]:
        for flag, kind in (("--eviction-hard=", "hard"), ("--eviction-soft=", "soft")):
            if a.startswith(flag):
                for item in a[len(flag):].split(","):
                    k, op, v = item.partition("<")
                    if k.strip() == "memory.available" and op:
                        out[kind] = v.strip()[:40]
    out.setdefault("hard", "100Mi (the kubelet's default)")
    return out


def config_path(argv: List[str]) -> Optional[str]:
    """The kubelet's --config file."""
    args = argv[1:MAX_ARGS]
    for i, a in enumerate(args):
        if a.startswith("--config="):
            return a[len("--config="):] or None
        if a == "--config" and i + 1 < len(args):
            return args[i + 1]
    return None
