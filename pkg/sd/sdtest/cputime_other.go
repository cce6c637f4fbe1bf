//go:build !unix

package sdtest

import "time"

// CPUTime is unavailable here; CPU-time metrics read 0.
func CPUTime() time.Duration { return 0 }
