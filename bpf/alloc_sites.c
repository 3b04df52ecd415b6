/* Growth sites and who hit the limit, for the processes of cgroups near their limit only.
 *
 * Compiled once when record starts; NOTHING here is attached until the sampler sees a cgroup near
 * its limit (oomscope/probes.py AllocSiteProbes attaches and detaches, oomscope/record/sites.py
 * decides when). Helpers and tracepoint arguments only, never kernel structs.
 *
 * Which processes: ``watched_tgids``, filled by user space from the pid lists the sampler reads
 * for the cgroups near their limit (on cgroup v1, the hierarchy of this project's hosts, no helper
 * names a task's memory cgroup: bpf_get_current_cgroup_id() is the unified hierarchy's). A child
 * forked by a watched process is added by ``on_fork`` (sched:sched_process_fork) at once.
 *
 * Growth sites: a page fault sampled every SAMPLE_PERIOD faults, either by a software perf event
 * (PERF_COUNT_SW_PAGE_FAULTS, sample_period: ``on_fault_sample``, the program runs only for the
 * sampled fault) or by the exceptions:page_fault_user tracepoint counting per CPU itself
 * (``on_fault_tp``, runs at every fault of the host). Each sample of a watched process adds to
 * ``site_counts`` (tgid, user stack, kernel stack) and records its page in ``sampled_pages``:
 * the last stack that faulted it and how many samples landed on it (a page that is faulted again
 * and again, such as a buffer mapped and unmapped in a loop, is sampled again and again; a leak's
 * page is faulted once). User space asks /proc/<pid>/pagemap which sampled pages are still
 * present (record/sites.py: the estimate).
 *
 * Addresses reused: a sampled page whose range was mapped again after its sample was freed in
 * between (munmap, then mmap over the same addresses: a buffer mapped and unmapped in a loop, or
 * another allocation in its hole). mmap:vm_unmapped_area (the address the kernel found for a new
 * mapping) sends (tgid, address, length, time) of the watched processes to user space
 * (``mapped``, the latest mapping at each start), which counts such samples as freed. The tracepoint's layout is read from tracefs:
 * -DVMUA_ADDR_OFF, -DVMUA_LEN_OFF (byte offsets in its record); without them, nothing is sent.
 *
 * Who hit the limit: mm_vmscan_memcg_reclaim_begin/end (raw tracepoints) run in the task being
 * charged: per task, the time it stalled in memcg reclaim and its stacks at the last begin.
 *
 * -D: STACK_DEPTH, STACK_ENTRIES, SITE_ENTRIES, PAGE_ENTRIES,
 * WATCH_ENTRIES, HITTER_ENTRIES, MAPPED_ENTRIES; and the layout constants of oomscope.h.
 */
#include "oomscope.h"

/* struct bpf_perf_event_data (uapi/linux/bpf_perf_event.h: the sampled registers, then
 * sample_period, then addr), read by offset: that header includes linux/ptrace.h, which bcc's clang
 * cannot compile against Debian's 7.3 headers (include/linux/ns_common.h: "no member named 'ns_id'
 * in 'struct ns_common'"; found in the 7.3 VM), and struct pt_regs is not declared without it: x86-64's
 * is 21 registers (arch/x86/include/uapi/asm/ptrace.h; the fault tracepoint is x86's alone too). The
 * verifier allows the 8 bytes of addr there (kernel/trace/bpf_trace.c, pe_prog_is_valid_access). */
#define PERF_EVENT_ADDR_OFF (21 * 8 + 8)

struct oomscope_stack {
    u64 ip[STACK_DEPTH];
};

BPF_HASH(watched_tgids, u32, u32, WATCH_ENTRIES);
BPF_TABLE("stacktrace", int, struct oomscope_stack, stacks, STACK_ENTRIES);
BPF_HASH(site_counts, struct oomscope_site_key, u64, SITE_ENTRIES);
BPF_TABLE("lru_hash", struct oomscope_page_key, struct oomscope_page_sample, sampled_pages, PAGE_ENTRIES);
BPF_HASH(stall_begin, u32, struct oomscope_reclaim_begin, HITTER_ENTRIES);
BPF_TABLE("lru_hash", u32, struct oomscope_hitter, hitters, HITTER_ENTRIES);
/* [0] samples of watched processes, [1] stacks not stored (map full or collision),
 * [2] site_counts full */
BPF_ARRAY(site_stats, u64, 3);
BPF_PERCPU_ARRAY(fault_tick, u64, 1);  /* on_fault_tp: faults left before this CPU's next sample */
BPF_ARRAY(sample_period, u64, 1);  /* on_fault_tp's period, set by user space before attaching */

static __always_inline void stat_add(u32 i)
{
    u64 *v = site_stats.lookup(&i);

    if (v)
        __sync_fetch_and_add(v, 1);
}

static __always_inline void sample(void *ctx, u64 addr)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;

    if (!watched_tgids.lookup(&tgid))
        return;
    stat_add(0);
    struct oomscope_site_key key = {};
    key.tgid = tgid;
    key.user_stack = stacks.get_stackid(ctx, BPF_F_USER_STACK);
    /* no kernel stack: a user fault's is the fault path, and the perf event's registers are the
     * user's (bpf_get_stackid of the kernel fails there with -EFAULT) */
    key.kernel_stack = -1;
    if (key.user_stack < 0)
        stat_add(1);
    u64 zero = 0, *n = site_counts.lookup_or_try_init(&key, &zero);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        stat_add(2);

    struct oomscope_page_key pk = {};
    pk.tgid = tgid;
    pk.page = addr & ~4095ULL;
    struct oomscope_page_sample *old = sampled_pages.lookup(&pk);
    if (old && old->user_stack == key.user_stack && old->kernel_stack == key.kernel_stack) {
        __sync_fetch_and_add(&old->hits, 1);
        old->last_ns = bpf_ktime_get_ns();
        return;
    }
    /* a page another stack faulted before: it is this stack's now */
    struct oomscope_page_sample s = {};
    s.user_stack = key.user_stack;
    s.kernel_stack = key.kernel_stack;
    s.hits = 1;
    s.last_ns = bpf_ktime_get_ns();
    sampled_pages.update(&pk, &s);
}

/* The software perf event's sampled fault: PERF_SAMPLE_ADDR is the faulting address
 * (kernel/events/core.c, perf_sw_event with the address do_user_addr_fault passes). */
int on_fault_sample(void *ctx)
{
    sample(ctx, *(u64 *)((char *)ctx + PERF_EVENT_ADDR_OFF));
    return 0;
}

/* exceptions:page_fault_user (raw: address, regs, error_code): every user page fault of the
 * host while attached, so its path is kept short (bench/alloc_sites.py --bpf-stats counts it): a
 * fault on a present page (error_code bit 0, X86_PF_PROT: a write to a shared or read-only one,
 * not a page being allocated) returns before any lookup; the others count down a per-CPU
 * counter (one array lookup, inlined by the verifier; no division) and one in sample_period[0]
 * is sampled, the counter reloaded from it then. */
int on_fault_tp(struct bpf_raw_tracepoint_args *ctx)
{
    u32 zero = 0;
    u64 *left, *period;

    if (ctx->args[2] & 1)
        return 0;
    left = fault_tick.lookup(&zero);
    if (!left)
        return 0;
    if (*left > 1) {
        *left -= 1;
        return 0;
    }
    period = sample_period.lookup(&zero);
    if (!period || !*period)
        return 0;
    *left = *period;
    sample(ctx, ctx->args[0]);
    return 0;
}

#ifdef VMUA_ADDR_OFF
/* (tgid, start) -> the latest time a mapping began there, and its length; user space reads it at
 * each check (a map, not a perf buffer: the module may be shared with oom_events.c, whose perf
 * buffer the main thread polls) */
BPF_TABLE("lru_hash", struct oomscope_map_key, struct oomscope_mapped, mapped, MAPPED_ENTRIES);

/* a tracepoint program (not raw): ctx is the event's record, laid out as tracefs says */
int on_mapped(void *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;

    if (!watched_tgids.lookup(&tgid))
        return 0;
    struct oomscope_map_key key = {};
    struct oomscope_mapped m = {};
    key.tgid = tgid;
    key.addr = *(u64 *)((char *)ctx + VMUA_ADDR_OFF);
    m.length = *(u64 *)((char *)ctx + VMUA_LEN_OFF);
    if (key.addr >= (u64)-4095)  /* an error, not an address */
        return 0;
    m.ts_ns = bpf_ktime_get_ns();
    mapped.update(&key, &m);
    return 0;
}
#endif

#ifdef FORK_CHILD_OFF
/* sched:sched_process_fork (a tracepoint program: its record laid out as tracefs says): a child
 * of a watched process is watched from its first fault, not from the sampler's next reading.
 * The value is its parent's tgid (user space's own entries hold 1). A new thread's id is added
 * too: never a tgid, it matches nothing. */
int on_fork(void *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;

    if (!watched_tgids.lookup(&tgid))
        return 0;
    u32 child = *(u32 *)((char *)ctx + FORK_CHILD_OFF);
    watched_tgids.update(&child, &tgid);
    return 0;
}
#endif

int on_reclaim_begin(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;

    if (!watched_tgids.lookup(&tgid))
        return 0;
    struct oomscope_reclaim_begin b = {};
    b.ts_ns = bpf_ktime_get_ns();
    b.user_stack = stacks.get_stackid(ctx, BPF_F_USER_STACK);
    b.kernel_stack = stacks.get_stackid(ctx, 0);
    stall_begin.update(&tid, &b);
    return 0;
}

int on_reclaim_end(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct oomscope_reclaim_begin *b = stall_begin.lookup(&tid);

    if (!b)
        return 0;
    u64 now = bpf_ktime_get_ns(), took = now - b->ts_ns;
    struct oomscope_hitter zero = {}, *h = hitters.lookup_or_try_init(&tid, &zero);
    if (h) {
        h->tgid = id >> 32;
        h->stall_ns += took;
        h->runs += 1;
        if (took > h->max_ns)
            h->max_ns = took;
        h->last_ns = now;
        h->user_stack = b->user_stack;
        h->kernel_stack = b->kernel_stack;
        bpf_get_current_comm(&h->comm, sizeof(h->comm));
    }
    stall_begin.delete(&tid);
    return 0;
}
