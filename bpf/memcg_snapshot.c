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
 * Nothing here runs on the charge path: one program on signal_generate (signals are rare) that
 * starts a chain of tail calls for a SIGKILL (snap_level, snap_check: snap_steps below), and
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

/* __per_cpu_offset[cpu], 0 = not calibrated: one map value, so that a snapshot reads every CPU's
 * with one lookup (a lookup a CPU is a branch the verifier walks, and a copy at every SIGKILL) */
struct cpu_offsets {
    u64 off[OOMSCOPE_NCPUS];
};
BPF_ARRAY(cpu_offset, struct cpu_offsets, 1);
BPF_PERCPU_ARRAY(scratch, struct oomscope_memcg_snapshot, 1);
/* this CPU's snapshot in the making, carried from one step of the chain to the next */
struct pcpu_pair {
    s64 state[SNAP_NSTAT];
    s64 prev[SNAP_NSTAT];
    u64 memcg[SNAP_DEPTH];  /* each level's mem_cgroup, for the check after the read */
    u64 sig[SNAP_DEPTH];    /* each level's flushed arrays as read, folded (fold) */
    u64 next;               /* the mem_cgroup of the level to read next (0: none) */
    u32 d;                  /* that level's index */
    u32 tries;              /* reads of the whole snapshot before this one */
    u32 cd;                 /* the level to check next (snap_check) */
    u32 moved;              /* the levels checked so far whose arrays moved (bit d: level d) */
    u32 root;               /* 1: the last level read is the root (its parent is none) */
    u32 pad;
    u64 busy_ns;            /* when this CPU's chain began; 0 once it stored its snapshot */
};
BPF_PERCPU_ARRAY(pair_scratch, struct pcpu_pair, 1);
/* victim pid -> its snapshot; user space takes it when oom:mark_victim reaches it */
BPF_TABLE("lru_hash", u32, struct oomscope_memcg_snapshot, snapshots, 256);
/* The snapshot is read by a chain of tail calls, a level a step, then the check a level a step:
 * each program is verified alone. In one program the verifier walked every CPU of every level:
 * 460K instructions processed at 16 CPUs, and from 32 CPUs on it no longer loaded ("Argument
 * list too long" on 6.18, measured 2026-12-07: tests/system/test_kernel_snapshot.py
 * test_the_snapshot_loads_for_64_cpus). bpf_loop would be verified once too, but bcc 0.26 does not
 * relocate its callback ("R2 type=scalar expected=func"). Filled by probes.py (MemcgSnapshotter)
 * before the programs that start the chain are attached. */
BPF_PROG_ARRAY(snap_steps, 2);
#define STEP_LEVEL 0
#define STEP_CHECK 1
/* A flush on another CPU can run while the levels are read (no lock is taken here): see
 * snap_check. At most SNAP_TRIES reads, 2 x depth tail calls each, within the kernel's 33 a chain
 * (MAX_TAIL_CALL_CNT): 3 reads up to 5 levels, 2 from 6 to 8 (a read again only where it fits). */
#define SNAP_TRIES 3
#define TAIL_CALLS 33
/* A chain this old on its CPU has ended without storing (a tail call refused): a new one may begin */
#define BUSY_NS 10000000ULL

static __always_inline u64 rd64(u64 addr)
{
    u64 v = 0;

    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline u64 vmstats_of(u64 memcg)
{
#if VMSTATS_IS_PTR
    return rd64(memcg + OFF_VMSTATS);
#else
    return memcg + OFF_VMSTATS;
#endif
}

/* 1 where x is not 0, by arithmetic: a comparison would be a branch, and every branch in the
 * loop over the CPUs multiplies the ways the verifier walks it */
static __always_inline u64 nz(u64 x)
{
    u64 n = 0 - x;

    asm volatile("" : "+r"(n));  /* else clang sees x != 0 and makes it a branch again */
    return (x | n) >> 63;
}

/* A level's flushed arrays folded into one word, each slot by its place (FNV-1a's step: a flush
 * that moves pages between two lists, one slot down and another up by as much, changes it). */
#define FOLD_BASIS 0xcbf29ce484222325ULL
static __always_inline u64 fold(s64 *a, u64 h)
{
#pragma clang loop unroll(disable) vectorize(disable)
    for (int j = 0; j < SNAP_NSTAT; j++)
        h = (h ^ (u64)a[j]) * 0x100000001b3ULL;
    return h;
}

static __always_inline void read_level(struct oomscope_memcg_level *l, u64 memcg, struct pcpu_pair *pp,
                                       struct cpu_offsets *co, u32 *cpus_read, u32 *cpus_bad, u64 *sig)
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
    u64 vs = vmstats_of(memcg);
    bpf_probe_read_kernel(l->state, sizeof(l->state), (void *)(vs + OFF_VS_STATE));
    bpf_probe_read_kernel(l->pending, sizeof(l->pending), (void *)(vs + OFF_VS_PENDING));
    u64 h = fold(l->pending, fold(l->state, FOLD_BASIS));
#ifdef OFF_VS_LOCAL
    bpf_probe_read_kernel(l->local, sizeof(l->local), (void *)(vs + OFF_VS_LOCAL));
    h = fold(l->local, h);
#endif
    *sig = h;
    for (int j = 0; j < SNAP_NSTAT; j++)
        l->unflushed[j] = 0;
    u64 pcpu = rd64(memcg + OFF_PCPU);
    /* Every CPU takes the same path, whatever it finds: the verifier walks this loop once per CPU
     * (not once per way through it), which is what lets a level of 64 CPUs load. A CPU not
     * calibrated or whose per-CPU copy fails its check is read at 0: bpf_probe_read_kernel zeroes
     * what it could not read, and state - prev is then 0. */
    for (u32 cpu = 0; cpu < OOMSCOPE_NCPUS; cpu++) {
        u64 o = co->off[cpu];
        u64 base = (pcpu + o) & (0 - (nz(o) & nz(pcpu)));
#ifdef OFF_PCPU_VMSTATS
        u64 bad = nz(base) & nz(rd64(base + OFF_PCPU_VMSTATS) ^ vs);  /* the per-CPU copy points back to its memcg_vmstats */
        base &= bad - 1;
#else
        u64 bad = 0;
#endif
        long e1 = bpf_probe_read_kernel(pp->state, sizeof(pp->state), (void *)(base + OFF_PCPU_STATE));
        long e2 = bpf_probe_read_kernel(pp->prev, sizeof(pp->prev), (void *)(base + OFF_PCPU_PREV));
        u64 ok = nz(base) & (nz((u64)e1 | (u64)e2) ^ 1);
        s64 keep = 0 - (s64)ok;  /* one of the two reads failed: that CPU adds nothing (not state - 0) */
        asm volatile("" : "+r"(keep));  /* as in nz(): else clang makes the mask a branch */
        /* by 8: a loop the verifier walks item by item costs it 7x as much (139K instructions at
         * 64 CPUs and 57 items, against 65K); unrolled whole, clang spills past the 512-byte stack
         * at 7.3's 57 items, an LLVM error that ends the process (exit 1, no exception) */
#pragma clang loop unroll_count(8)
        for (int j = 0; j < SNAP_NSTAT; j++)
            l->unflushed[j] += (pp->state[j] - pp->prev[j]) & keep;
        *cpus_read += ok;
        *cpus_bad += bad | (nz(base) & (ok ^ 1));
    }
}

/* This CPU's snapshot in the making and the chain's state: 0 where either map has no value. */
static __always_inline int scratch_of(struct oomscope_memcg_snapshot **s, struct pcpu_pair **pp)
{
    u32 zero = 0;

    *s = scratch.lookup(&zero);
    *pp = pair_scratch.lookup(&zero);
    return *s && *pp;
}

/* The snapshot's first step: the task's memcg, then the chain (snap_level). */
static __always_inline int take(void *ctx, u64 task, u32 kind)
{
    struct oomscope_memcg_snapshot *s;
    struct pcpu_pair *pp;
    if (!scratch_of(&s, &pp) || !task)
        return 0;
    u32 pid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), (void *)(task + OFF_TASK_PID));
    u64 cset = rd64(task + OFF_TASK_CGROUPS);
    u64 memcg = cset ? rd64(cset + OFF_CSS_SET_MEMCG) : 0;
    if (!memcg)
        return 0;
    u64 now = bpf_ktime_get_ns();
    /* one chain a CPU: a SIGKILL raised in an interrupt while this CPU's chain runs (the two
     * programs that start one are not guarded against each other) would mix two victims' levels
     * in the per-CPU scratch; it is left without a snapshot instead */
    if (pp->busy_ns && now - pp->busy_ns < BUSY_NS)
        return 0;
    pp->busy_ns = now;
    s->ts_ns = now;
    s->pid = pid;
    s->kind = kind;
    s->rereads = 0;
    s->torn = 0;
    s->depth = 0;
    pp->memcg[0] = memcg;
    pp->next = memcg;
    pp->d = 0;
    pp->tries = 0;
    snap_steps.call(ctx, STEP_LEVEL);
    return 0;  /* the chain did not start (its programs not in snap_steps): no snapshot */
}

/* The snapshot as it stands, for user space; the CPU free for the next chain. */
static __always_inline void store(struct oomscope_memcg_snapshot *s, struct pcpu_pair *pp, u32 torn)
{
    s->torn = torn;
    s->took_ns = bpf_ktime_get_ns() - s->ts_ns;
    u32 pid = s->pid;
    snapshots.update(&pid, s);
    pp->busy_ns = 0;
}

/* One level of the victim's cgroups (pp->d), then the next, up to the root or SNAP_DEPTH; then the check. */
int snap_level(struct bpf_raw_tracepoint_args *ctx)
{
    u32 zero = 0;
    struct oomscope_memcg_snapshot *s;
    struct pcpu_pair *pp;
    struct cpu_offsets *co = cpu_offset.lookup(&zero);
    if (!scratch_of(&s, &pp) || !co)
        return 0;
    u32 d = pp->d;
    u64 memcg = pp->next;
    if (d < SNAP_DEPTH && memcg) {
        if (d == 0) {
            s->cpus_read = 0;
            s->cpus_bad = 0;
        }
        pp->memcg[d] = memcg;
        read_level(&s->level[d], memcg, pp, co, &s->cpus_read, &s->cpus_bad, &pp->sig[d]);
        s->depth = d + 1;
        pp->d = d + 1;
        pp->next = rd64(memcg + OFF_CSS_PARENT);  /* css is mem_cgroup's first member */
        pp->root = pp->next == 0;
        if (d + 1 < SNAP_DEPTH && pp->next)
            snap_steps.call(ctx, STEP_LEVEL);
    }
    pp->cd = 0;
    pp->moved = 0;
    snap_steps.call(ctx, STEP_CHECK);
    /* refused (not expected: a read fits the tail calls left, snap_check): kept as read, unchecked */
    store(s, pp, (1u << (s->depth & 15)) - 1);
    return 0;
}

/* A stats flush on another CPU (mm/memcontrol.c mem_cgroup_css_rstat_flush; run by readers of
 * memory.stat, by reclaim: mm/vmscan.c prepare_scan_control, and by a periodic worker) that runs
 * while the levels are read folds a CPU's delta into memcg_vmstats after the level's state was read
 * but before that CPU's delta was: counted nowhere; or, a child flushed between its read and its
 * parent's, in the parent's pending and the child's per-CPU part: counted twice. The likeliest
 * cause of a storm snapshot in CI's 7.3 VM with half the victim's THPs missing, its usage exact
 * (docs/kernel-facts.md). So the flushed arrays are read
 * again after all the rest: where any level's moved, the whole snapshot is read again, at most
 * SNAP_TRIES times. rereads says how often; torn, the levels (bit d: level d) that still moved
 * during the last read (user space: the described level's exact view is off only where it or a
 * level below it moved). Not caught: a flush that writes a CPU's state_prev before that CPU is
 * read and state[] only after this check (adjacent stores in the kernel), and flushes whose
 * changes to a level leave its fold as it was. */
int snap_check(struct bpf_raw_tracepoint_args *ctx)
{
    struct oomscope_memcg_snapshot *s;
    struct pcpu_pair *pp;
    if (!scratch_of(&s, &pp))
        return 0;
    /* one level a step, as they were read (a loop over the levels here did not verify) */
    u32 d = pp->cd;
    if (d < SNAP_DEPTH && d < s->depth) {
        /* the level's arrays again, folded as read_level folded them (a read that fails now is
         * not a flush's doing: unmoved) */
        u64 vs = vmstats_of(pp->memcg[d]);
        long e = bpf_probe_read_kernel(pp->state, sizeof(pp->state), (void *)(vs + OFF_VS_STATE));
        u64 h = fold(pp->state, FOLD_BASIS);
        e |= bpf_probe_read_kernel(pp->state, sizeof(pp->state), (void *)(vs + OFF_VS_PENDING));
        h = fold(pp->state, h);
#ifdef OFF_VS_LOCAL
        e |= bpf_probe_read_kernel(pp->state, sizeof(pp->state), (void *)(vs + OFF_VS_LOCAL));
        h = fold(pp->state, h);
#endif
        pp->moved |= (u32)(nz(h ^ pp->sig[d]) & (nz((u64)e) ^ 1)) << d;
        pp->cd = d + 1;
        if (d + 1 < s->depth) {
            snap_steps.call(ctx, STEP_CHECK);
            /* refused (not expected, as above): the levels not checked are taken as moved */
            pp->moved |= ((1u << (s->depth & 15)) - 1) & ~((1u << (d + 1)) - 1);
        }
    }
    /* Read again where a level moved, but for the root, whose counters move at every flush
     * anywhere (it stays in torn), and only where the whole read fits the tail calls left: a chain
     * cut short stores nothing. */
    u32 trigger = pp->moved & ~(pp->root ? 1u << ((s->depth - 1) & 15) : 0u);
    if (trigger && pp->tries + 1 < SNAP_TRIES && 2 * s->depth * (pp->tries + 2) <= TAIL_CALLS) {
        pp->tries += 1;
        s->rereads = pp->tries;
        pp->d = 0;
        pp->next = pp->memcg[0];
        snap_steps.call(ctx, STEP_LEVEL);
    }
    store(s, pp, pp->moved);
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
    return take(ctx, ctx->args[2], OOMSCOPE_SNAP_SIGKILL);
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
    return take(ctx, task, OOMSCOPE_SNAP_MARK_VICTIM);
}

/* This CPU's slot in cpu_offsets, 0 if none. The check and the index in one 64-bit register:
 * clang checked a u32 and indexed by a copy zero-extended (<<32 >>32), which 6.1's verifier does
 * not see as bounded ("R0 unbounded memory access": calibrate did not load there, CI 2026-12-08). */
static __always_inline u64 *this_cpu_slot(struct cpu_offsets *co)
{
    u64 cpu = bpf_get_smp_processor_id();

    if (!co)
        return 0;
    /* else clang adds to co before its null check, as a select: 6.1 refuses arithmetic on a
     * map value that may be null */
    asm volatile("" : "+r"(co), "+r"(cpu));
    if (cpu >= OOMSCOPE_NCPUS)
        return 0;
    asm volatile("" : "+r"(cpu));  /* and the index added after its check, never as a select before it */
    return &co->off[cpu];
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
    u32 zero = 0;
    u64 off = this_cpu_offset();
    u64 *slot = this_cpu_slot(cpu_offset.lookup(&zero));

    if (slot && off)
        *slot = off;  /* each CPU its own slot */
#ifdef INDEX_TABLE_ADDR
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
    u32 zero = 0;
    u64 *slot = this_cpu_slot(cpu_offset.lookup(&zero));
    struct learn_copy *now = learn_now.lookup(&zero), *last = learn_last.lookup(&zero);

    if (!slot || !now || !last || !memcg || item >= NR_STAT_ITEMS)
        return;
    u64 off = *slot;
    u64 pcpu = rd64(memcg + OFF_PCPU);
    if (!off || !pcpu || bpf_probe_read_kernel(now->state, sizeof(now->state), (void *)(pcpu + off + OFF_PCPU_STATE)))
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
