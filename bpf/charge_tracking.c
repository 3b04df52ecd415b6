/* Charge tracking: per-cgroup deltas of memcg stat items, from the memcg:* tracepoints (6.13+).
 *
 * memory.stat read after a kill shows the memory already freed, and the kernel's own report is
 * rate-limited away in a storm. So the in-kernel counters here sum every stat update of the
 * watched cgroups, and at the kill a snapshot of them is taken: user space adds the snapshot's
 * deltas since its last memory.stat sample to that sample, giving the state at the kill.
 *
 * Cost is the point of the design: these tracepoints fire several times per page fault on the
 * whole host (measured: 4.3 mod_memcg_lruvec_state + 2.3 count_memcg_events per 4 KiB page
 * touched and freed). Measured on a page-fault storm (bench/overhead.py, steady state): an *empty*
 * program attached as a perf-event tracepoint costs 1.13x, as a raw tracepoint 1.065x; so
 *   - the programs are raw tracepoints: no perf record is built; the arguments are the
 *     tracepoint's own (struct mem_cgroup *memcg, int item, int or long/unsigned long val), their
 *     prototypes checked against the kernel's BTF (btf_trace_*) by probes.py before loading;
 *   - user space attaches them only while some watched cgroup is near its limit;
 *   - the memcg pointer is turned into a cgroup id (memcg->css.cgroup->kn->id, offsets from BTF)
 *     only on a miss of a small per-CPU cache (pointer -> watch slot or none): the hot path is an
 *     inlined array lookup and two compares, and reads no kernel memory;
 *   - item numbers are translated to a small dense index through a second array (inlined too);
 *   - counters are one array with a region per CPU, indexed with bpf_get_smp_processor_id()
 *     (inlined by the verifier on x86-64, 6.10+): no atomics and no shared cache lines, and the
 *     snapshot can read every CPU's region (bcc 0.26 cannot name a map in
 *     bpf_map_lookup_percpu_elem, so a per-CPU array could not be summed in the kernel).
 * Sums across CPUs are made only in the rare snapshot handler and by user space.
 *
 * The cache is keyed by pointer, and a memcg's memory can be reused by a new memcg once the old
 * one is freed (long after its cgroup is removed: it lives on while pages are charged to it).
 * Every entry carries the watch generation it was resolved under; user space bumps it whenever
 * the watched set changes, which it does when a watched cgroup vanishes or a new one is watched,
 * so a reused pointer is resolved again.
 *
 * -D from user space: OOMSCOPE_NR_ITEMS (stat items + event items, from BTF), OOMSCOPE_NCPUS,
 * OOMSCOPE_OFF_MEMCG_CGROUP, OOMSCOPE_OFF_CGROUP_KN, OOMSCOPE_OFF_KN_ID, and on 7.x
 * OOMSCOPE_STATE_VAL_LONG (from BTF).
 */
#include "oomscope.h"

BPF_ARRAY(watch, struct oomscope_watch, 1);
/* item number (events offset by the number of stat items) -> dense tracked index + 1; 0 = not tracked */
BPF_ARRAY(item_index, u32, OOMSCOPE_NR_ITEMS);
#define REGION (OOMSCOPE_SLOTS * OOMSCOPE_TRACKED)
BPF_ARRAY(counters, s64, OOMSCOPE_NCPUS * REGION);
BPF_ARRAY(snapshots, struct oomscope_snapshot, OOMSCOPE_SNAPSHOTS);
BPF_ARRAY(snapshot_seq, u64, 1);

#define CACHE_WAYS 16  /* direct-mapped, per CPU */
struct memcg_cache_entry {
    u64 memcg;  /* struct mem_cgroup * */
    u64 gen;    /* oomscope_watch.gen it was resolved under */
    s64 slot;   /* watch slot, or -1: not watched */
};
BPF_ARRAY(memcg_cache, struct memcg_cache_entry, OOMSCOPE_NCPUS * CACHE_WAYS);

/* cgroup_id(memcg->css.cgroup), as the tracepoint's perf record has it (include/trace/events/memcg.h) */
static __always_inline u64 memcg_cgroup_id(u64 memcg)
{
    u64 cgrp = 0, kn = 0, id = 0;

    if (bpf_probe_read_kernel(&cgrp, sizeof(cgrp), (void *)(memcg + OOMSCOPE_OFF_MEMCG_CGROUP)) || !cgrp)
        return 0;
    if (bpf_probe_read_kernel(&kn, sizeof(kn), (void *)(cgrp + OOMSCOPE_OFF_CGROUP_KN)) || !kn)
        return 0;
    if (bpf_probe_read_kernel(&id, sizeof(id), (void *)(kn + OOMSCOPE_OFF_KN_ID)))
        return 0;
    return id;
}

static __always_inline void add(u64 memcg, u32 item, s64 val)
{
    u32 zero = 0;
    struct oomscope_watch *w = watch.lookup(&zero);

    if (!w || !memcg)
        return;
    u32 cpu = bpf_get_smp_processor_id();
    if (cpu >= OOMSCOPE_NCPUS)
        return;
    /* mem_cgroup structs are kmalloc'd well over 1 KiB: the bits above 10 tell them apart */
    u32 ckey = cpu * CACHE_WAYS + (u32)(((memcg >> 10) ^ (memcg >> 14)) & (CACHE_WAYS - 1));
    struct memcg_cache_entry *e = memcg_cache.lookup(&ckey);
    if (!e)
        return;
    s64 slot = e->slot;
    if (e->memcg != memcg || e->gen != w->gen) {
        u64 gen = w->gen;  /* read before the ids: a concurrent update leaves a stale gen, resolved again */
        u64 id = memcg_cgroup_id(memcg);
        slot = -1;
#pragma unroll
        for (int i = 0; i < OOMSCOPE_SLOTS; i++) {
            if (id != 0 && w->ids[i] == id)
                slot = i;
        }
        e->memcg = memcg;
        e->gen = gen;
        e->slot = slot;
    }
    if (slot < 0 || slot >= OOMSCOPE_SLOTS)
        return;
    if (item >= OOMSCOPE_NR_ITEMS)
        return;
    u32 *idx = item_index.lookup(&item);
    if (!idx || *idx == 0 || *idx > OOMSCOPE_TRACKED)
        return;
    u32 key = cpu * REGION + (u32)slot * OOMSCOPE_TRACKED + (*idx - 1);
    s64 *c = counters.lookup(&key);
    if (c)
        *c += val;
}

/* Raw tracepoint arguments are u64 slots, and an int is copied into one bit for bit, not
 * sign-extended (CAST_TO_U64 in include/trace/bpf_probe.h): cast back to int before widening.
 * On 7.x the state tracepoints pass a long (probes.STATE_VAL_TYPES): taken whole. */
#ifdef OOMSCOPE_STATE_VAL_LONG
#define STATE_VAL(arg) ((s64)(arg))
#else
#define STATE_VAL(arg) ((s64)(int)(arg))
#endif

int on_mod_memcg_state(struct bpf_raw_tracepoint_args *ctx)
{
    add(ctx->args[0], (u32)ctx->args[1], STATE_VAL(ctx->args[2]));
    return 0;
}

int on_mod_memcg_lruvec_state(struct bpf_raw_tracepoint_args *ctx)
{
    add(ctx->args[0], (u32)ctx->args[1], STATE_VAL(ctx->args[2]));
    return 0;
}

int on_count_memcg_events(struct bpf_raw_tracepoint_args *ctx)
{
    add(ctx->args[0], (u32)ctx->args[1] + OOMSCOPE_NR_STAT_ITEMS, (s64)ctx->args[2]);
    return 0;
}

/* At the kill, before the victim's memory is freed: the counters of every slot, summed over CPUs.
 * NCPUS x SLOTS x TRACKED iterations (2 x 8 x 32 here): verified within the 1M-instruction limit.
 *
 * Taken when the SIGKILL is sent (signal:signal_generate), not at oom:mark_victim:
 * __oom_kill_process() (mm/oom_kill.c) sends SIGKILL *before* mark_oom_victim(), and a victim
 * running on another CPU starts freeing its memory at once. Measured in a storm: a snapshot at
 * mark_victim had inactive_anon 3.6 MiB (5%) below the kernel's report. User space matches the
 * snapshot to the kill by victim pid and time; mark_victim's is the fallback.
 */
static __always_inline int take_snapshot(u32 pid, u32 kind)
{
    u32 zero = 0;
    u64 *seq = snapshot_seq.lookup(&zero);
    struct oomscope_watch *w = watch.lookup(&zero);

    if (!seq || !w || !w->active)
        return 0;
    u64 n = __sync_fetch_and_add(seq, 1);
    u32 at = n % OOMSCOPE_SNAPSHOTS;
    struct oomscope_snapshot *snap = snapshots.lookup(&at);
    if (!snap)
        return 0;
    snap->seq = n + 1;
    snap->ts_ns = bpf_ktime_get_ns();
    snap->victim_pid = pid;
    snap->kind = kind;
    for (int s = 0; s < OOMSCOPE_SLOTS; s++) {
        snap->ids[s] = w->ids[s];
        for (int t = 0; t < OOMSCOPE_TRACKED; t++)
            snap->vals[s * OOMSCOPE_TRACKED + t] = 0;
    }
    for (u32 cpu = 0; cpu < OOMSCOPE_NCPUS; cpu++) {
        for (int s = 0; s < OOMSCOPE_SLOTS; s++) {
            if (w->ids[s] == 0)
                continue;
            for (int t = 0; t < OOMSCOPE_TRACKED; t++) {
                u32 at = s * OOMSCOPE_TRACKED + t;
                u32 key = cpu * REGION + at;
                s64 *c = counters.lookup(&key);
                if (c)
                    snap->vals[at] += *c;
            }
        }
    }
    snap->done = n + 1;  /* user space reads a snapshot only when done == seq */
    return 0;
}

#ifdef HAVE_SIGNAL_GENERATE
TRACEPOINT_PROBE(signal, signal_generate)
{
    if (args->sig != 9)  /* SIGKILL only: the OOM killer's */
        return 0;
    return take_snapshot(args->pid, OOMSCOPE_SNAP_SIGKILL);
}
#endif

TRACEPOINT_PROBE(oom, mark_victim)
{
    return take_snapshot(args->pid, OOMSCOPE_SNAP_MARK_VICTIM);
}
