// The lab's Go workload (oomscope's leak-go scenario; tests/system/test_go_runtime.py): a named
// function, leakyCache, keeps what it allocates while another, churn, allocates more and keeps
// almost nothing, as a leak hides behind a busy allocator. Built with `go build` into a scratch
// folder and run inside a sandbox memory cgroup.
//
//	leaklab leak [stepKiB] [pauseMs]          grow until the kernel kills it
//	leaklab hold [targetMiB] [pauseMs] [stepMiB]
//	                                          grow to targetMiB (stepMiB, 4 by default, before each
//	                                          report), then churn only; before each report
//	                                          the heap settles (runtime.GC: marked and swept) and after
//	                                          it the program pauses, so that a reader from outside sees
//	                                          the heap the report gave (a GC in progress moves
//	                                          HeapInuse by tens of percent within milliseconds)
//
// Every report is one JSON line of the program's own runtime.ReadMemStats, debug.SetMemoryLimit
// (GOMEMLIMIT) and runtime.MemProfile (what leakyCache's allocations hold, scaled as pprof scales
// a sample), the figures a reader from outside is checked against. Linking runtime.MemProfile also
// keeps the heap profile on: Go's linker turns allocation sampling off in a program that never links it.
package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

var cache [][]byte // what leakyCache keeps
var sink []byte    // churn keeps only its last buffer

//go:noinline
func leakyCache(kib int) {
	for i := 0; i < kib/64; i++ {
		b := make([]byte, 64<<10)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		cache = append(cache, b)
	}
}

//go:noinline
func churn(kib int) {
	for i := 0; i < kib/32; i++ {
		b := make([]byte, 32<<10)
		b[0] = 1
		sink = b
	}
}

// scaled is the bytes a heap-profile record stands for, as pprof estimates them
// (runtime/pprof/protomem.go, scaleHeapSample): an allocation of s bytes is sampled with
// probability 1 - exp(-s/rate).
func scaled(count, size int64, rate int) int64 {
	if count <= 0 || size <= 0 {
		return 0
	}
	if rate <= 1 {
		return size
	}
	return int64(float64(size) / (1 - math.Exp(-float64(size)/float64(count)/float64(rate))))
}

// leakyInUse is what the heap profile says leakyCache's allocations hold: the records whose first
// frame outside the runtime is main.leakyCache (pprof hides the runtime's innermost frames too).
func leakyInUse() (records int, inuse int64) {
	n, _ := runtime.MemProfile(nil, true)
	p := make([]runtime.MemProfileRecord, n+64)
	n, ok := runtime.MemProfile(p, true)
	if !ok {
		return n, -1
	}
	for _, r := range p[:n] {
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "internal/runtime/") {
				if f.Function == "main.leakyCache" {
					inuse += scaled(r.InUseObjects(), r.InUseBytes(), runtime.MemProfileRate)
				}
				break
			}
			if !more {
				break
			}
		}
	}
	return n, inuse
}

func report(seq int) {
	records, leaky := leakyInUse() // first: what it allocates is then in ReadMemStats' figures
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Printf("{\"seq\":%d,\"heap_inuse\":%d,\"heap_alloc\":%d,\"next_gc\":%d,\"num_gc\":%d,\"memory_limit\":%d,"+
		"\"kept_bytes\":%d,\"profile_records\":%d,\"leaky_inuse_bytes\":%d}\n",
		seq, m.HeapInuse, m.HeapAlloc, m.NextGC, m.NumGC, debug.SetMemoryLimit(-1), len(cache)*(64<<10), records, leaky)
}

func arg(i int, def int) int {
	if len(os.Args) > i {
		if v, err := strconv.Atoi(os.Args[i]); err == nil {
			return v
		}
	}
	return def
}

func main() {
	mode := "leak"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	fmt.Printf("ready %d\n", os.Getpid())
	switch mode {
	case "hold":
		target, pause, step := arg(2, 64), arg(3, 500), arg(4, 4)
		for seq := 0; ; seq++ {
			if len(cache)*64 < target<<10 {
				n := step
				if left := target - len(cache)/16; left < n {
					n = left
				}
				leakyCache(n << 10)
			}
			churn(16 << 10)
			runtime.GC()
			report(seq)
			time.Sleep(time.Duration(pause) * time.Millisecond)
		}
	default:
		step, pause := arg(2, 2048), arg(3, 100)
		for seq := 0; ; seq++ {
			leakyCache(step)
			churn(4 * step)
			if seq%5 == 0 {
				report(seq)
			}
			time.Sleep(time.Duration(pause) * time.Millisecond)
		}
	}
}
