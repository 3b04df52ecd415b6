/* User-space kills: SIGKILL and SIGTERM sent by one process to another (signal:signal_generate).
 *
 * A user-space OOM killer (earlyoom, systemd-oomd, oomd, the kubelet through its container
 * runtime) kills with kill(2), tgkill(2), pidfd_send_signal(2) or cgroup.kill: the signal's code
 * is then SI_USER (0) or negative (SI_TKILL, SI_QUEUE), and the task running the tracepoint is the
 * sender. The kernel's own OOM killer sends SEND_SIG_PRIV (code SI_KERNEL, 0x80): not reported
 * here, oom:mark_victim reports it. Only signals the kernel delivered (result 0,
 * TRACE_SIGNAL_DELIVERED) and not sent by a process to itself. Signals are rare: nothing on a hot
 * path. Whether a kill is a memory kill is decided in user space (record/userkill.py).
 *
 * Tracepoint arguments and helpers only (the headers may not match the running kernel). Compiled
 * into the probes' module when the kernel has the tracepoint: -DHAVE_SIGNAL_GENERATE.
 */
#include "oomscope.h"

#ifdef HAVE_SIGNAL_GENERATE
BPF_PERF_OUTPUT(signal_kills);

TRACEPOINT_PROBE(signal, signal_generate)
{
    struct oomscope_signal ev = {};
    u64 id;

    if (args->sig != OOMSCOPE_SIGKILL && args->sig != OOMSCOPE_SIGTERM)
        return 0;
    if (args->code > 0 || args->result != 0)  /* from the kernel, or not delivered */
        return 0;
    id = bpf_get_current_pid_tgid();
    if ((u32)(id >> 32) == (u32)args->pid)
        return 0;  /* a process signalling itself (abort paths, a thread of its own) */
    ev.ts_ns = bpf_ktime_get_ns();
    ev.sender_tgid = id >> 32;
    ev.sender_tid = (u32)id;
    ev.target_pid = args->pid;
    ev.sig = args->sig;
    ev.code = args->code;
    ev.group = args->group;
    bpf_get_current_comm(&ev.sender_comm, sizeof(ev.sender_comm));
    bpf_probe_read_kernel_str(&ev.target_comm, sizeof(ev.target_comm), args->comm);
    signal_kills.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
#endif
