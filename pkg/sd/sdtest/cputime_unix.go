//go:build unix

package sdtest

import (
	"syscall"
	"time"
)

// CPUTime is the process's user+system CPU time so far: on a shared
// machine, CPU seconds per op are steadier than wall time.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
