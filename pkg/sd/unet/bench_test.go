package unet

import (
	"math/rand/v2"
	"os"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/tensor"
)

// BenchmarkForwardTinyGolden is the golden tiny UNet forward (2×4×16×24,
// about 4,300 small ops): it measures per-op overhead.
func BenchmarkForwardTinyGolden(b *testing.B) {
	root, ok := golden.Root()
	if !ok {
		b.Skip("golden folder not found")
	}
	c, err := golden.Load(root + "/unet_tiny")
	if err != nil {
		b.Skip(err)
	}
	e := tensor.NewEngine(cpu.New())
	u := loadCaseB(b, c, e)
	x := c.Float32(b, "x")
	ctx := c.Float32(b, "context")
	var ts []float32
	for _, v := range c.Int64(b, "timesteps") {
		ts = append(ts, float32(v))
	}
	for b.Loop() {
		e.NoGrad(func() {
			u.Forward(e.FromFloat32(x, c.Shape("x")...), ts, e.FromFloat32(ctx, c.Shape("context")...))
		})
		e.EndStep()
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/forward")
}

// BenchmarkForwardSD15 is the real-size UNet forward at a 64×64 latent
// (512 px), batch 1, context 77×768, random weights (0.80 TFLOP). It runs
// only with LOCO_BENCH_SD15=1.
func BenchmarkForwardSD15(b *testing.B) {
	forward := sd15Forward(b)
	for b.Loop() {
		forward()
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(sec, "s/forward")
	b.ReportMetric(0.80e12/sec/1e9, "GFLOP/s")
}

// sd15Forward builds the real-size UNet with random weights and returns one
// forward at a 64×64 latent, batch 1, context 77×768; it skips b unless
// LOCO_BENCH_SD15=1.
func sd15Forward(b *testing.B) func() {
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
	return func() {
		e.NoGrad(func() {
			u.Forward(e.FromFloat32(x, 1, 4, 64, 64), []float32{500}, e.FromFloat32(ctx, 1, 77, 768))
		})
		e.EndStep()
	}
}
