package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"

	"loco/pkg/backend/cpu/sgemm"
)

// workers bounds the goroutines one op uses; SetThreads changes it.
var workers atomic.Int64

func init() { workers.Store(int64(runtime.GOMAXPROCS(0))) }

// SetThreads bounds the workers every op (and the SGEMM) uses; n < 1
// restores the default, runtime.GOMAXPROCS(0).
func SetThreads(n int) {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	workers.Store(int64(n))
	setGemmThreads(n)
}

// Threads reports the worker bound.
func Threads() int { return int(workers.Load()) }

// minParallelWork is the work (in rough element-operations) below which an
// op runs on the calling goroutine: starting workers costs microseconds.
const minParallelWork = 1 << 15

// parallelFor calls fn on disjoint ranges [lo, hi) covering [0, n), on up
// to Threads() goroutines. cost is the work per index (in element
// operations); small totals run inline. Ranges are contiguous, so each
// worker touches its own rows.
func parallelFor(n, cost int, fn func(lo, hi int)) {
	nt := Threads()
	if total := n * max(cost, 1); total < minParallelWork {
		nt = 1
	}
	nt = min(nt, n)
	if nt <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	sgemm.Run(nt, func(w int) { fn(w*n/nt, (w+1)*n/nt) })
}

// parallelDynamic calls fn(i, worker) for every i in [0, n) on up to
// Threads() goroutines that take indices one at a time; worker in
// [0, Threads()) names the goroutine, for per-worker scratch. Use it when
// items are few and unequal (attention query blocks under a causal mask).
func parallelDynamic(n int, fn func(i, worker int)) { parallelDynamicN(n, Threads(), fn) }

// parallelDynamicN is parallelDynamic on at most nt goroutines (worker <
// nt).
func parallelDynamicN(n, nt int, fn func(i, worker int)) {
	nt = min(nt, n)
	if nt <= 1 {
		for i := 0; i < n; i++ {
			fn(i, 0)
		}
		return
	}
	var next atomic.Int64
	sgemm.Run(nt, func(w int) {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			fn(i, w)
		}
	})
}

// Concurrently runs fns at the same time on the worker pool (each one's
// own parallel loops then run inline on its thread) and returns when all
// have returned. A panic in any of them is raised again on the caller.
// pkg/tensor uses it for the input and weight gradients of small layers.
func (b *Backend) Concurrently(fns ...func()) {
	var mu sync.Mutex
	var failure any
	run := func(i int) {
		defer func() {
			if r := recover(); r != nil {
				mu.Lock()
				if failure == nil {
					failure = r
				}
				mu.Unlock()
			}
		}()
		fns[i]()
	}
	if Threads() < 2 {
		for i := range fns {
			run(i)
		}
	} else {
		sgemm.Run(len(fns), run)
	}
	if failure != nil {
		panic(failure)
	}
}
