package sgemm

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A small pool of helper goroutines runs the parallel parts of the SGEMM
// and of the CPU backend's ops. Starting a goroutine per part and waking
// an idle thread costs several microseconds, as long as a whole small op
// takes; the helpers instead poll for work for a while after each job
// (yielding the processor as they do) and only then sleep on a channel.
// Back-to-back ops, as in a training step, therefore find a helper awake.

// poolSpin is how long a helper polls for the next job before sleeping.
const poolSpin = 200 * time.Microsecond

type poolJob struct {
	fn   func(w int)
	n    int64
	next atomic.Int64 // parts handed out
	done atomic.Int64 // parts finished
}

var pool struct {
	start    sync.Once
	busy     atomic.Bool // a job is running: nested or concurrent Run calls go inline
	gen      atomic.Uint64
	job      atomic.Pointer[poolJob]
	sleepers atomic.Int32
	wake     chan struct{}
}

// Run calls fn(w) once for every w in [0, n), on the calling goroutine
// and the pool's helpers, and returns when all calls have returned. Calls
// made while another Run is in progress (from inside fn, or from another
// goroutine) run their parts one after another on the caller.
func Run(n int, fn func(w int)) {
	if n <= 1 || runtime.GOMAXPROCS(0) < 2 || !pool.busy.CompareAndSwap(false, true) {
		for w := 0; w < n; w++ {
			fn(w)
		}
		return
	}
	defer pool.busy.Store(false)
	pool.start.Do(startPool)
	j := &poolJob{fn: fn, n: int64(n)}
	pool.job.Store(j)
	pool.gen.Add(1)
	if pool.sleepers.Load() > 0 {
		for i := 1; i < n; i++ {
			select {
			case pool.wake <- struct{}{}:
			default:
			}
		}
	}
	j.work()
	for spins := 0; j.done.Load() < j.n; spins++ {
		if spins&63 == 63 {
			runtime.Gosched()
		}
	}
}

// work runs parts of j until none is left.
func (j *poolJob) work() {
	for {
		w := j.next.Add(1) - 1
		if w >= j.n {
			return
		}
		j.fn(int(w))
		j.done.Add(1)
	}
}

func startPool() {
	h := runtime.GOMAXPROCS(0) - 1
	pool.wake = make(chan struct{}, h)
	for range h {
		go helper()
	}
}

func helper() {
	var seen uint64
	for {
		g := pool.gen.Load()
		if g == seen {
			if !waitJob(seen) {
				// Sleep; the re-check after counting ourselves as a
				// sleeper closes the race with a Run that saw none.
				pool.sleepers.Add(1)
				if pool.gen.Load() == seen {
					<-pool.wake
				}
				pool.sleepers.Add(-1)
			}
			continue
		}
		seen = g
		if j := pool.job.Load(); j != nil {
			j.work()
		}
	}
}

// waitJob polls for a generation other than seen for up to poolSpin.
func waitJob(seen uint64) bool {
	t0 := time.Now()
	for {
		for range 64 {
			if pool.gen.Load() != seen {
				return true
			}
		}
		runtime.Gosched()
		if time.Since(t0) > poolSpin {
			return false
		}
	}
}
