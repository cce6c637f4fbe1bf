//go:build !unix

package vae_test

import "time"

// cpuTime is unavailable here; the cpu-ms metric reads 0.
func cpuTime() time.Duration { return 0 }
