package lycoris

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/backend/cuda"
	"loco/pkg/backend/dry"
	"loco/pkg/backend/profile"
	"loco/pkg/golden"
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
// The CUDA backend itself is returned too (nil on the CPU).
func benchBackend(b *testing.B) (*tensor.Engine, *cuda.Backend) {
	if os.Getenv("LOCO_BACKEND") != "cuda" {
		return tensor.NewEngine(cpu.New()), nil
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
	return e, be
}

// sd15Bench is the set-up the SD 1.5 training-step benchmarks share: the
// real-size UNet and text encoder with random weights, a LoCon network
// (dim 8/alpha 4, conv 4/4, text encoder trained), AdamW moments, and one
// batch of fixed inputs (LOCO_BENCH_BATCH, default 3) at 512×512.
type sd15Bench struct {
	e     *tensor.Engine
	cb    *cuda.Backend // nil on the CPU
	u     *unet.UNet
	te    *clip.Model
	net   *Network
	m, v  tensor.Storage
	batch int
	x     []float32 // latents [batch, 4, 64, 64]
	noise []float32 // the target, same shape
	ids   [][]int32
	ts    []float32
	scale float32 // loss scale (1024 in F16)
}

// sd15Built is the first set-up this process built: later benchmarks reuse
// its model (building the real-size model with random weights takes about
// a minute) with inputs of their own batch size.
var sd15Built *sd15Bench

// newSD15Bench returns the set-up on the benchmark's backend (benchBackend)
// with random weights, at the given batch size.
func newSD15Bench(b *testing.B, batch int) *sd15Bench {
	if sd15Built == nil {
		e, cb := benchBackend(b)
		sd15Built = buildSD15Bench(b, e, cb, batch, func(seed uint64) nn.Source {
			return &sd.RandomSource{E: e, DType: e.Act, Seed: seed}
		})
	}
	s := *sd15Built
	s.setInputs(batch)
	return &s
}

// benchBatches lists the batch sizes of the training-step benchmarks:
// LOCO_BENCH_BATCH, comma-separated (default 3).
func benchBatches(b *testing.B) []int {
	v := os.Getenv("LOCO_BENCH_BATCH")
	if v == "" {
		return []int{3}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("LOCO_BENCH_BATCH=%q: want batch sizes like 3 or 3,1", v)
		}
		out = append(out, n)
	}
	return out
}

// buildSD15Bench builds the set-up on engine e with weights from
// weights(seed).
func buildSD15Bench(tb testing.TB, e *tensor.Engine, cb *cuda.Backend, batch int, weights func(seed uint64) nn.Source) *sd15Bench {
	s := &sd15Bench{e: e, cb: cb, batch: batch}
	t0 := time.Now()
	u, err := unet.New(nn.NewBuilder(UNetPrefix, weights(1)), unet.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	teb := nn.NewBuilder(sd.TEPrefix, weights(2))
	te := clip.New(teb, clip.DefaultConfig())
	if teb.Err() != nil {
		tb.Fatal(teb.Err())
	}
	lin, conv := u.Layers()
	for _, nl := range te.Linears() {
		lin = append(lin, nl.L)
	}
	net, err := New(e, Config{Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lin, conv, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		tb.Fatal(err)
	}
	s.u, s.te, s.net = u, te, net
	tb.Logf("built UNet and LoCon (%d trainable values) on %s in %v", net.Len(), e.B.Name(), time.Since(t0))
	s.m = e.B.Alloc(tensor.F32, net.Len())
	s.v = e.B.Alloc(tensor.F32, net.Len())
	e.B.Fill(s.m, 0)
	e.B.Fill(s.v, 0)
	s.setInputs(batch)
	return s
}

// setInputs makes the fixed batch of inputs for batch size batch.
func (s *sd15Bench) setInputs(batch int) {
	s.batch = batch
	rng := rand.New(rand.NewPCG(2, 2))
	randn := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.NormFloat64())
		}
		return out
	}
	s.x = randn(s.batch * 4 * 64 * 64)
	s.noise = randn(len(s.x))
	s.ids = make([][]int32, s.batch)
	for i := range s.ids {
		s.ids[i] = make([]int32, 77)
		s.ids[i][0] = 49406
		for j := 1; j < 77; j++ {
			s.ids[i][j] = int32(rng.IntN(49406))
		}
		s.ids[i][20] = 49407
	}
	s.ts = make([]float32, s.batch)
	for i := range s.ts {
		s.ts[i] = float32(rng.IntN(1000))
	}
	s.scale = 1
	if s.e.Act == tensor.F16 {
		s.scale = 1024
	}
}

// step is one training step on the fixed batch, with AdamW's 1-based step
// number stepNo, the loss computed by loss, up to EndStep (no Sync).
func (s *sd15Bench) step(loss func(pred, target *tensor.Tensor) *tensor.Tensor, stepNo int) {
	e := s.e
	xt := e.FromFloat32(s.x, s.batch, 4, 64, 64)
	ctx := s.te.Encode(s.ids, 1)
	target := e.FromFloat32(s.noise, s.batch, 4, 64, 64)
	out := s.u.Forward(xt, s.ts, ctx)
	e.Backward(loss(out, target), s.scale)
	e.B.AdamW(s.net.Params, s.net.Grads, s.m, s.v, tensor.AdamWParams{LR: 1e-4, Beta1: 0.9, Beta2: 0.999,
		Eps: 1e-8, WeightDecay: 0.01, Step: stepNo, GradScale: 1 / s.scale})
	s.net.ZeroGrad()
	e.EndStep()
}

func mseLoss(pred, target *tensor.Tensor) *tensor.Tensor { return tensor.MSELoss(pred, target, nil) }

// report gives a step time the benchmarks' common metrics.
func (s *sd15Bench) report(b *testing.B, sec float64) {
	b.ReportMetric(sec, "s/step")
	b.ReportMetric(float64(s.batch)/sec, "images/s")
	b.ReportMetric(float64(s.batch)*1.6e12/sec/1e12, "model-TFLOP/s")
	if s.cb != nil {
		_, _, peak := s.cb.MemStats()
		b.ReportMetric(float64(peak)/(1<<30), "peak-GiB")
	}
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
	for _, batch := range benchBatches(b) {
		s := newSD15Bench(b, batch)
		for _, ck := range []bool{true, false} {
			if prof != nil && ck {
				continue // profile the plain step only
			}
			s.runEager(b, ck)
		}
	}
	if prof != nil {
		fmt.Println("per-op device time over all steps of the benchmark (LOCO_PROFILE=1):")
		prof.Report(os.Stdout, 45)
	}
}

// runEager times the eager step with checkpointing ck as a sub-benchmark.
func (s *sd15Bench) runEager(b *testing.B, ck bool) {
	e := s.e
	b.Run(fmt.Sprintf("batch%d/checkpoint=%v", s.batch, ck), func(b *testing.B) {
		s.u.Checkpoint = ck
		step := 0
		run := func() {
			step++
			s.step(mseLoss, step)
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
		s.report(b, b.Elapsed().Seconds()/float64(b.N))
	})
}

// BenchmarkTrainStepSD15Graph captures one whole training step (the step
// of BenchmarkTrainStepSD15 without checkpointing) as a CUDA graph and times its
// replays, Launch + Sync per step. It runs only with LOCO_BACKEND=cuda.
//
// The inputs are uploaded inside the captured step (FromFloat32, the
// timestep embedding, the token ids): the cuda backend stages each upload
// at capture time in memory the graph owns, so every replay trains on the
// same captured batch, with AdamW's step number frozen at 1 (bias
// correction of the first step). That is the cost of the step's device
// work, not yet a training loop: feeding new batches needs the inputs in
// fixed buffers written before each launch.
//
// Before timing, a correctness check: from the same parameters with zero
// AdamW moments, one eager step and one replay must leave the same first
// moment m (0.1 × the gradient after one step; relative L2 ≤ 1e-3), and
// the parameter updates are compared too (logged). After the replays, the
// same number of eager steps of the same step function are timed:
// eager-s/step and speedup compare the two on identical work.
func BenchmarkTrainStepSD15Graph(b *testing.B) {
	if os.Getenv("LOCO_BACKEND") != "cuda" {
		b.Skip("set LOCO_BACKEND=cuda to capture the real-size training step as a CUDA graph")
	}
	if os.Getenv("LOCO_PROFILE") == "1" {
		b.Skip("LOCO_PROFILE=1 synchronises around every op, which a graph capture cannot contain")
	}
	for _, batch := range benchBatches(b) {
		newSD15Bench(b, batch).runGraph(b)
	}
}

// runGraph captures the step (no checkpointing) and times its replays as a
// sub-benchmark.
func (s *sd15Bench) runGraph(b *testing.B) {
	cb := s.cb
	const stepNo = 1 // AdamW's step number, frozen into the graph
	b.Run(fmt.Sprintf("batch%d/checkpoint=false", s.batch), func(b *testing.B) {
		s.u.Checkpoint = false
		sync := func(what string) {
			if err := cb.Sync(); err != nil {
				b.Fatalf("%s: %v", what, err)
			}
		}
		var g *cuda.Graph
		launch := func(what string) {
			if err := g.Launch(); err != nil {
				b.Fatalf("%s: %v", what, err)
			}
			sync(what)
		}
		eager := func(what string) {
			if err := tensor.Catch(func() { s.step(mseLoss, stepNo) }); err != nil {
				b.Fatalf("%s: %v", what, err)
			}
			sync(what)
		}
		// Untimed eager step: kernel compilation and the allocator's first
		// fill happen outside the capture.
		eager("eager warm-up step")

		t0 := time.Now()
		if err := cb.BeginCapture(); err != nil {
			b.Fatalf("BeginCapture: %v", err)
		}
		stepErr := tensor.Catch(func() { s.step(mseLoss, stepNo) })
		var endErr error
		g, endErr = cb.EndCapture()
		if stepErr != nil {
			g.Close() // nil-safe
			b.Fatalf("capturing the step failed: %v (EndCapture: %v)", stepErr, endErr)
		}
		if endErr != nil {
			b.Fatalf("capturing the step failed: %v", endErr)
		}
		defer g.Close()
		b.Logf("captured the step in %v: %v", time.Since(t0), g)
		launch("first replay (uploads the graph)")

		s.checkGraph(b, eager, launch)

		for b.Loop() {
			launch("replay")
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		t0 = time.Now()
		for range b.N {
			eager("eager step")
		}
		eagerSec := time.Since(t0).Seconds() / float64(b.N)
		b.Logf("batch %d: replay %.2f ms/step, eager %.2f ms/step (same step, %d each)", s.batch, sec*1e3, eagerSec*1e3, b.N)
		s.report(b, sec)
		b.ReportMetric(eagerSec, "eager-s/step")
		b.ReportMetric(eagerSec/sec, "speedup")
	})
}

// checkGraph compares one replay with one eager step from the same state:
// parameters P0 and zero AdamW moments. After one step the first moment is
// 0.1 × the (unscaled) gradient, so m compares the gradients; the
// parameter updates (P1 − P0) are logged as well.
func (s *sd15Bench) checkGraph(b *testing.B, eager, launch func(what string)) {
	B, n := s.e.B, s.net.Len()
	read := func(st tensor.Storage) []float32 {
		out := make([]float32, n)
		B.Download(out, st)
		return out
	}
	// P0 is kept on the host: device storage allocated after the capture
	// may be one of the graph's temporaries, which a replay overwrites.
	host0 := read(s.net.Params)
	reset := func() {
		B.Upload(s.net.Params, host0)
		B.Fill(s.m, 0)
		B.Fill(s.v, 0)
		s.net.Touch()
	}
	reset()
	eager("eager step of the check")
	mE, pE := read(s.m), read(s.net.Params)
	reset()
	launch("replay of the check")
	mG, pG := read(s.m), read(s.net.Params)
	dE, dG := make([]float32, n), make([]float32, n)
	for i := range host0 {
		dE[i], dG[i] = pE[i]-host0[i], pG[i]-host0[i]
	}
	var norm float64
	for _, v := range mE {
		norm += float64(v) * float64(v)
	}
	em, ed := golden.RelL2(mG, mE), golden.RelL2(dG, dE)
	b.Logf("graph check, one step from the same state: gradient (AdamW m) rel. L2 %.3g (‖m‖ %.3g), parameter update rel. L2 %.3g", em, math.Sqrt(norm), ed)
	if !(em <= 1e-3) || norm == 0 {
		b.Errorf("the replayed step's gradient differs from the eager step's: rel. L2 %.3g > 1e-3 (‖m‖ %.3g)", em, math.Sqrt(norm))
	}
}

// captureProbe is the dry backend failing, while on, on what the cuda
// backend refuses during a graph capture (Download, Sync, SumSquares),
// and counting what it stages (uploads, embedding id uploads).
type captureProbe struct {
	*dry.Backend
	on                  bool
	uploads, embeddings int
}

func (p *captureProbe) refuse(op string) {
	if p.on {
		tensor.Errorf(op, "not allowed while capturing a CUDA graph")
	}
}

func (p *captureProbe) Download(dst []float32, src tensor.Storage) {
	p.refuse("Download")
	p.Backend.Download(dst, src)
}

func (p *captureProbe) Sync() error {
	p.refuse("Sync")
	return nil
}

func (p *captureProbe) SumSquares(x tensor.Storage) float64 {
	p.refuse("SumSquares")
	return 0
}

func (p *captureProbe) Upload(dst tensor.Storage, src []float32) {
	if p.on {
		p.uploads++
	}
	p.Backend.Upload(dst, src)
}

func (p *captureProbe) Embedding(y, table tensor.Storage, ids []int32, dim int) {
	if p.on {
		p.embeddings++
	}
	p.Backend.Embedding(y, table, ids, dim)
}

// TestGraphStepCapturable runs the step BenchmarkTrainStepSD15Graph
// captures — real size, F16, batch 1 — on a dry backend that fails on the
// calls a capture refuses, so a GPU session does not spend its minutes
// learning that the step synchronises somewhere; a step that reads its
// loss back must fail there.
func TestGraphStepCapturable(t *testing.T) {
	p := &captureProbe{Backend: dry.New()}
	e := tensor.NewEngine(p)
	e.Act = tensor.F16
	s := buildSD15Bench(t, e, nil, 1, func(uint64) nn.Source { return drySource{e, e.Act} })
	s.step(mseLoss, 1) // eager: the mirror is made here
	p.on = true
	if err := tensor.Catch(func() { s.step(mseLoss, 1) }); err != nil {
		t.Fatalf("the step cannot be captured: %v", err)
	}
	t.Logf("captured step stages %d uploads and %d embedding id uploads", p.uploads, p.embeddings)
	if p.uploads != 4 || p.embeddings != 1 {
		t.Errorf("%d uploads and %d embeddings, want 4 (latents, target, timestep embedding, loss weights) and 1 (token ids)", p.uploads, p.embeddings)
	}
	e.EndStep()
	// A step that reads its loss back synchronises: the probe must refuse it.
	readLoss := func(pred, target *tensor.Tensor) *tensor.Tensor {
		l := tensor.MSELoss(pred, target, nil)
		_ = l.Item()
		return l
	}
	err := tensor.Catch(func() { s.step(readLoss, 1) })
	if err == nil || !strings.Contains(err.Error(), "Download") {
		t.Errorf("a step that reads its loss passed the probe (%v); the probe does not see synchronisation", err)
	}
	e.EndStep()
}
