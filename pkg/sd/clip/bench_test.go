package clip_test

import (
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/sdtest"
	"loco/pkg/tensor"
)

// BenchmarkEncode77 runs the SD 1.x text encoder (random weights, default
// config) on one sequence of 77 tokens; ms/op is reported.
func BenchmarkEncode77(b *testing.B) {
	e := tensor.NewEngine(cpu.New())
	bl := nn.NewBuilder(clip.Prefix, sdtest.RandSource{E: e, Seed: 1})
	m := clip.New(bl, clip.DefaultConfig())
	if err := bl.Err(); err != nil {
		b.Fatal(err)
	}
	ids := make([]int32, 77)
	ids[0] = 49406
	for i := 1; i < 77; i++ {
		ids[i] = int32(i*613) % 49406
		if i > 20 {
			ids[i] = 49407
		}
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), sdtest.CPUTime()
	for i := 0; i < b.N; i++ {
		e.NoGrad(func() { _ = m.Encode([][]int32{ids}, 1).Float32s() })
		e.EndStep()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
	b.ReportMetric(float64(sdtest.CPUTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
}
