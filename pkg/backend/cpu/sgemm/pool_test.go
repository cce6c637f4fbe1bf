package sgemm

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRun: every part runs exactly once, also when Run is nested inside a
// part, called from several goroutines at once, and after the helpers
// have gone to sleep.
func TestRun(t *testing.T) {
	check := func(t *testing.T, n int, nested bool) {
		counts := make([]atomic.Int32, n)
		var inner atomic.Int32
		Run(n, func(w int) {
			counts[w].Add(1)
			if nested {
				Run(3, func(int) { inner.Add(1) })
			}
		})
		for w := range counts {
			if c := counts[w].Load(); c != 1 {
				t.Errorf("Run(%d): part %d ran %d times", n, w, c)
			}
		}
		if nested && inner.Load() != int32(3*n) {
			t.Errorf("Run(%d) nested: %d inner parts ran, want %d", n, inner.Load(), 3*n)
		}
	}
	for _, n := range []int{0, 1, 2, 3, 7, 64} {
		check(t, n, false)
		check(t, n, true)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				check(t, 1+i%5, i%3 == 0)
			}
		}()
	}
	wg.Wait()
	time.Sleep(2 * poolSpin) // helpers asleep: Run must wake them or finish alone
	check(t, 5, false)
}
