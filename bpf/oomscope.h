/* Event layouts shared by the BPF programs and oomscope/probes.py.
 *
 * bcc turns these structs into ctypes types for the user side (table.event()), so this header is
 * the one definition of the layouts. Units: the tracepoint's kB, as the kernel gives them.
 *
 * The constants are not defined here: oomscope/layouts.py passes every one of them as a -D flag
 * (layouts.cflags()), so Python and C cannot disagree. Compiled without them, this fails.
 *   OOMSCOPE_COMM_LEN
 *   OOMSCOPE_EV_MARK_VICTIM, OOMSCOPE_EV_REAP_FINISHED: event kinds
 *   OOMSCOPE_F_COMM, _RSS (total_vm, anon_rss, file_rss, shmem_rss), _UID, _PGTABLES, _SCORE_ADJ:
 *     which optional oom:mark_victim fields this kernel has (older kernels have only pid)
 *   OOMSCOPE_SNAP_SIGKILL, OOMSCOPE_SNAP_MARK_VICTIM: memcg snapshot kinds (memcg_snapshot.c)
 *   OOMSCOPE_SIGKILL, OOMSCOPE_SIGTERM: the signals of user-space kills (signal_kills.c)
 */
#ifndef OOMSCOPE_H
#define OOMSCOPE_H

#if !defined(OOMSCOPE_COMM_LEN) || !defined(OOMSCOPE_EV_MARK_VICTIM) || !defined(OOMSCOPE_F_SCORE_ADJ) \
    || !defined(OOMSCOPE_SNAP_SIGKILL) || !defined(OOMSCOPE_SNAP_MARK_VICTIM)
#error "compile with oomscope.layouts.cflags(): the layout constants come from there"
#endif

struct oomscope_event {
    u64 ts_ns;              /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    u64 total_vm_kb;
    u64 anon_rss_kb;
    u64 file_rss_kb;
    u64 shmem_rss_kb;
    u64 pgtables_kb;
    u32 kind;               /* OOMSCOPE_EV_* */
    u32 victim_pid;
    u32 uid;
    u32 trigger_tgid;       /* current: the task whose allocation ran the OOM killer */
    u32 trigger_tid;
    u32 fields;             /* OOMSCOPE_F_* present in this event */
    s32 oom_score_adj;
    u32 victim_parent_pid;  /* from sched:sched_process_fork, 0 when not seen (cgroup lookup) */
    char victim_comm[OOMSCOPE_COMM_LEN];
    char trigger_comm[OOMSCOPE_COMM_LEN];
};

/* a SIGKILL or SIGTERM sent by a process to another (signal_kills.c, signal:signal_generate) */
struct oomscope_signal {
    u64 ts_ns;              /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    u32 sender_tgid;        /* current: the process that sent it */
    u32 sender_tid;
    u32 target_pid;         /* the task signalled (its pid, as the tracepoint gives it) */
    s32 sig;
    s32 code;               /* SI_USER (0), SI_TKILL (-6), SI_QUEUE (-1): from user space */
    s32 group;              /* 1: sent to the whole thread group */
    char sender_comm[OOMSCOPE_COMM_LEN];
    char target_comm[OOMSCOPE_COMM_LEN];
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

/* growth sites and who hit the limit (alloc_sites.c) */
struct oomscope_site_key {
    u32 tgid;
    s32 user_stack;         /* id in the stacks map; negative: not stored (-errno) */
    s32 kernel_stack;
    u32 pad;
};

struct oomscope_page_key {
    u32 tgid;
    u32 pad;
    u64 page;               /* the sampled fault's address, page-aligned */
};

struct oomscope_page_sample {
    s32 user_stack;         /* the last stack whose sampled fault landed on the page */
    s32 kernel_stack;
    u32 hits;               /* samples of that stack that landed on it */
    u32 pad;
    u64 last_ns;
};

struct oomscope_map_key {
    u32 tgid;
    u32 pad;
    u64 addr;               /* a new mapping's start, as mmap:vm_unmapped_area found it */
};

struct oomscope_mapped {
    u64 ts_ns;              /* the latest mapping that began there */
    u64 length;
};

struct oomscope_reclaim_begin {
    u64 ts_ns;
    s32 user_stack;
    s32 kernel_stack;
};

struct oomscope_hitter {
    u64 stall_ns;           /* time in memcg reclaim (mm_vmscan_memcg_reclaim_begin to _end) */
    u64 max_ns;
    u64 runs;
    u64 last_ns;
    u32 tgid;
    s32 user_stack;         /* at the last reclaim's begin */
    s32 kernel_stack;
    u32 pad;
    char comm[OOMSCOPE_COMM_LEN];
};

/* the memcg snapshot (memcg_snapshot.c): the victim's memory cgroup and its ancestors at the
 * SIGKILL, level[0] the victim's own. Counters in the kernel's units (page counters in pages,
 * statistics per item: pages, bytes or kB, see kernel/memcg_layout.py unit_of), slots as the
 * kernel's memcg_vmstats.state[] has them. SNAP_NSTAT and SNAP_DEPTH come from the kernel's BTF
 * (kernel/memcg_layout.py), so this part exists only in that program. */
#ifdef SNAP_NSTAT
struct oomscope_memcg_level {
    u64 cgroup_id;          /* memcg->css.cgroup->kn->id: the directory's inode */
    u64 usage;              /* memory page counter, pages */
    u64 max;
    u64 failcnt;
    u64 memsw_usage;        /* cgroup v1 memory+swap counter (0 when the kernel has none) */
    u64 memsw_max;
    s64 state[SNAP_NSTAT];      /* memcg_vmstats.state: hierarchical, as last flushed */
    s64 local[SNAP_NSTAT];      /* memcg_vmstats.state_local: this cgroup alone, as last flushed */
    s64 pending[SNAP_NSTAT];    /* memcg_vmstats.state_pending: children's deltas not yet added */
    s64 unflushed[SNAP_NSTAT];  /* sum over CPUs of this cgroup's state - state_prev: not flushed */
};

struct oomscope_memcg_snapshot {
    u64 ts_ns;
    u32 pid;
    u32 depth;              /* levels filled */
    u32 cpus_read;          /* CPUs whose per-CPU counters were added */
    u32 cpus_bad;           /* CPUs whose per-CPU area failed the back-pointer check */
    u64 took_ns;            /* how long the program took to read it (its cost, per SIGKILL) */
    u32 kind;               /* OOMSCOPE_SNAP_SIGKILL, or _MARK_VICTIM: a victim marked without a SIGKILL */
    u16 rereads;            /* times read again because a stats flush ran during the read */
    u16 torn;               /* bit d: level d's flushed counters moved during the last read (a flush ran) */
    struct oomscope_memcg_level level[SNAP_DEPTH];
};
#endif

#endif
