/* The moment of the kill: oom:mark_victim (and the reaper's oom:finish_task_reaping).
 *
 * Tracepoint arguments and helpers only, never kernel structs: the headers bcc compiles against
 * may not match the running kernel (docs/kernel-facts.md), while bcc lays out `args` from the running
 * kernel's tracefs format file. Optional fields are switched on by -D flags that probes.py
 * derives from that same format file:
 *   MV_COMM_DATA_LOC / MV_COMM_ARRAY, MV_HAS_RSS, MV_HAS_UID, MV_HAS_PGTABLES, MV_HAS_SCORE_ADJ,
 *   HAVE_FINISH_TASK_REAPING, HAVE_SCHED_PROCESS_FORK, HAVE_VMSCAN_RECLAIM.
 */
#include "oomscope.h"

BPF_PERF_OUTPUT(oom_events);

#ifdef HAVE_SCHED_PROCESS_FORK
/* child pid -> parent pid, for the victim's cgroup when its report was rate-limited away.
 *
 * In an OOM storm most victims are short-lived children that die before /proc/<pid>/cgroup can be
 * read and after the sampler's last scan (measured: 71 of 241 rate-limited kills placed in no
 * cgroup). A child starts in its parent's cgroup (cgroup_post_fork), and the parent is usually
 * long-lived, so the parent's cgroup places the victim. LRU-bounded; one map update per fork.
 */
BPF_TABLE("lru_hash", u32, u32, fork_parent, 65536);

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 child = args->child_pid;
    u32 parent = args->parent_pid;

    fork_parent.update(&child, &parent);
    return 0;
}
#endif

static __always_inline void fill_trigger(struct oomscope_event *ev)
{
    u64 id = bpf_get_current_pid_tgid();

    ev->ts_ns = bpf_ktime_get_ns();
    ev->trigger_tgid = id >> 32;
    ev->trigger_tid = (u32)id;
    bpf_get_current_comm(&ev->trigger_comm, sizeof(ev->trigger_comm));
}

TRACEPOINT_PROBE(oom, mark_victim)
{
    struct oomscope_event ev = {};

    fill_trigger(&ev);
    ev.kind = OOMSCOPE_EV_MARK_VICTIM;
    ev.victim_pid = args->pid;
#ifdef HAVE_SCHED_PROCESS_FORK
    {
        u32 victim = args->pid;
        u32 *parent = fork_parent.lookup(&victim);

        if (parent)
            ev.victim_parent_pid = *parent;
    }
#endif
#if defined(MV_COMM_DATA_LOC)
    TP_DATA_LOC_READ_STR(&ev.victim_comm, comm, sizeof(ev.victim_comm));
    ev.fields |= OOMSCOPE_F_COMM;
#elif defined(MV_COMM_ARRAY)
    bpf_probe_read_kernel_str(&ev.victim_comm, sizeof(ev.victim_comm), args->comm);
    ev.fields |= OOMSCOPE_F_COMM;
#endif
#ifdef MV_HAS_RSS
    ev.total_vm_kb = args->total_vm;
    ev.anon_rss_kb = args->anon_rss;
    ev.file_rss_kb = args->file_rss;
    ev.shmem_rss_kb = args->shmem_rss;
    ev.fields |= OOMSCOPE_F_RSS;
#endif
#ifdef MV_HAS_UID
    ev.uid = args->uid;
    ev.fields |= OOMSCOPE_F_UID;
#endif
#ifdef MV_HAS_PGTABLES
    ev.pgtables_kb = args->pgtables;
    ev.fields |= OOMSCOPE_F_PGTABLES;
#endif
#ifdef MV_HAS_SCORE_ADJ
    ev.oom_score_adj = args->oom_score_adj;
    ev.fields |= OOMSCOPE_F_SCORE_ADJ;
#endif
    oom_events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

#ifdef HAVE_FINISH_TASK_REAPING
TRACEPOINT_PROBE(oom, finish_task_reaping)
{
    struct oomscope_event ev = {};

    fill_trigger(&ev);
    ev.kind = OOMSCOPE_EV_REAP_FINISHED;
    ev.victim_pid = args->pid;
    oom_events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
#endif

#ifdef HAVE_VMSCAN_RECLAIM
/* Reclaim that ran before a kill: memcg limit reclaim (try_to_free_mem_cgroup_pages) and direct
 * (global) reclaim, per process. These tracepoints fire only under memory pressure, so they cost
 * nothing in normal running. Keyed by tgid: the reclaiming task is the one charging, and user
 * space maps pids to cgroups (the tracepoints name no cgroup, and cgroup v1 has no helper for a
 * task's memory cgroup id).
 */
BPF_HASH(reclaim_start, u32, u64, 16384);                         /* tid -> begin ns */
BPF_TABLE("lru_hash", u32, struct oomscope_reclaim, reclaim_by_tgid, 16384);

static __always_inline void reclaim_begin(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();

    reclaim_start.update(&tid, &now);
}

static __always_inline void reclaim_end(unsigned long nr_reclaimed, int memcg)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id, tgid = id >> 32;
    u64 *start = reclaim_start.lookup(&tid);
    struct oomscope_reclaim zero = {}, *r;
    u64 now = bpf_ktime_get_ns(), took = 0;

    if (start) {
        took = now - *start;
        reclaim_start.delete(&tid);
    }
    r = reclaim_by_tgid.lookup_or_try_init(&tgid, &zero);
    if (!r)
        return;
    if (memcg) {
        __sync_fetch_and_add(&r->memcg_runs, 1);
        __sync_fetch_and_add(&r->memcg_ns, took);
        __sync_fetch_and_add(&r->memcg_pages, nr_reclaimed);
        if (nr_reclaimed == 0)
            __sync_fetch_and_add(&r->memcg_empty, 1);
    } else {
        __sync_fetch_and_add(&r->direct_runs, 1);
        __sync_fetch_and_add(&r->direct_ns, took);
        __sync_fetch_and_add(&r->direct_pages, nr_reclaimed);
        if (nr_reclaimed == 0)
            __sync_fetch_and_add(&r->direct_empty, 1);
    }
    r->last_ns = now;
}

TRACEPOINT_PROBE(vmscan, mm_vmscan_memcg_reclaim_begin) { reclaim_begin(); return 0; }
TRACEPOINT_PROBE(vmscan, mm_vmscan_memcg_reclaim_end) { reclaim_end(args->nr_reclaimed, 1); return 0; }
TRACEPOINT_PROBE(vmscan, mm_vmscan_direct_reclaim_begin) { reclaim_begin(); return 0; }
TRACEPOINT_PROBE(vmscan, mm_vmscan_direct_reclaim_end) { reclaim_end(args->nr_reclaimed, 0); return 0; }

#ifdef HAVE_OOM_RETRY
/* The page allocator deciding whether to retry before a global OOM: reclaim (once per zone of the
 * zonelist at each check) and compaction. Fire only in the allocation slow path. */
TRACEPOINT_PROBE(oom, reclaim_retry_zone)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct oomscope_reclaim zero = {}, *r = reclaim_by_tgid.lookup_or_try_init(&tgid, &zero);
    u64 loops = args->no_progress_loops > 0 ? (u64)args->no_progress_loops : 0;

    if (!r)
        return 0;
    __sync_fetch_and_add(&r->alloc_retry_checks, 1);
    if (loops > r->alloc_no_progress_max)
        r->alloc_no_progress_max = loops;  /* a racy max: good enough for a figure in a report */
    r->last_ns = bpf_ktime_get_ns();
    return 0;
}

TRACEPOINT_PROBE(oom, compact_retry)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct oomscope_reclaim zero = {}, *r = reclaim_by_tgid.lookup_or_try_init(&tgid, &zero);

    if (!r)
        return 0;
    __sync_fetch_and_add(&r->compact_retries, 1);
    if (!args->ret)
        __sync_fetch_and_add(&r->compact_gave_up, 1);
    r->last_ns = bpf_ktime_get_ns();
    return 0;
}
#endif
#endif
