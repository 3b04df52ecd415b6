/* Event layouts shared by the BPF programs and oomscope/probes.py.
 *
 * bcc turns this struct into a ctypes type for the user side (table.event()), so this header is
 * the one definition of the layout. Units: the tracepoint's kB, as the kernel gives them.
 */
#ifndef OOMSCOPE_H
#define OOMSCOPE_H

#define OOMSCOPE_COMM_LEN 16

/* event kinds */
#define OOMSCOPE_EV_MARK_VICTIM 1      /* oom:mark_victim: the kernel chose and marked a victim */
#define OOMSCOPE_EV_REAP_FINISHED 2    /* oom:finish_task_reaping: oom_reaper freed its memory */

/* which optional oom:mark_victim fields this kernel has (older kernels have only pid) */
#define OOMSCOPE_F_COMM (1 << 0)
#define OOMSCOPE_F_RSS (1 << 1)       /* total_vm, anon_rss, file_rss, shmem_rss */
#define OOMSCOPE_F_UID (1 << 2)
#define OOMSCOPE_F_PGTABLES (1 << 3)
#define OOMSCOPE_F_SCORE_ADJ (1 << 4)

struct oomscope_event {
    u64 ts_ns;              /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    u64 total_vm_kb;
    u64 anon_rss_kb;
    u64 file_rss_kb;
    u64 shmem_rss_kb;
    u64 pgtables_kb;
    u64 trigger_cgroup_id;  /* cgroup v2 id (= directory inode) of the trigger task */
    u32 kind;               /* OOMSCOPE_EV_* */
    u32 victim_pid;
    u32 uid;
    u32 trigger_tgid;       /* current: the task whose allocation ran the OOM killer */
    u32 trigger_tid;
    u32 fields;             /* OOMSCOPE_F_* present in this event */
    s32 oom_score_adj;
    u32 cpu;
    u32 victim_parent_pid;  /* from sched:sched_process_fork, 0 when not seen (cgroup lookup) */
    u32 pad;
    char victim_comm[OOMSCOPE_COMM_LEN];
    char trigger_comm[OOMSCOPE_COMM_LEN];
};

/* reclaim per process (oom_events.c, vmscan tracepoints) */
struct oomscope_reclaim {
    u64 memcg_runs;     /* mm_vmscan_memcg_reclaim_end: reclaim to stay under a cgroup limit */
    u64 memcg_ns;
    u64 memcg_pages;    /* pages reclaimed */
    u64 memcg_empty;    /* runs that reclaimed nothing: the road to an OOM kill */
    u64 direct_runs;    /* mm_vmscan_direct_reclaim_end: the host's free memory was low */
    u64 direct_ns;
    u64 direct_pages;
    u64 direct_empty;
    u64 last_ns;
    /* the page allocator's retry decisions before it gives up and OOM-kills (oom:* tracepoints,
     * mm/page_alloc.c should_reclaim_retry / should_compact_retry): global pressure only */
    u64 alloc_retry_checks;     /* oom:reclaim_retry_zone: one per zone checked */
    u64 alloc_no_progress_max;  /* the most reclaim rounds in a row that freed nothing */
    u64 compact_retries;        /* oom:compact_retry */
    u64 compact_gave_up;        /* ... that decided not to retry */
};

/* charge tracking (charge_tracking.c) */
#ifndef OOMSCOPE_SLOTS
#define OOMSCOPE_SLOTS 8        /* cgroups watched at once: a near-limit cgroup and its children */
#endif
#ifndef OOMSCOPE_TRACKED
#define OOMSCOPE_TRACKED 32     /* stat and event items tracked (probes.TRACKED_ITEMS) */
#endif
#define OOMSCOPE_SNAPSHOTS 128  /* snapshots kept: kills between two reads (a storm: ~60/s, 2 s) */

struct oomscope_watch {
    u64 ids[OOMSCOPE_SLOTS];    /* cgroup ids (directory inodes); 0 = free slot */
    u64 active;                 /* snapshot at the kill only when set */
    u64 gen;                    /* bumped by user space at every change of ids: see charge_tracking.c */
};

#define OOMSCOPE_SNAP_SIGKILL 1      /* signal:signal_generate, SIGKILL: before the victim can free */
#define OOMSCOPE_SNAP_MARK_VICTIM 2  /* oom:mark_victim: just after the SIGKILL */

struct oomscope_snapshot {
    u64 seq;                    /* written first ... */
    u64 done;                   /* ... and last: equal when the snapshot is complete */
    u64 ts_ns;
    u32 victim_pid;
    u32 kind;                   /* OOMSCOPE_SNAP_* */
    u64 ids[OOMSCOPE_SLOTS];
    s64 vals[OOMSCOPE_SLOTS * OOMSCOPE_TRACKED];
};

#endif
