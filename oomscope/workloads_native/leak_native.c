/* The lab's leak-native workload (oomscope lab leak-native): built at run time with
 * -O1 -fno-omit-frame-pointer, so that the kernel's unwinder follows every frame.
 *
 * leak_slowly keeps every buffer it allocates (malloc, each page written in the function itself:
 * a fault inside memset would be attributed to memset's caller's caller, memset having no frame of
 * its own); churn_buffers maps, touches and unmaps more than that each second and holds nothing.
 * Run until the cgroup's limit kills it, or for at most argv[2] seconds.
 *
 *   leak_native LIMIT_BYTES [MAX_SECONDS]
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#define CHUNK (1 << 20)
#define STEPS_PER_SECOND 5

static void **kept;
static size_t nkept, cap;

__attribute__((noinline)) void leak_slowly(size_t bytes)
{
    volatile char *p = malloc(bytes);

    if (!p)
        return;
    for (size_t i = 0; i < bytes; i += 4096)
        p[i] = (char)i;
    if (nkept == cap) {
        cap = cap ? 2 * cap : 256;
        kept = realloc(kept, cap * sizeof(*kept));
    }
    kept[nkept++] = (void *)p;
}

__attribute__((noinline)) void churn_buffers(size_t bytes)
{
    volatile char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return;
    /* one fault a 4 KiB page, as leak_slowly's: with transparent huge pages "always" (Debian's 6.12
     * in the test VMs) a 2 MiB-aligned part of the buffer is one fault, and the churn, which touches
     * three times the leak's bytes, faulted less than it (33 sampled faults against 44) */
    madvise((void *)p, bytes, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < bytes; i += 4096)
        p[i] = (char)i;
    munmap((void *)p, bytes);
}

static void nap(long ns)
{
    struct timespec t = {ns / 1000000000L, ns % 1000000000L};

    nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
    long limit = argc > 1 ? atol(argv[1]) : 64L << 20;
    long max_s = argc > 2 ? atol(argv[2]) : 120;
    /* the whole limit in ~14 s (workloads.py FILL_S), and three times as much churned */
    long per_step = limit / 14 / STEPS_PER_SECOND;
    long steps = 0;

    prctl(PR_SET_NAME, "oomscope-leakc", 0, 0, 0);
    if (per_step < 4096)
        per_step = 4096;
    while (steps < max_s * STEPS_PER_SECOND) {
        leak_slowly((size_t)per_step);
        churn_buffers((size_t)per_step * 3);
        nap(1000000000L / STEPS_PER_SECOND);
        steps++;
    }
    return 0;
}
