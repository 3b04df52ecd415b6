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

#endif
