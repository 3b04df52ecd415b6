#!/bin/sh
# Run inside each test VM before its tests (tests/vm/run-matrix.sh): keeps every tracepoint oomscope
# attaches to enabled for the VM's whole life, in two trace instances of its own whose buffers are off,
# so that oomscope attaching and detaching its programs never patches the kernel's text there.
#
# Two probes on each (an instance's event is a probe of its own): the kernel patches a tracepoint's
# call site when its probes go 0->1, 1->2, 2->1 and 1->0 (kernel/tracepoint.c,
# tracepoint_add_func/tracepoint_remove_func), not N->N+1 for N>1, so oomscope's programs come and
# go as a third probe without a text patch. (One held probe was not enough: its 1->2 re-points the
# static call, and the 6.12 guest still panicked, at exc_page_fault+0x125.)
#
# Why: the VMs run under QEMU's software emulation (TCG), where a kernel that rewrites a static
# branch while another vCPU executes it can run a stale int3 and panic ("Oops: int3" at
# exc_page_fault, "Kernel panic - not syncing: Fatal exception in interrupt"). Reproduced without
# oomscope on Debian's 6.12 under emulation: a process faulting in a loop while the shell writes 1
# and 0 to events/exceptions/page_fault_user/enable panicked the guest within a second (docs/kernel-facts.md,
# "The test VMs"). oomscope's growth sites switch that tracepoint on and off twice a
# second while a cgroup is near its limit (record/sites.py's duty cycle), which is how the 6.12 VM
# died in CI twice at the swap test. On a real CPU the kernel's text_poke_bp serialises every CPU
# and the host's runs (6.18) switch it the same way without harm; the tests still attach and detach
# every program, only the static branch stays on.
T=/sys/kernel/tracing
mountpoint -q "$T" 2>/dev/null || mount -t tracefs none "$T" || { echo "hold-tracepoints: no tracefs"; exit 0; }
held=""
for ev in exceptions/page_fault_user vmscan/mm_vmscan_memcg_reclaim_begin vmscan/mm_vmscan_memcg_reclaim_end \
          vmscan/mm_vmscan_direct_reclaim_begin vmscan/mm_vmscan_direct_reclaim_end sched/sched_process_fork \
          mmap/vm_unmapped_area oom/mark_victim oom/finish_task_reaping oom/reclaim_retry_zone oom/compact_retry \
          signal/signal_generate; do
    n=0
    for inst in oomscope-vm-hold-1 oomscope-vm-hold-2; do
        I="$T/instances/$inst"
        [ -d "$I" ] || { mkdir "$I" && echo 0 >"$I/tracing_on"; } || continue
        if [ -e "$I/events/$ev/enable" ] && echo 1 >"$I/events/$ev/enable" 2>/dev/null; then n=$((n + 1)); fi
    done
    [ "$n" -eq 2 ] && held="$held $ev"
done
echo "hold-tracepoints: held on twice (trace instances oomscope-vm-hold-1 and -2, their buffers off):$held"
