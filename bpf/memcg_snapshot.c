/* The memory cgroup's own counters, read in the kernel at the victim's SIGKILL.
 *
 * __oom_kill_process() (mm/oom_kill.c) sends SIGKILL before mark_oom_victim(), and a victim
 * running on another CPU starts freeing at once: the snapshot is taken at signal:signal_generate
 * (raw tracepoint: it passes the task), for SIGKILL only; oom:mark_victim (raw: the task too) when the
 * victim got no SIGKILL. From the task: task->cgroups (css_set)
 * ->subsys[memory_cgrp_id] is the memcg (its css is its first member), then css.parent up to the
 * root. For each level: the page counters (memory, and memsw on v1) and the statistics arrays
 * of memcg_vmstats, plus what every CPU holds and no flush has folded in yet (state - state_prev
 * of memcg_vmstats_percpu, mm/memcontrol.c mem_cgroup_css_rstat_flush). User space picks the
 * slots of the items it wants (kernel/memcg_layout.py) and adds the unflushed part.
 *
 * Nothing here runs on the charge path: one program on signal_generate (signals are rare), and
 * calibration programs that run once at start-up and are detached:
 *   - calibrate (a perf cpu-clock event on every CPU): each CPU's __per_cpu_offset, read from
 *     that CPU's this_cpu_off, found from current->se.cfs_rq->rq (= &runqueues of the CPU) and
 *     the two variables' distance in .data..percpu (from BTF). No kallsyms needed. With
 *     INDEX_TABLE_ADDR, also the bytes of mem_cgroup_stats_index (kallsyms).
 *   - learn_* (NR_STAT_ITEMS: the table's address is unknown): the memcg:* raw tracepoints,
 *     attached for a few seconds: the tracepoint fires right after the kernel added to
 *     vmstats_percpu->state[slot] of the item; the only slot of this CPU's copy that changed since
 *     the last update of the same memcg on this CPU is the item's.
 *
 * -D from kernel/memcg_layout.py (all from BTF): OFF_* (OFF_FAILCNT from the start of the mem_cgroup), VMSTATS_IS_PTR, SNAP_NSTAT, SNAP_DEPTH,
 * RQ_TO_THIS_CPU_OFF; optional OFF_MEMSW, OFF_VS_LOCAL, OFF_PCPU_VMSTATS, INDEX_TABLE_ADDR and
 * INDEX_TABLE_LEN, NR_STAT_ITEMS. From probes.py: OOMSCOPE_NCPUS.
 */
#include "oomscope.h"

BPF_ARRAY(cpu_offset, u64, OOMSCOPE_NCPUS);  /* __per_cpu_offset[cpu]; 0 = not calibrated */
BPF_PERCPU_ARRAY(scratch, struct oomscope_memcg_snapshot, 1);
struct pcpu_pair {
    s64 state[SNAP_NSTAT];
    s64 prev[SNAP_NSTAT];
    u64 memcg[SNAP_DEPTH];  /* each level's mem_cgroup, for the check after the read */
};
BPF_PERCPU_ARRAY(pair_scratch, struct pcpu_pair, 1);
/* victim pid -> its snapshot; user space takes it when oom:mark_victim reaches it */
BPF_TABLE("lru_hash", u32, struct oomscope_memcg_snapshot, snapshots, 256);

static __always_inline u64 rd64(u64 addr)
{
    u64 v = 0;

    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline void read_level(struct oomscope_memcg_level *l, u64 memcg, struct pcpu_pair *pp,
                                       u32 *cpus_read, u32 *cpus_bad)
{
    u64 cgrp = rd64(memcg + OFF_MEMCG_CGROUP);
    u64 kn = cgrp ? rd64(cgrp + OFF_CGROUP_KN) : 0;

    l->cgroup_id = kn ? rd64(kn + OFF_KN_ID) : 0;
    l->usage = rd64(memcg + OFF_MEMORY + OFF_PC_USAGE);
    l->max = rd64(memcg + OFF_MEMORY + OFF_PC_MAX);
    l->failcnt = rd64(memcg + OFF_FAILCNT);  /* the report's failcnt: memory.failcnt, or on v2 of 6.15+ memory.events max */
#ifdef OFF_MEMSW
    l->memsw_usage = rd64(memcg + OFF_MEMSW + OFF_PC_USAGE);
    l->memsw_max = rd64(memcg + OFF_MEMSW + OFF_PC_MAX);
#endif
#if VMSTATS_IS_PTR
    u64 vs = rd64(memcg + OFF_VMSTATS);
#else
    u64 vs = memcg + OFF_VMSTATS;
#endif
    bpf_probe_read_kernel(l->state, sizeof(l->state), (void *)(vs + OFF_VS_STATE));
    bpf_probe_read_kernel(l->pending, sizeof(l->pending), (void *)(vs + OFF_VS_PENDING));
#ifdef OFF_VS_LOCAL
    bpf_probe_read_kernel(l->local, sizeof(l->local), (void *)(vs + OFF_VS_LOCAL));
#endif
    for (int j = 0; j < SNAP_NSTAT; j++)
        l->unflushed[j] = 0;
    u64 pcpu = rd64(memcg + OFF_PCPU);
    for (u32 cpu = 0; cpu < OOMSCOPE_NCPUS; cpu++) {
        u32 c = cpu;
        u64 *off = cpu_offset.lookup(&c);
        if (!off || !*off || !pcpu)
            continue;
        u64 base = pcpu + *off;
#ifdef OFF_PCPU_VMSTATS
        if (rd64(base + OFF_PCPU_VMSTATS) != vs) {  /* the per-CPU copy points back to its memcg_vmstats */
            *cpus_bad += 1;
            continue;
        }
#endif
        if (bpf_probe_read_kernel(pp->state, sizeof(pp->state), (void *)(base + OFF_PCPU_STATE))
            || bpf_probe_read_kernel(pp->prev, sizeof(pp->prev), (void *)(base + OFF_PCPU_PREV))) {
            *cpus_bad += 1;
            continue;
        }
        for (int j = 0; j < SNAP_NSTAT; j++)
            l->unflushed[j] += pp->state[j] - pp->prev[j];
        *cpus_read += 1;
    }
}

/* The flushed arrays of one level still hold what was read: 1, or 0 when a flush moved them. */
static __always_inline int same(s64 *kept, u64 addr, s64 *buf)
{
    if (bpf_probe_read_kernel(buf, sizeof(s64) * SNAP_NSTAT, (void *)addr))
        return 0;
    for (int j = 0; j < SNAP_NSTAT; j++) {
        if (buf[j] != kept[j])
            return 0;
    }
    return 1;
}

static __always_inline int unmoved(struct oomscope_memcg_snapshot *s, struct pcpu_pair *pp)
{
    for (u32 d = 0; d < SNAP_DEPTH; d++) {
        if (d >= s->depth)
            break;
        struct oomscope_memcg_level *l = &s->level[d];
#if VMSTATS_IS_PTR
        u64 vs = rd64(pp->memcg[d] + OFF_VMSTATS);
#else
        u64 vs = pp->memcg[d] + OFF_VMSTATS;
#endif
        if (!same(l->state, vs + OFF_VS_STATE, pp->state) || !same(l->pending, vs + OFF_VS_PENDING, pp->state))
            return 0;
#ifdef OFF_VS_LOCAL
        if (!same(l->local, vs + OFF_VS_LOCAL, pp->state))
            return 0;
#endif
    }
    return 1;
}

/* The victim's cgroups, every level. A flush on another CPU (reclaim flushes: mm/vmscan.c
 * prepare_scan_control -> mem_cgroup_flush_stats_ratelimited) can run while the levels are read
 * (no lock is taken here): it folds a CPU's delta into memcg_vmstats after its state was read but
 * before that CPU's delta was, and the delta is counted nowhere. CI's 7.3 VM lost half the
 * victim's THPs that way in a storm (docs/kernel-facts.md). So the flushed arrays are read again
 * after all the rest: where any moved, the whole snapshot is read again, at most SNAP_TRIES times;
 * rereads says how often (SNAP_TRIES - 1 rereads that still moved: torn). */
#define SNAP_TRIES 3
static __always_inline void read_levels(struct oomscope_memcg_snapshot *s, struct pcpu_pair *pp, u64 memcg)
{
    s->depth = 0;
    s->cpus_read = 0;
    s->cpus_bad = 0;
    for (u32 d = 0; d < SNAP_DEPTH; d++) {
        if (!memcg)
            break;
        pp->memcg[d] = memcg;
        read_level(&s->level[d], memcg, pp, &s->cpus_read, &s->cpus_bad);
        s->depth = d + 1;
        memcg = rd64(memcg + OFF_CSS_PARENT);  /* css is mem_cgroup's first member */
    }
}

static __always_inline int take(u64 task, u32 kind)
{
    u32 zero = 0;
    struct oomscope_memcg_snapshot *s = scratch.lookup(&zero);
    struct pcpu_pair *pp = pair_scratch.lookup(&zero);
    if (!s || !pp || !task)
        return 0;
    u32 pid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), (void *)(task + OFF_TASK_PID));
    u64 cset = rd64(task + OFF_TASK_CGROUPS);
    u64 memcg = cset ? rd64(cset + OFF_CSS_SET_MEMCG) : 0;
    if (!memcg)
        return 0;
    s->ts_ns = bpf_ktime_get_ns();
    s->pid = pid;
    s->kind = kind;
    s->rereads = 0;
    s->torn = 1;
    for (u32 t = 0; t < SNAP_TRIES; t++) {
        if (t)
            s->rereads = t;
        read_levels(s, pp, memcg);
        if (unmoved(s, pp)) {
            s->torn = 0;
            break;
        }
    }
    s->took_ns = bpf_ktime_get_ns() - s->ts_ns;
    snapshots.update(&pid, s);
    return 0;
}

int on_signal_generate(struct bpf_raw_tracepoint_args *ctx)
{
    if ((int)ctx->args[0] != 9)  /* SIGKILL only: the OOM killer's, and user space's */
        return 0;
    /* A SIGKILL sent to a task already dying is dropped (kernel/signal.c: prepare_signal,
     * SIGNAL_GROUP_EXIT; result TRACE_SIGNAL_IGNORED, not 0) but still traced. Taken, it replaced
     * the kill's own snapshot with a later one (a storm's parent killing its workers,
     * tests/system/test_kernel_snapshot.py: test_an_ignored_sigkill_keeps_the_kills_snapshot):
     * one not delivered is taken only where the table holds none for the task. The OOM killer's
     * own SIGKILL can be one (a memory.oom.group member already exiting), and kernels whose
     * oom:mark_victim passes no task have no other moment to take it at. */
    if ((int)ctx->args[4] != 0) {
        u32 pid = 0;
        bpf_probe_read_kernel(&pid, sizeof(pid), (void *)(ctx->args[2] + OFF_TASK_PID));
        if (snapshots.lookup(&pid))
            return 0;
    }
    return take(ctx->args[2], OOMSCOPE_SNAP_SIGKILL);
}

/* A victim already on its way out (task_will_free_mem, mm/oom_kill.c: out_of_memory() and
 * oom_kill_process()) is marked without a SIGKILL: then the snapshot is taken here. */
int on_mark_victim(struct bpf_raw_tracepoint_args *ctx)
{
    u64 task = ctx->args[0];
    u32 pid = 0;

    bpf_probe_read_kernel(&pid, sizeof(pid), (void *)(task + OFF_TASK_PID));
    struct oomscope_memcg_snapshot *old = snapshots.lookup(&pid);
    if (old && old->kind == OOMSCOPE_SNAP_SIGKILL && bpf_ktime_get_ns() - old->ts_ns < 1000000000ULL)
        return 0;  /* the SIGKILL's (the OOM killer's, microseconds earlier) is the better moment */
    return take(task, OOMSCOPE_SNAP_MARK_VICTIM);
}

static __always_inline u64 this_cpu_offset(void)
{
    u64 task = bpf_get_current_task();
    u64 cfs = task ? rd64(task + OFF_TASK_SE_CFS_RQ) : 0;
    u64 rq = cfs ? rd64(cfs + OFF_CFS_RQ_RQ) : 0;

    return rq ? rd64(rq + (s64)(RQ_TO_THIS_CPU_OFF)) : 0;
}

#ifdef INDEX_TABLE_ADDR
struct index_bytes {
    u8 b[INDEX_TABLE_LEN];
};
BPF_ARRAY(index_table, struct index_bytes, 1);
#endif

/* A perf event program; it reads nothing of its context, so no perf header is included (they pull
 * in linux/sched.h: 36 s of the VMs' 52 s start-up under emulation, and on 7.3 an error in
 * asm/ibt.h; docs/kernel-facts.md). */
int calibrate(void *ctx)
{
    u32 cpu = bpf_get_smp_processor_id();
    u64 off = this_cpu_offset();

    if (cpu < OOMSCOPE_NCPUS && off)
        cpu_offset.update(&cpu, &off);
#ifdef INDEX_TABLE_ADDR
    u32 zero = 0;
    struct index_bytes *t = index_table.lookup(&zero);
    if (t)
        bpf_probe_read_kernel(t->b, sizeof(t->b), (void *)INDEX_TABLE_ADDR);
#endif
    return 0;
}

#ifdef NR_STAT_ITEMS
struct learn_copy {
    u64 memcg;
    s64 n, changed;  /* kept in the map, not in registers: the verifier does not fork on them */
    s64 state[SNAP_NSTAT];
};
BPF_PERCPU_ARRAY(learn_last, struct learn_copy, 1);
BPF_PERCPU_ARRAY(learn_now, struct learn_copy, 1);
BPF_ARRAY(learnt, s32, NR_STAT_ITEMS);  /* item -> slot + 1; 0 unknown; -1 two slots seen: unusable */

static __always_inline void learn(u64 memcg, u32 item)
{
    u32 zero = 0, cpu = bpf_get_smp_processor_id();
    u64 *off = cpu_offset.lookup(&cpu);
    struct learn_copy *now = learn_now.lookup(&zero), *last = learn_last.lookup(&zero);

    if (!off || !*off || !now || !last || !memcg || item >= NR_STAT_ITEMS)
        return;
    u64 pcpu = rd64(memcg + OFF_PCPU);
    if (!pcpu || bpf_probe_read_kernel(now->state, sizeof(now->state), (void *)(pcpu + *off + OFF_PCPU_STATE)))
        return;
    if (last->memcg == memcg) {
        now->n = 0;
        now->changed = -1;
        for (int j = 0; j < SNAP_NSTAT; j++) {
            if (now->state[j] != last->state[j]) {
                now->changed = j;
                now->n += 1;
            }
        }
        s32 *l = learnt.lookup(&item);
        if (now->n == 1 && l) {
            s32 slot = (s32)now->changed + 1;
            if (*l == 0)
                *l = slot;
            else if (*l != slot)
                *l = -1;
        }
    }
    bpf_probe_read_kernel(last->state, sizeof(last->state), now->state);
    last->memcg = memcg;
}

int learn_state(struct bpf_raw_tracepoint_args *ctx)
{
    learn(ctx->args[0], (u32)ctx->args[1]);
    return 0;
}
#endif
