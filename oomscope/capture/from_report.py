"""What the kernel's OOM report says, as the model's parts: the cgroup's state, the host's memory
(a global OOM's Mem-Info) and the tasks table, in bytes with the kill host's page size."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..kernel.cgroupfs import limit_or_none
from ..kernel.oom_report import OomReport
from ..model import CgroupState, Source, Task
from .inputs import PAGE_SIZE


def state_from_report(rep: OomReport, source: Source = Source.KERNEL_REPORT) -> Optional[CgroupState]:
    if rep.memory is None and not rep.memory_stat:
        return None
    st = CgroupState(source=source, cgroup=rep.stats_cgroup, memory_stat=dict(rep.memory_stat), age_ms=0.0)
    if rep.memory is not None:
        st.usage_bytes = rep.memory.usage_kb * 1024
        st.limit_bytes = limit_or_none(rep.memory.limit_kb * 1024)
        st.failcnt = rep.memory.failcnt
    if rep.kmem is not None:
        st.kmem_usage_bytes = rep.kmem.usage_kb * 1024
    if rep.swap is not None:  # cgroup v2 prints swap on its own
        st.swap_usage_bytes = rep.swap.usage_kb * 1024
        st.swap_limit_bytes = limit_or_none(rep.swap.limit_kb * 1024)
    elif rep.memsw is not None and rep.memory is not None:  # v1: memory+swap includes memory
        st.swap_usage_bytes = max(0, rep.memsw.usage_kb - rep.memory.usage_kb) * 1024
        memsw_limit = limit_or_none(rep.memsw.limit_kb * 1024)
        if memsw_limit is not None and st.limit_bytes is not None:
            st.swap_limit_bytes = max(0, memsw_limit - st.limit_bytes)
    return st


def host_memory_from_report(rep: OomReport, page_size: int = PAGE_SIZE) -> Dict[str, int]:
    """A global OOM's Mem-Info (pages, and kB for swap) in bytes, with the kill host's page size."""
    out: Dict[str, int] = {}
    for key, value in rep.mem_info.items():
        if key == "free_swap_kb":
            out["swap_free"] = value * 1024
        elif key == "total_swap_kb":
            out["swap_total"] = value * 1024
        elif key == "ram_pages":
            out["ram"] = value * page_size
        else:
            out[key] = value * page_size
    return out


def tasks_from_report(rep: OomReport, victim_pid: int, proc_info: Dict[int, Tuple[str, Optional[str]]],
                      page_size: int = PAGE_SIZE, source: Source = Source.KERNEL_REPORT) -> List[Task]:
    def pages(row_values: Dict[str, int], key: str) -> Optional[int]:
        v = row_values.get(key)
        return v * page_size if v is not None else None

    tasks = []
    for row in rep.tasks:
        v = row.values
        info = proc_info.get(row.pid)
        tasks.append(Task(
            pid=row.pid,
            comm=row.name,
            tgid=v.get("tgid"),
            uid=v.get("uid"),
            total_vm_bytes=pages(v, "total_vm"),
            rss_bytes=pages(v, "rss"),
            anon_rss_bytes=pages(v, "rss_anon"),
            file_rss_bytes=pages(v, "rss_file"),
            shmem_rss_bytes=pages(v, "rss_shmem"),
            pgtables_bytes=v.get("pgtables_bytes"),
            swap_bytes=pages(v, "swapents"),
            oom_score_adj=v.get("oom_score_adj"),
            is_victim=row.pid == victim_pid,
            cmdline=info[1] if info else None,
            source=source,
        ))
    return tasks
