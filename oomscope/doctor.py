"""``oomscope doctor``: can ``record`` run here, and if not, what fixes it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

from .kernel import headers, tracefs
from .kernel.cgroupfs import MemoryHierarchy
from .errors import OomscopeError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: Optional[str] = None
    required: bool = True


def run_checks(load_probe: bool = True) -> List[Check]:
    checks: List[Check] = []
    root = os.geteuid() == 0
    checks.append(Check("root", root, "running as root" if root else "not root: BPF, tracefs and /dev/kmsg need it",
                        "run with sudo"))
    bpf_ok = os.path.exists("/sys/kernel/btf/vmlinux") or os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled")
    checks.append(Check("bpf", bpf_ok, "the kernel has the bpf() syscall" if bpf_ok else "no sign of BPF support (CONFIG_BPF_SYSCALL)",
                        "use a kernel built with CONFIG_BPF_SYSCALL=y"))
    tfs = tracefs.find_tracefs()
    checks.append(Check("tracefs", tfs is not None, f"mounted at {tfs}" if tfs else "tracefs is not mounted",
                        "mount -t tracefs tracefs /sys/kernel/tracing"))
    mv = tracefs.tracepoint_fields("oom", "mark_victim", tfs) if tfs else None
    if mv is not None:
        names = ", ".join(f.name for f in mv)
        checks.append(Check("oom:mark_victim", True, f"fields: {names}"))
    else:
        checks.append(Check("oom:mark_victim", False, "tracepoint not found" if tfs else "cannot tell without tracefs",
                            "a kernel with CONFIG_TRACEPOINTS (and tracefs mounted)"))
    for cat, ev, why in (("oom", "finish_task_reaping", "when the oom_reaper freed the victim's memory"),
                         ("memcg", "mod_memcg_state", "6.13+: the kernel snapshot learns its statistics slots from it where "
                          "kallsyms does not show mem_cgroup_stats_index"),
                         ("vmscan", "mm_vmscan_memcg_reclaim_begin", "reclaim activity")):
        present = tfs is not None and tracefs.tracepoint_fields(cat, ev, tfs) is not None
        checks.append(Check(f"{cat}:{ev}", present, f"{'present' if present else 'absent'}: {why}", required=False))
    h = headers.find_headers()
    checks.append(Check("kernel headers", h.path is not None, h.how, "sudo ./setup.sh"))
    from .probes import bcc_location  # probes is the one module that imports bcc

    bcc_dir = bcc_location()
    bcc_ok = bcc_dir is not None
    if bcc_ok:
        checks.append(Check("bcc", True, f"python bcc from {bcc_dir}"))
    else:
        checks.append(Check("bcc", False, "python module bcc not importable", "apt-get install python3-bpfcc (then sudo ./setup.sh)"))
    try:
        hier = MemoryHierarchy.detect()
        checks.append(Check("memory cgroup", True, f"cgroup v{hier.version} at {hier.root}"))
    except OomscopeError as exc:
        checks.append(Check("memory cgroup", False, str(exc), "mount the memory controller (cgroup v1) or cgroup2 with memory"))
    kmsg_ok = os.access("/dev/kmsg", os.R_OK)
    checks.append(Check("/dev/kmsg", kmsg_ok, "readable: the kernel's OOM reports" if kmsg_ok else "not readable",
                        "run as root", required=False))
    try:
        with open("/proc/sys/vm/oom_dump_tasks") as f:
            dump = f.read().strip()
        checks.append(Check("vm.oom_dump_tasks", dump == "1", f"= {dump}: the kernel's report "
                            + ("lists the cgroup's tasks" if dump == "1" else "has no tasks table"),
                            "sysctl -w vm.oom_dump_tasks=1", required=False))
    except OSError:
        pass
    ready = all(c.ok for c in checks if c.required)
    if load_probe and ready and bcc_ok:
        from .probes import OomProbes
        try:
            probes = OomProbes(lambda ev: None, page_cnt=8)
            checks.append(Check("load BPF programs", True, "compiled and attached: " + " ".join(probes.cflags)))
            probes.close()
        except OomscopeError as exc:
            checks.append(Check("load BPF programs", False, str(exc), "sudo ./setup.sh"))
    return checks


def recorder_check(output: str) -> Check:
    """How a recorder writing to ``output`` is doing, from its recorder-status.json (record/status.py)."""
    from . import safefs
    from .record.status import MAX_STATUS_BYTES, STATUS_FILE, read_status

    try:
        with safefs.Dir(output) as d:
            data = d.read(STATUS_FILE, limit=MAX_STATUS_BYTES)
    except FileNotFoundError:
        return Check("recorder", False, f"no {STATUS_FILE} in {output}: no recorder has written there", required=False)
    except (OSError, OomscopeError) as exc:
        return Check("recorder", False, f"{STATUS_FILE} in {output} not readable ({exc})", required=False)
    ok, line = read_status(data)
    return Check("recorder", ok, line, None if ok else "see record's log (journalctl -u oomscope); restart it", required=False)


def record_can_run(checks: List[Check]) -> bool:
    return all(c.ok for c in checks if c.required)
