package lycoris

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/backend/cuda"
	"loco/pkg/golden"
	"loco/pkg/half"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// Tolerances of the mixed-precision rows, as relative L2 error against the
// float32 PyTorch reference.
//
// One rounding to F16 (11 significant bits) is off by at most 2⁻¹¹ ≈ 4.9e-4
// relative, to BF16 (8 bits) by 2⁻⁸ ≈ 3.9e-3. Every op of the step rounds
// its output once (accumulating in F32 inside), and the inputs, the base
// weights (BF16 only: the case's weights are F16 values) and the LoCon
// factors are rounded once more. The tiny UNet's forward is ~20 layers deep
// and its backward as many again; independent roundings add in quadrature,
// and normalisations and residual sums amplify them a few times, so the
// output and the gradients end up some 5–10 unit roundoffs off.
//
// The cpu-emu rows below run exactly that arithmetic (a CPU backend that
// rounds every stored value to F16 or BF16) and measured, for this case:
//
//	      out_base  out      grad/x   LoCon grads  worst LoCon grad
//	F16   1.8e-3    2.3e-3   4.5e-3   3.8e-3       9.3e-3
//	BF16  1.8e-2    2.1e-2   3.8e-2   3.4e-2       7.9e-2
//
// The tolerances are at least 2.5× those: room for the GPU's other
// summation orders and fused kernels, while a real fault of the
// mixed-precision path (a factor gradient lost, not folded or folded twice,
// a loss scale not undone, an overflow) gives errors of order one. The
// worst single LoCon gradient gets a looser bound: its norm can come from
// a cancellation.
//
// Gradients the reference lists as zero (expect_zero: time-embedding
// projections of 32-channel blocks, whose per-channel constant the next
// GroupNorm, one channel per group, removes) are zero only up to rounding; they must stay below the row's tolerance
// times the median norm of the nonzero LoCon gradients (F32: the case's
// zero_atol).
var mixedTol = map[tensor.DType]struct{ all, worst float64 }{
	tensor.F16:  {1.5e-2, 4e-2},
	tensor.BF16: {1e-1, 2.5e-1},
}

// goldenRow is one configuration of TestGoldenLoConUNetDevice.
type goldenRow struct {
	name    string
	dt      tensor.DType
	backend func(t *testing.T) tensor.Backend // skips the test when absent
}

var (
	sharedCUDAOnce sync.Once
	sharedCUDABe   *cuda.Backend
	sharedCUDAErr  error
)

// sharedCUDA returns the process's CUDA backend, or skips: no device is
// not a failure, unless LOCO_REQUIRE_CUDA=1 (the GPU check scripts).
func sharedCUDA(t *testing.T) tensor.Backend {
	t.Helper()
	sharedCUDAOnce.Do(func() {
		sharedCUDABe, sharedCUDAErr = cuda.New(0)
		if sharedCUDAErr == nil {
			t.Logf("cuda: %s", sharedCUDABe.Describe())
		}
	})
	if sharedCUDAErr != nil {
		if os.Getenv("LOCO_REQUIRE_CUDA") == "1" {
			t.Fatalf("LOCO_REQUIRE_CUDA=1 but no CUDA backend: %v", sharedCUDAErr)
		}
		t.Skipf("no CUDA device (set LOCO_REQUIRE_CUDA=1 to fail instead): %v", sharedCUDAErr)
	}
	return sharedCUDABe
}

// TestGoldenLoConUNetDevice runs the golden locon_unet case (as
// TestGoldenLoConUNet does) on every backend and activation dtype that
// training uses: CPU F32, CUDA F32, CUDA F16 and BF16 (base weights stored
// in that dtype, the LoCon factors through the low-precision mirror of
// mirror.go, F16 with a loss scale of 1024), each with and without
// gradient checkpointing. The cpu-emu rows run the F16/BF16 rows' code
// paths here, on a CPU backend that rounds every stored value, so that the
// mixed-precision path is checked on machines without a GPU. Each row logs
// its errors on a line starting "locon-golden:" (scripts/gpu-run.sh
// collects them).
func TestGoldenLoConUNetDevice(t *testing.T) {
	cpuBackend := func(*testing.T) tensor.Backend { return cpu.New() }
	rows := []goldenRow{
		{"cpu/F32", tensor.F32, cpuBackend},
		{"cpu-emu/F16", tensor.F16, func(*testing.T) tensor.Backend { return newRounding() }},
		{"cpu-emu/BF16", tensor.BF16, func(*testing.T) tensor.Backend { return newRounding() }},
		{"cuda/F32", tensor.F32, sharedCUDA},
		{"cuda/F16", tensor.F16, sharedCUDA},
		{"cuda/BF16", tensor.BF16, sharedCUDA},
	}
	if _, ok := golden.Root(); !ok && os.Getenv("LOCO_REQUIRE_CUDA") == "1" {
		// On the GPU machine a missing golden folder would skip every row.
		t.Fatal("LOCO_REQUIRE_CUDA=1 but the golden folder is missing: set LOCO_GOLDEN (scripts/gpu-check.sh copies the locon_unet case into .gpu/golden)")
	}
	golden.ForEach(t, "locon_unet", func(t *testing.T, c *golden.Case) {
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				be := row.backend(t)
				runGoldenRow(t, c, be, row)
			})
		}
	})
}

// rowTol is a row's tolerance: the case's own for F32, mixedTol otherwise.
func rowTol(c *golden.Case, dt tensor.DType, name string) (all, worst float64) {
	if dt == tensor.F32 {
		return c.Tol(name), c.Tol(name)
	}
	m := mixedTol[dt]
	return m.all, m.worst
}

func runGoldenRow(t *testing.T, c *golden.Case, be tensor.Backend, row goldenRow) {
	// A backend panic (an *OpError, a device fault) fails this row only.
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: panic: %v\n%s", row.name, r, debug.Stack())
		}
	}()
	cfg, lcfg := goldenLoConConfig(t, c)
	e := tensor.NewEngine(be)
	e.Act = row.dt
	mf, err := safetensors.Open(c.Path("model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	u, err := unet.New(nn.NewBuilder(UNetPrefix, sd.NewFileSource(mf, e, row.dt)), cfg)
	if err != nil {
		t.Fatalf("%s: %v", row.name, err)
	}
	var ts []float32
	for _, v := range c.Int64(t, "timesteps") {
		ts = append(ts, float32(v))
	}
	newInputs := func() (x, ctx, target *tensor.Tensor) {
		x = e.FromFloat32(c.Float32(t, "x"), c.Shape("x")...).RequireGrad()
		ctx = e.FromFloat32(c.Float32(t, "context"), c.Shape("context")...)
		target = e.FromFloat32(c.Float32(t, "target"), c.Shape("target")...)
		return
	}
	syncDev := func(what string) {
		if err := e.B.Sync(); err != nil {
			t.Fatalf("%s: %s: device error: %v", row.name, what, err)
		}
	}

	// The base model alone first: when the LoCon rows fail, this says
	// whether the UNet or the network is at fault.
	x, ctx, _ := newInputs()
	var base *tensor.Tensor
	e.NoGrad(func() { base = u.Forward(x, ts, ctx) })
	syncDev("base forward")
	baseAll, _ := rowTol(c, row.dt, "out_base")
	baseErr := checkRelFinite(t, row.name+" out_base", base.Float32s(), c.Float32(t, "out_base"), baseAll)
	e.EndStep()

	lin, conv := u.Layers()
	net, err := New(e, lcfg, lin, conv, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	setGoldenFactors(t, net, c.Path("locon.safetensors"))

	// Loss scaling as training does it: F16's smallest normal is 6.1e-5,
	// and gradients of single weights go below it.
	seed := float32(1)
	if row.dt == tensor.F16 {
		seed = 1024
	}
	// The zero-gradient bound for low precision (see mixedTol).
	var norms []float64
	for _, en := range net.Entries {
		if name := "grad/" + en.Key; !c.IsZero(name) {
			norms = append(norms, golden.Norm(c.Float32(t, name)))
		}
	}
	sort.Float64s(norms)
	median := norms[len(norms)/2]

	for _, ck := range []bool{false, true} {
		u.Checkpoint = ck
		what := fmt.Sprintf("%s checkpoint=%v", row.name, ck)
		net.ZeroGrad()
		x, ctx, target := newInputs()
		out := u.Forward(x, ts, ctx)
		loss := tensor.MSELoss(out, target, nil)
		e.Backward(loss, seed)
		syncDev(what + " backward")

		all, worstTol := rowTol(c, row.dt, "out")
		outErr := checkRelFinite(t, what+" out", out.Float32s(), c.Float32(t, "out"), all)
		lossErr := checkRelFinite(t, what+" loss", loss.Float32s(), c.Float32(t, "loss"), all)
		gx := make([]float32, x.Len())
		e.B.Download(gx, x.Grad())
		unscaleGrads(gx, seed)
		gxErr := checkRelFinite(t, what+" grad/x", gx, c.Float32(t, "grad/x"), all)

		// Every LoCon gradient on its own, and all of them as one vector.
		zeroBound := c.ZeroAtol
		if row.dt != tensor.F32 {
			zeroBound = all * median
		}
		var num, den, zeroWorst float64
		zeroKey := ""
		type keyErr struct {
			key string
			rel float64
		}
		var errs []keyErr
		got := map[string][]float32{}
		for _, en := range net.Entries {
			g, err := net.Values(en.Key, true)
			if err != nil {
				t.Fatal(err)
			}
			unscaleGrads(g, seed)
			name := "grad/" + en.Key
			want := c.Float32(t, name)
			if len(g) != len(want) {
				t.Fatalf("%s: %s: %d values, want %d", what, name, len(g), len(want))
			}
			if c.IsZero(name) {
				n := golden.Norm(g)
				if !(n <= zeroBound) {
					t.Errorf("%s: %s: expected zero, ‖got‖ = %.3g > %.3g", what, name, n, zeroBound)
				}
				if !(n <= zeroWorst) {
					zeroWorst, zeroKey = n, en.Key
				}
				continue
			}
			for i := range want {
				d := float64(g[i]) - float64(want[i])
				num += d * d
				den += float64(want[i]) * float64(want[i])
			}
			errs = append(errs, keyErr{en.Key, golden.RelL2(g, want)})
			got[en.Key] = g
		}
		gradsErr := math.Sqrt(num / den)
		if !(gradsErr <= all) {
			t.Errorf("%s: all %d LoCon gradients together: relative L2 error %.3g > %.3g", what, len(errs), gradsErr, all)
		}
		// NaN sorts first. A failure reports how many gradients are over
		// the bound and details the worst few, not hundreds of lines.
		sort.Slice(errs, func(i, j int) bool { return !(errs[i].rel <= errs[j].rel) })
		over := 0
		for _, ke := range errs {
			if !(ke.rel <= worstTol) {
				over++
			}
		}
		if over > 0 {
			t.Errorf("%s: %d of %d LoCon gradients have a relative L2 error over %.3g; the worst:", what, over, len(errs), worstTol)
			for _, ke := range errs[:min(over, 3)] {
				checkRelFinite(t, what+" grad/"+ke.key, got[ke.key], c.Float32(t, "grad/"+ke.key), worstTol)
			}
		}
		var top []string
		for _, ke := range errs[:min(3, len(errs))] {
			top = append(top, fmt.Sprintf("%.3g %s", ke.rel, ke.key))
		}
		// One short line per pass for the GPU run's summary, then the
		// names of the worst gradients.
		t.Logf("locon-golden: %-12s checkpoint=%-5v out_base %.2g out %.2g loss %.2g grad/x %.2g LoCon grads %.2g worst %.2g (tol %.2g/%.2g); expect-zero grads ≤ %.2g (bound %.2g)",
			row.name, ck, baseErr, outErr, lossErr, gxErr, gradsErr, errs[0].rel, all, worstTol, zeroWorst, zeroBound)
		t.Logf("%s: worst LoCon gradients: %s; largest expect-zero gradient %s; arena %d live",
			what, strings.Join(top, ", "), zeroKey, e.ArenaLive())
		e.EndStep()
	}
}

// unscaleGrads divides gradients by the loss scale.
func unscaleGrads(g []float32, seed float32) {
	if seed == 1 {
		return
	}
	for i := range g {
		g[i] /= seed
	}
}

// checkRelFinite is golden.CheckRel that also names the first non-finite
// value (NaN or Inf from an overflow make the relative error NaN, which
// CheckRel rejects without saying where).
func checkRelFinite(t *testing.T, what string, got, want []float32, tol float64) float64 {
	t.Helper()
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Errorf("%s: value %d of %d is %v", what, i, len(got), v)
			break
		}
	}
	return golden.CheckRel(t, what, got, want, tol)
}

// rounding is a tensor.Backend over the CPU backend that stores F16 and
// BF16 as float32 values rounded to that dtype after every write: the
// arithmetic of a GPU that keeps activations in half precision and
// accumulates in float32 inside each op, at CPU speed.
type rounding struct{ c *cpu.Backend }

type roundStorage struct {
	dt tensor.DType
	s  tensor.Storage // CPU F32 storage
}

func (s *roundStorage) DType() tensor.DType { return s.dt }
func (s *roundStorage) Len() int            { return s.s.Len() }

func newRounding() *rounding { return &rounding{cpu.New()} }

var _ tensor.Backend = (*rounding)(nil)

// in is the CPU storage under s (nil stays nil).
func emuIn(s tensor.Storage) tensor.Storage {
	if s == nil {
		return nil
	}
	return s.(*roundStorage).s
}

// round rounds the values of the storages to their dtype, in place.
func emuRound(ss ...tensor.Storage) {
	for _, s := range ss {
		if s == nil {
			continue
		}
		r := s.(*roundStorage)
		v := cpu.Float32s(r.s)
		switch r.dt {
		case tensor.F16:
			for i, x := range v {
				v[i] = half.F16ToF32(half.F32ToF16(x))
			}
		case tensor.BF16:
			for i, x := range v {
				v[i] = half.BF16ToF32(half.F32ToBF16(x))
			}
		}
	}
}

func (b *rounding) Name() string { return "cpu-rounding" }
func (b *rounding) Alloc(dt tensor.DType, n int) tensor.Storage {
	dt.Size() // panics on an unknown dtype
	return &roundStorage{dt, b.c.Alloc(tensor.F32, n)}
}
func (b *rounding) Free(s tensor.Storage) { b.c.Free(emuIn(s)) }
func (b *rounding) View(s tensor.Storage, off, n int) tensor.Storage {
	return &roundStorage{s.DType(), b.c.View(emuIn(s), off, n)}
}
func (b *rounding) Upload(dst tensor.Storage, src []float32) {
	b.c.Upload(emuIn(dst), src)
	emuRound(dst)
}
func (b *rounding) Download(dst []float32, src tensor.Storage) { b.c.Download(dst, emuIn(src)) }
func (b *rounding) Fill(dst tensor.Storage, v float32)         { b.c.Fill(emuIn(dst), v); emuRound(dst) }
func (b *rounding) Copy(dst, src tensor.Storage)               { b.c.Copy(emuIn(dst), emuIn(src)); emuRound(dst) }
func (b *rounding) CopyStrided(dst, src tensor.Storage, p tensor.StridedCopy) {
	if dst.DType() != src.DType() {
		tensor.Errorf("CopyStrided", "dtypes %v and %v differ", dst.DType(), src.DType())
	}
	b.c.CopyStrided(emuIn(dst), emuIn(src), p)
	emuRound(dst)
}
func (b *rounding) Sync() error { return b.c.Sync() }
func (b *rounding) Gemm(c, a, x tensor.Storage, p tensor.GemmParams) {
	b.c.Gemm(emuIn(c), emuIn(a), emuIn(x), p)
	emuRound(c)
}
func (b *rounding) Conv2D(y, x, w, bias tensor.Storage, p tensor.ConvParams) {
	b.c.Conv2D(emuIn(y), emuIn(x), emuIn(w), emuIn(bias), p)
	emuRound(y)
}
func (b *rounding) Conv2DBackwardData(dx, dy, w tensor.Storage, p tensor.ConvParams) {
	b.c.Conv2DBackwardData(emuIn(dx), emuIn(dy), emuIn(w), p)
	emuRound(dx)
}
func (b *rounding) Conv2DBackwardFilter(dw, dbias, dy, x tensor.Storage, p tensor.ConvParams) {
	b.c.Conv2DBackwardFilter(emuIn(dw), emuIn(dbias), emuIn(dy), emuIn(x), p)
	emuRound(dw, dbias)
}
func (b *rounding) GroupNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	b.c.GroupNorm(emuIn(y), emuIn(mean), emuIn(rstd), emuIn(x), emuIn(gamma), emuIn(beta), p)
	emuRound(y, mean, rstd)
}
func (b *rounding) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta tensor.Storage, p tensor.NormParams) {
	b.c.GroupNormBackward(emuIn(dx), emuIn(dgamma), emuIn(dbeta), emuIn(dy), emuIn(x), emuIn(mean), emuIn(rstd), emuIn(gamma), emuIn(beta), p)
	emuRound(dx, dgamma, dbeta)
}
func (b *rounding) LayerNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	b.c.LayerNorm(emuIn(y), emuIn(mean), emuIn(rstd), emuIn(x), emuIn(gamma), emuIn(beta), p)
	emuRound(y, mean, rstd)
}
func (b *rounding) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma tensor.Storage, p tensor.NormParams) {
	b.c.LayerNormBackward(emuIn(dx), emuIn(dgamma), emuIn(dbeta), emuIn(dy), emuIn(x), emuIn(mean), emuIn(rstd), emuIn(gamma), p)
	emuRound(dx, dgamma, dbeta)
}
func (b *rounding) Unary(op tensor.UnaryOp, y, x tensor.Storage) {
	b.c.Unary(op, emuIn(y), emuIn(x))
	emuRound(y)
}
func (b *rounding) UnaryBackward(op tensor.UnaryOp, dx, dy, x tensor.Storage) {
	b.c.UnaryBackward(op, emuIn(dx), emuIn(dy), emuIn(x))
	emuRound(dx)
}
func (b *rounding) GEGLU(y, x tensor.Storage, rows, half int) {
	b.c.GEGLU(emuIn(y), emuIn(x), rows, half)
	emuRound(y)
}
func (b *rounding) GEGLUBackward(dx, dy, x tensor.Storage, rows, half int) {
	b.c.GEGLUBackward(emuIn(dx), emuIn(dy), emuIn(x), rows, half)
	emuRound(dx)
}
func (b *rounding) Softmax(y, x tensor.Storage, rows, cols int) {
	b.c.Softmax(emuIn(y), emuIn(x), rows, cols)
	emuRound(y)
}
func (b *rounding) SoftmaxBackward(dx, dy, y tensor.Storage, rows, cols int) {
	b.c.SoftmaxBackward(emuIn(dx), emuIn(dy), emuIn(y), rows, cols)
	emuRound(dx)
}
func (b *rounding) Attention(o, lse, q, k, v tensor.Storage, p tensor.AttnParams) {
	b.c.Attention(emuIn(o), emuIn(lse), emuIn(q), emuIn(k), emuIn(v), p)
	emuRound(o, lse)
}
func (b *rounding) AttentionBackward(dq, dk, dv, do, q, k, v, o, lse tensor.Storage, p tensor.AttnParams) {
	b.c.AttentionBackward(emuIn(dq), emuIn(dk), emuIn(dv), emuIn(do), emuIn(q), emuIn(k), emuIn(v), emuIn(o), emuIn(lse), p)
	emuRound(dq, dk, dv)
}
func (b *rounding) Binary(op tensor.BinaryOp, y, a, x tensor.Storage, p tensor.Broadcast) {
	b.c.Binary(op, emuIn(y), emuIn(a), emuIn(x), p)
	emuRound(y)
}
func (b *rounding) BinaryBackward(op tensor.BinaryOp, da, db, dy, a, x tensor.Storage, p tensor.Broadcast) {
	b.c.BinaryBackward(op, emuIn(da), emuIn(db), emuIn(dy), emuIn(a), emuIn(x), p)
	emuRound(da, db)
}
func (b *rounding) Scale(y, x tensor.Storage, alpha float32) {
	b.c.Scale(emuIn(y), emuIn(x), alpha)
	emuRound(y)
}
func (b *rounding) Axpy(y, x tensor.Storage, alpha float32) {
	b.c.Axpy(emuIn(y), emuIn(x), alpha)
	emuRound(y)
}
func (b *rounding) Permute(y, x tensor.Storage, shape, perm []int, accumulate bool) {
	b.c.Permute(emuIn(y), emuIn(x), shape, perm, accumulate)
	emuRound(y)
}
func (b *rounding) Upsample2x(y, x tensor.Storage, nc, h, w int) {
	b.c.Upsample2x(emuIn(y), emuIn(x), nc, h, w)
	emuRound(y)
}
func (b *rounding) Upsample2xBackward(dx, dy tensor.Storage, nc, h, w int) {
	b.c.Upsample2xBackward(emuIn(dx), emuIn(dy), nc, h, w)
	emuRound(dx)
}
func (b *rounding) ResizeBilinear(y, x tensor.Storage, nc, h, w, oh, ow int) {
	b.c.ResizeBilinear(emuIn(y), emuIn(x), nc, h, w, oh, ow)
	emuRound(y)
}
func (b *rounding) Embedding(y, table tensor.Storage, ids []int32, dim int) {
	b.c.Embedding(emuIn(y), emuIn(table), ids, dim)
	emuRound(y)
}
func (b *rounding) EmbeddingBackward(dtable, dy tensor.Storage, ids []int32, dim int) {
	b.c.EmbeddingBackward(emuIn(dtable), emuIn(dy), ids, dim)
	emuRound(dtable)
}
func (b *rounding) MSE(loss, a, x tensor.Storage, rows, cols int) {
	b.c.MSE(emuIn(loss), emuIn(a), emuIn(x), rows, cols)
	emuRound(loss)
}
func (b *rounding) MSEBackward(da, db, g, a, x tensor.Storage, rows, cols int) {
	b.c.MSEBackward(emuIn(da), emuIn(db), emuIn(g), emuIn(a), emuIn(x), rows, cols)
	emuRound(da, db)
}
func (b *rounding) SumSquares(x tensor.Storage) float64 { return b.c.SumSquares(emuIn(x)) }
func (b *rounding) AdamW(param, grad, m, v tensor.Storage, p tensor.AdamWParams) {
	b.c.AdamW(emuIn(param), emuIn(grad), emuIn(m), emuIn(v), p)
	emuRound(param, m, v)
}
