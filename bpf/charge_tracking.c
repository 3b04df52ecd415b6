/* Charge tracking: per-cgroup deltas of memcg stat items, from the memcg:* tracepoints (6.13+).
 *
 * memory.stat read after a kill shows the memory already freed, and the kernel's own report is
 * rate-limited away in a storm. So the in-kernel counters here sum every stat update of the
 * watched cgroups, and at oom:mark_victim a snapshot of them is taken: user space adds the
 * snapshot's deltas since its last memory.stat sample to that sample, giving the state at the kill.
 *
 * Cost is the point of the design (KERNEL-NOTES.md: helper calls are expensive on these CPUs; an
 * empty program on these tracepoints costs ~4%, a per-CPU hash ~70%):
 *   - user space attaches the three memcg:* programs only while some watched cgroup is near its
 *     limit; they are detached otherwise;
 *   - the first thing each program does is compare the cgroup id with at most OOMSCOPE_SLOTS
 *     watched ids held in one array element (an array lookup the verifier inlines: no helper);
 *   - item numbers are translated to a small dense index through a second array (inlined too);
 *   - counters are one array with a region per CPU, indexed with bpf_get_smp_processor_id()
 *     (inlined by the verifier on x86-64, 6.10+): no atomics and no shared cache lines, and the
 *     snapshot can read every CPU's region (bcc 0.26 cannot name a map in
 *     bpf_map_lookup_percpu_elem, so a per-CPU array could not be summed in the kernel).
 * Sums across CPUs are made only in the rare oom:mark_victim handler and by user space.
 *
 * Layout of each tracepoint's record is checked against tracefs by probes.py before loading:
 *   memcg:mod_memcg_state / mod_memcg_lruvec_state: u64 id @8, int item @16, int val @20
 *   memcg:count_memcg_events:                      u64 id @8, int item @16, unsigned long val @24
 * -D from user space: OOMSCOPE_NR_ITEMS (stat items + event items, from BTF), OOMSCOPE_NCPUS.
 */
#include "oomscope.h"

struct memcg_stat_record {
    u64 common;
    u64 id;       /* cgroup id = inode of the cgroup directory */
    int item;     /* node_stat_item or memcg_stat_item value */
    int val;      /* delta, in pages for the items we track (see probes.py) */
};

struct memcg_event_record {
    u64 common;
    u64 id;
    int item;     /* vm_event_item value */
    int pad;
    unsigned long val;
};

BPF_ARRAY(watch, struct oomscope_watch, 1);
/* item number (events offset by the number of stat items) -> dense tracked index + 1; 0 = not tracked */
BPF_ARRAY(item_index, u32, OOMSCOPE_NR_ITEMS);
#define REGION (OOMSCOPE_SLOTS * OOMSCOPE_TRACKED)
BPF_ARRAY(counters, s64, OOMSCOPE_NCPUS * REGION);
BPF_ARRAY(snapshots, struct oomscope_snapshot, OOMSCOPE_SNAPSHOTS);
BPF_ARRAY(snapshot_seq, u64, 1);

static __always_inline int slot_of(u64 id)
{
    u32 zero = 0;
    struct oomscope_watch *w = watch.lookup(&zero);

    if (!w)
        return -1;
#pragma unroll
    for (int i = 0; i < OOMSCOPE_SLOTS; i++) {
        if (w->ids[i] == id && id != 0)
            return i;
    }
    return -1;
}

static __always_inline void add(u64 id, u32 item, s64 val)
{
    int slot = slot_of(id);

    if (slot < 0)
        return;
    if (item >= OOMSCOPE_NR_ITEMS)
        return;
    u32 *idx = item_index.lookup(&item);
    if (!idx || *idx == 0 || *idx > OOMSCOPE_TRACKED)
        return;
    u32 cpu = bpf_get_smp_processor_id();
    if (cpu >= OOMSCOPE_NCPUS)
        return;
    u32 key = cpu * REGION + slot * OOMSCOPE_TRACKED + (*idx - 1);
    s64 *c = counters.lookup(&key);
    if (c)
        *c += val;
}

int on_mod_memcg_state(struct memcg_stat_record *args)
{
    add(args->id, (u32)args->item, args->val);
    return 0;
}

int on_mod_memcg_lruvec_state(struct memcg_stat_record *args)
{
    add(args->id, (u32)args->item, args->val);
    return 0;
}

int on_count_memcg_events(struct memcg_event_record *args)
{
    add(args->id, (u32)args->item + OOMSCOPE_NR_STAT_ITEMS, (s64)args->val);
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
