package unet

import (
	"math/rand/v2"
	"os"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/sdtest"
	"loco/pkg/tensor"
)

// BenchmarkForwardSD15CPUTime is BenchmarkForwardSD15 (real-size UNet,
// 64×64 latent, batch 1, context 77×768) reporting the process's CPU
// seconds per forward besides wall time: on a shared machine the wall time
// swings with the other jobs, the CPU time much less. Only with
// LOCO_BENCH_SD15=1.
func BenchmarkForwardSD15CPUTime(b *testing.B) {
	if os.Getenv("LOCO_BENCH_SD15") == "" {
		b.Skip("set LOCO_BENCH_SD15=1 to run the real-size forward")
	}
	e := tensor.NewEngine(cpu.New())
	u, err := New(nn.NewBuilder(prefix, &sd.RandomSource{E: e, DType: tensor.F32, Seed: 1}), DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	randn := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	x, ctx := randn(4*64*64), randn(77*768)
	c0 := sdtest.CPUTime()
	for b.Loop() {
		e.NoGrad(func() {
			u.Forward(e.FromFloat32(x, 1, 4, 64, 64), []float32{500}, e.FromFloat32(ctx, 1, 77, 768))
		})
		e.EndStep()
	}
	n := float64(b.N)
	b.ReportMetric(b.Elapsed().Seconds()/n, "s/forward")
	b.ReportMetric((sdtest.CPUTime()-c0).Seconds()/n, "cpu-s/forward")
}
