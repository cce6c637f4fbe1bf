package unet

import (
	"testing"

	"loco/pkg/sd/sdtest"
)

// BenchmarkForwardSD15CPUTime is BenchmarkForwardSD15 (real-size UNet,
// 64×64 latent, batch 1, context 77×768) reporting the process's CPU
// seconds per forward besides wall time: on a shared machine the wall time
// swings with the other jobs, the CPU time much less. Only with
// LOCO_BENCH_SD15=1.
func BenchmarkForwardSD15CPUTime(b *testing.B) {
	forward := sd15Forward(b)
	c0 := sdtest.CPUTime()
	for b.Loop() {
		forward()
	}
	n := float64(b.N)
	b.ReportMetric(b.Elapsed().Seconds()/n, "s/forward")
	b.ReportMetric((sdtest.CPUTime()-c0).Seconds()/n, "cpu-s/forward")
}
