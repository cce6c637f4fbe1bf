package lycoris

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/backend/cuda"
	"loco/pkg/backend/profile"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// prof, when LOCO_PROFILE=1, times every op (with a device sync around each,
// so the step times are not meaningful then) and reports them at the end.
var prof *profile.Backend

// benchBackend picks the backend of the training-step benchmark:
// LOCO_BACKEND=cuda (activations in LOCO_BENCH_DTYPE, F16 by default) or cpu.
func benchBackend(b *testing.B) (*tensor.Engine, func() (peak uint64)) {
	if os.Getenv("LOCO_BACKEND") != "cuda" {
		return tensor.NewEngine(cpu.New()), func() uint64 { return 0 }
	}
	be, err := cuda.New(0)
	if err != nil {
		b.Skipf("no CUDA device: %v", err)
	}
	var tb tensor.Backend = be
	if os.Getenv("LOCO_PROFILE") == "1" {
		prof = profile.New(be, true)
		tb = prof
	}
	e := tensor.NewEngine(tb)
	e.Act = tensor.F16
	if os.Getenv("LOCO_BENCH_DTYPE") == "BF16" {
		e.Act = tensor.BF16
	}
	return e, func() uint64 { _, _, peak := be.MemStats(); return peak }
}

// BenchmarkTrainStepSD15 is one LoCon training step (dim 8/alpha 4, conv
// 4/4, text encoder trained, AdamW) of the real-size SD 1.5 UNet with random weights at 512×512
// (64×64 latents), batch 3, with and without gradient checkpointing. It
// runs only with LOCO_BACKEND=cuda or LOCO_BENCH_SD15=1 (a CPU step takes
// minutes). Model FLOPs per image: 2 × 0.80 TFLOP (UNet forward and
// its input-gradient pass; the text encoder adds under 1%).
func BenchmarkTrainStepSD15(b *testing.B) {
	if os.Getenv("LOCO_BACKEND") != "cuda" && os.Getenv("LOCO_BENCH_SD15") == "" {
		b.Skip("set LOCO_BACKEND=cuda or LOCO_BENCH_SD15=1 to run the real-size training step")
	}
	e, peak := benchBackend(b)
	t0 := time.Now()
	u, err := unet.New(nn.NewBuilder(UNetPrefix, &sd.RandomSource{E: e, DType: e.Act, Seed: 1}), unet.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	tb := nn.NewBuilder(sd.TEPrefix, &sd.RandomSource{E: e, DType: e.Act, Seed: 2})
	te := clip.New(tb, clip.DefaultConfig())
	if tb.Err() != nil {
		b.Fatal(tb.Err())
	}
	lin, conv := u.Layers()
	for _, nl := range te.Linears() {
		lin = append(lin, nl.L)
	}
	net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lin, conv, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("built UNet and LoCon (%d trainable values) on %s in %v", net.Len(), e.B.Name(), time.Since(t0))
	m := e.B.Alloc(tensor.F32, net.Len())
	v := e.B.Alloc(tensor.F32, net.Len())
	e.B.Fill(m, 0)
	e.B.Fill(v, 0)
	batch := 3
	if s := os.Getenv("LOCO_BENCH_BATCH"); s != "" {
		fmt.Sscan(s, &batch)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	randn := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.NormFloat64())
		}
		return out
	}
	x := randn(batch * 4 * 64 * 64)
	noise := randn(len(x))
	ids := make([][]int32, batch)
	for i := range ids {
		ids[i] = make([]int32, 77)
		ids[i][0] = 49406
		for j := 1; j < 77; j++ {
			ids[i][j] = int32(rng.IntN(49406))
		}
		ids[i][20] = 49407
	}
	ts := make([]float32, batch)
	for i := range ts {
		ts[i] = float32(rng.IntN(1000))
	}
	scale := float32(1)
	if e.Act == tensor.F16 {
		scale = 1024
	}
	if prof != nil {
		defer func() {
			fmt.Println("per-op device time over all steps of the benchmark (LOCO_PROFILE=1):")
			prof.Report(os.Stdout, 45)
		}()
	}
	for _, ck := range []bool{true, false} {
		if prof != nil && ck {
			continue // profile the plain step only
		}
		b.Run(fmt.Sprintf("batch%d/checkpoint=%v", batch, ck), func(b *testing.B) {
			u.Checkpoint = ck
			step := 0
			run := func() {
				step++
				xt := e.FromFloat32(x, batch, 4, 64, 64)
				ctx := te.Encode(ids, 1)
				target := e.FromFloat32(noise, batch, 4, 64, 64)
				out := u.Forward(xt, ts, ctx)
				loss := tensor.MSELoss(out, target, nil)
				e.Backward(loss, scale)
				e.B.AdamW(net.Params, net.Grads, m, v, tensor.AdamWParams{LR: 1e-4, Beta1: 0.9, Beta2: 0.999,
					Eps: 1e-8, WeightDecay: 0.01, Step: step, GradScale: 1 / scale})
				net.ZeroGrad()
				e.EndStep()
				if err := e.B.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			// One untimed step: kernel compilation (NVRTC, when the disk
			// cache is cold) and the caching allocator's first fill stay out
			// of the numbers.
			run()
			if prof != nil {
				prof.Reset()
			}
			for b.Loop() {
				run()
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(sec, "s/step")
			b.ReportMetric(float64(batch)/sec, "images/s")
			b.ReportMetric(float64(batch)*1.6e12/sec/1e12, "model-TFLOP/s")
			if p := peak(); p > 0 {
				b.ReportMetric(float64(p)/(1<<30), "peak-GiB")
			}
		})
	}
}
