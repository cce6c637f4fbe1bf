package cpu

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

// The generic loops are checked in float64 against central finite
// differences of their own forward halves; the float32 backend runs the
// same loops (and the conformance suite compares it with an independent
// reference).

func TestGroupNormGradFD(t *testing.T) {
	for _, silu := range []bool{false, true} {
		for _, affine := range []bool{false, true} {
			t.Run(fmt.Sprintf("silu=%v/affine=%v", silu, affine), func(t *testing.T) {
				const n, c, hw, g = 2, 6, 5, 3
				r := newRand(11)
				x, dy := randn64(r, n*c*hw), randn64(r, n*c*hw)
				var gamma, beta []float64
				if affine {
					gamma, beta = randn64(r, c), randn64(r, c)
				}
				mean, rstd := make([]float64, n*g), make([]float64, n*g)
				y := make([]float64, len(x))
				fwd := func() float64 {
					groupNormForward(y, mean, rstd, x, gamma, beta, hw, c/g, g, 1e-5, silu, 0, n*g)
					return dot64(y, dy)
				}
				fwd()
				dx := make([]float64, len(x))
				var dgamma, dbeta []float64
				if affine {
					dgamma, dbeta = make([]float64, c), make([]float64, c)
				}
				groupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, n, hw, c/g, g, silu, 0, g)
				closeF64(t, "dx", dx, fdGrad(x, fwd), 1e-6)
				if affine {
					closeF64(t, "dgamma", dgamma, fdGrad(gamma, fwd), 1e-6)
					closeF64(t, "dbeta", dbeta, fdGrad(beta, fwd), 1e-6)
				}
			})
		}
	}
}

func TestLayerNormGradFD(t *testing.T) {
	const rows, cols = 3, 7
	r := newRand(12)
	x, dy, gamma, beta := randn64(r, rows*cols), randn64(r, rows*cols), randn64(r, cols), randn64(r, cols)
	mean, rstd, y := make([]float64, rows), make([]float64, rows), make([]float64, rows*cols)
	fwd := func() float64 {
		layerNormForward(y, mean, rstd, x, gamma, beta, cols, 1e-5, 0, rows)
		return dot64(y, dy)
	}
	fwd()
	dx, dgamma, dbeta := make([]float64, len(x)), make([]float64, cols), make([]float64, cols)
	layerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, cols, 0, rows)
	closeF64(t, "dx", dx, fdGrad(x, fwd), 1e-6)
	closeF64(t, "dgamma", dgamma, fdGrad(gamma, fwd), 1e-6)
	closeF64(t, "dbeta", dbeta, fdGrad(beta, fwd), 1e-6)
}

func TestElementwiseGradFD(t *testing.T) {
	r := newRand(13)
	const rows, half = 3, 5
	for _, op := range []tensor.UnaryOp{tensor.OpSiLU, tensor.OpGELU, tensor.OpQuickGELU} {
		x, dy := randn64(r, 20), randn64(r, 20)
		for i := range x {
			x[i] *= 4
		}
		y := make([]float64, 20)
		fwd := func() float64 { unaryForward(op, y, x); return dot64(y, dy) }
		dx := make([]float64, 20)
		unaryBackward(op, dx, dy, x)
		closeF64(t, op.String(), dx, fdGrad(x, fwd), 1e-7)
	}
	{
		x, dy := randn64(r, rows*2*half), randn64(r, rows*half)
		y := make([]float64, rows*half)
		fwd := func() float64 { gegluForward(y, x, half, 0, rows); return dot64(y, dy) }
		dx := make([]float64, len(x))
		gegluBackward(dx, dy, x, half, 0, rows)
		closeF64(t, "geglu", dx, fdGrad(x, fwd), 1e-7)
	}
	{
		x, dy := randn64(r, rows*half), randn64(r, rows*half)
		y := make([]float64, rows*half)
		fwd := func() float64 { softmaxForward(y, x, half, 0, rows); return dot64(y, dy) }
		fwd()
		dx := make([]float64, len(x))
		softmaxBackward(dx, dy, y, half, 0, rows)
		closeF64(t, "softmax", dx, fdGrad(x, fwd), 1e-7)
	}
	{
		a, bb, g := randn64(r, rows*half), randn64(r, rows*half), randn64(r, rows)
		loss := make([]float64, rows)
		fwd := func() float64 { mseForward(loss, a, bb, half, 0, rows); return dot64(loss, g) }
		da, db := make([]float64, len(a)), make([]float64, len(a))
		mseBackward(da, db, g, a, bb, half, 0, rows)
		closeF64(t, "mse da", da, fdGrad(a, fwd), 1e-7)
		closeF64(t, "mse db", db, fdGrad(bb, fwd), 1e-7)
	}
}

// TestExpf compares the float32 polynomial exp with math.Exp.
func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x < 88.7; x += 0.0137 {
		got, want := float64(expf(x)), math.Exp(float64(x))
		worst = math.Max(worst, math.Abs(got-want)/want)
	}
	if worst > 3e-7 {
		t.Errorf("expf: worst relative error %.3g", worst)
	}
	if v := expf(float32(math.Inf(-1))); v != 0 {
		t.Errorf("expf(-Inf) = %v", v)
	}
	if v := expf(float32(math.Inf(1))); !math.IsInf(float64(v), 1) {
		t.Errorf("expf(+Inf) = %v", v)
	}
	if v := expf(float32(math.NaN())); v == v {
		t.Errorf("expf(NaN) = %v", v)
	}
}

func TestBinaryBroadcast(t *testing.T) {
	b := New()
	r := newRand(14)
	const n = 2 * 3 * 4 * 5
	cases := []tensor.Broadcast{
		{Inner: 1, BLen: n},  // same shape
		{Inner: 1, BLen: 5},  // bias over the last dim
		{Inner: 20, BLen: 3}, // per channel of NCHW
		{Inner: 20, BLen: 6}, // per (n, c)
		{Inner: 1, BLen: 1},  // scalar
		{Inner: 7, BLen: 4},  // ragged: blocks do not divide n
	}
	for _, op := range []tensor.BinaryOp{tensor.OpAdd, tensor.OpMul} {
		for _, p := range cases {
			t.Run(fmt.Sprintf("%v/%+v", op, p), func(t *testing.T) {
				a, bv, dy := randn(r, n), randn(r, p.BLen), randn(r, n)
				as, bs, dys := up(b, a), up(b, bv), up(b, dy)
				y := nanStorage(b, n)
				b.Binary(op, y, as, bs, p)
				want := make([]float64, n)
				da, db := make([]float64, n), make([]float64, p.BLen)
				for i := range want {
					j := (i / p.Inner) % p.BLen
					if op == tensor.OpAdd {
						want[i] = float64(a[i] + bv[j])
						da[i] = float64(dy[i])
						db[j] += float64(dy[i])
					} else {
						want[i] = float64(a[i] * bv[j])
						da[i] = float64(dy[i] * bv[j])
						db[j] += float64(dy[i]) * float64(a[i])
					}
				}
				near(t, "y", Float32s(y), want, 1e-7)
				das, dbs := up(b, make([]float32, n)), up(b, make([]float32, p.BLen))
				b.BinaryBackward(op, das, dbs, dys, as, bs, p)
				near(t, "da", Float32s(das), da, 1e-7)
				near(t, "db", Float32s(dbs), db, 1e-6)
				// In place: y aliases a.
				b.Binary(op, as, as, bs, p)
				near(t, "y in place", Float32s(as), want, 1e-7)
			})
		}
	}
}

func TestPermute(t *testing.T) {
	b := New()
	r := newRand(15)
	for _, c := range []struct{ shape, perm []int }{
		{[]int{2, 3, 4}, []int{2, 0, 1}},
		{[]int{2, 5, 3, 4}, []int{0, 2, 1, 3}}, // [B,T,H,D] -> [B,H,T,D]
		{[]int{2, 1, 3, 2, 2, 3}, []int{5, 3, 1, 0, 4, 2}},
		{[]int{7}, []int{0}},
		{[]int{2, 40, 70}, []int{0, 2, 1}},       // NCHW -> NHWC, tiles with ragged edges
		{[]int{3, 33, 2, 35}, []int{2, 3, 0, 1}}, // transpose with two outer dims
		{[]int{2, 37, 3, 5}, []int{0, 2, 3, 1}},
	} {
		n := 1
		for _, d := range c.shape {
			n *= d
		}
		x := randn(r, n)
		y := nanStorage(b, n)
		b.Permute(y, up(b, x), c.shape, c.perm, false)
		// Naive: walk x, compute the output index.
		want := make([]float64, n)
		rank := len(c.shape)
		idx := make([]int, rank)
		for i := 0; i < n; i++ {
			rem := i
			for d := rank - 1; d >= 0; d-- {
				idx[d] = rem % c.shape[d]
				rem /= c.shape[d]
			}
			o := 0
			for d := 0; d < rank; d++ {
				o = o*c.shape[c.perm[d]] + idx[c.perm[d]]
			}
			want[o] = float64(x[i])
		}
		near(t, fmt.Sprint("permute ", c.shape, c.perm), Float32s(y), want, 0)
		b.Permute(y, up(b, x), c.shape, c.perm, true)
		for i := range want {
			want[i] *= 2
		}
		near(t, fmt.Sprint("permute accumulate ", c.shape, c.perm), Float32s(y), want, 0)
	}
	wantOpError(t, "permute", func() {
		b.Permute(b.Alloc(tensor.F32, 6), b.Alloc(tensor.F32, 6), []int{2, 3}, []int{0, 0}, false)
	})
}

func TestResizeBilinear(t *testing.T) {
	b := New()
	// torch.nn.functional.interpolate(torch.tensor([[1.,2],[3,4]])[None,None],
	// size=(4,4), mode="bilinear", align_corners=False)
	y := nanStorage(b, 16)
	b.ResizeBilinear(y, up(b, []float32{1, 2, 3, 4}), 1, 2, 2, 4, 4)
	want := []float64{
		1, 1.25, 1.75, 2,
		1.5, 1.75, 2.25, 2.5,
		2.5, 2.75, 3.25, 3.5,
		3, 3.25, 3.75, 4,
	}
	near(t, "upscale 2x2->4x4", Float32s(y), want, 1e-7)
	// Downscale 1x4 -> 1x3: source x = (d+0.5)*4/3 - 0.5 = 0.1667, 1.5, 2.8333.
	y = nanStorage(b, 3)
	b.ResizeBilinear(y, up(b, []float32{0, 10, 20, 30}), 1, 1, 4, 1, 3)
	near(t, "downscale 4->3", Float32s(y), []float64{1.6666666, 15, 28.333334}, 1e-6)
}

func TestUpsampleEmbedding(t *testing.T) {
	b := New()
	r := newRand(16)
	x := randn(r, 2*2*3)
	y := nanStorage(b, 48)
	b.Upsample2x(y, up(b, x), 2, 2, 3)
	ys := Float32s(y)
	for c := 0; c < 2; c++ {
		for i := 0; i < 4; i++ {
			for j := 0; j < 6; j++ {
				if got, want := ys[(c*4+i)*6+j], x[(c*2+i/2)*3+j/2]; got != want {
					t.Fatalf("upsample y[%d,%d,%d] = %v, want %v", c, i, j, got, want)
				}
			}
		}
	}
	dx := up(b, make([]float32, 12))
	b.Upsample2xBackward(dx, y, 2, 2, 3)
	for i, v := range Float32s(dx) {
		if math.Abs(float64(v-4*x[i])) > 1e-6 {
			t.Fatalf("upsample backward dx[%d] = %v, want %v", i, v, 4*x[i])
		}
	}

	table := randn(r, 5*3)
	ids := []int32{4, 0, 4}
	e := nanStorage(b, 9)
	b.Embedding(e, up(b, table), ids, 3)
	dt := up(b, make([]float32, 15))
	b.EmbeddingBackward(dt, e, ids, 3)
	for i, id := range ids {
		for d := 0; d < 3; d++ {
			if Float32s(e)[i*3+d] != table[int(id)*3+d] {
				t.Fatalf("embedding row %d", i)
			}
		}
	}
	if got, want := Float32s(dt)[12], 2*table[12]; got != want {
		t.Errorf("embedding backward of a repeated id: %v, want %v", got, want)
	}
	wantOpError(t, "embedding", func() { b.Embedding(e, up(b, table), []int32{5, 0, 0}, 3) })
}

func TestAllocFree(t *testing.T) {
	b := New()
	s := b.Alloc(tensor.F32, 100)
	d := Float32s(s)
	b.Free(s)
	if s.Len() != 0 {
		t.Errorf("freed storage still has length %d", s.Len())
	}
	s2 := b.Alloc(tensor.F32, 100)
	if &Float32s(s2)[0] != &d[0] {
		t.Errorf("Alloc after Free of the same size did not reuse the block")
	}
	v := b.View(s2, 10, 20)
	Float32s(v)[0] = 42
	if Float32s(s2)[10] != 42 {
		t.Errorf("view does not share memory")
	}
	b.Free(v) // no-op
	if s2.Len() != 100 {
		t.Errorf("freeing a view changed its parent")
	}
	if n := testing.AllocsPerRun(100, func() { b.Free(b.Alloc(tensor.F32, 1<<16)) }); n > 2 {
		t.Errorf("Alloc/Free cycle makes %v allocations, want ≤ 2 (the wrapper)", n)
	}
	wantOpError(t, "alloc", func() { b.Alloc(tensor.F16, 4) })
	wantOpError(t, "view", func() { b.View(s2, 90, 20) })
}

func TestBadLengths(t *testing.T) {
	b := New()
	a, c := b.Alloc(tensor.F32, 12), b.Alloc(tensor.F32, 13)
	wantOpError(t, "gemm", func() {
		b.Gemm(a, a, c, tensor.GemmParams{M: 3, N: 4, K: 4})
	})
	wantOpError(t, "group_norm", func() {
		b.GroupNorm(a, b.Alloc(tensor.F32, 2), b.Alloc(tensor.F32, 2), a, nil, nil, tensor.NormParams{N: 1, C: 4, HW: 3, Groups: 3})
	})
	wantOpError(t, "layer_norm", func() {
		b.LayerNorm(a, b.Alloc(tensor.F32, 3), b.Alloc(tensor.F32, 3), c, nil, nil, tensor.NormParams{Rows: 3, Cols: 4})
	})
	wantOpError(t, "silu", func() { b.Unary(tensor.OpSiLU, a, c) })
	wantOpError(t, "add", func() { b.Binary(tensor.OpAdd, a, a, c, tensor.Broadcast{Inner: 1, BLen: 4}) })
	wantOpError(t, "softmax", func() { b.Softmax(a, c, 3, 4) })
	wantOpError(t, "mse", func() { b.MSE(b.Alloc(tensor.F32, 3), a, c, 3, 4) })
	wantOpError(t, "adamw", func() { b.AdamW(a, a, a, c, tensor.AdamWParams{Step: 1}) })
	wantOpError(t, "copy_strided", func() {
		b.CopyStrided(a, c, tensor.StridedCopy{Rows: 3, Cols: 4, DstStride: 5, SrcStride: 4})
	})
}

func TestSumSquares(t *testing.T) {
	b := New()
	x := randn(newRand(17), 100003)
	var want float64
	for _, v := range x {
		want += float64(v) * float64(v)
	}
	if got := b.SumSquares(up(b, x)); math.Abs(got-want) > 1e-12*want {
		t.Errorf("SumSquares = %v, want %v", got, want)
	}
	x[5] = float32(math.Inf(1))
	if got := b.SumSquares(up(b, x)); !math.IsInf(got, 1) {
		t.Errorf("SumSquares with an Inf = %v", got)
	}
}

// TestAdamWGolden replays the torch.optim.AdamW cases of the golden set.
func TestAdamWGolden(t *testing.T) {
	root := os.Getenv("LOCO_GOLDEN")
	if root == "" {
		root = filepath.Join("..", "..", "..", "..", "shared", "golden")
	}
	for _, name := range []string{"adamw", "adamw_strong"} {
		dir := filepath.Join(root, name)
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("golden case %s not found (%v); set LOCO_GOLDEN", dir, err)
		}
		t.Run(name, func(t *testing.T) {
			var cfg struct {
				Config struct {
					LR          float64   `json:"lr"`
					Betas       []float64 `json:"betas"`
					Eps         float64   `json:"eps"`
					WeightDecay float64   `json:"weight_decay"`
					Steps       int       `json:"steps"`
				} `json:"config"`
				ByTensor map[string]float64 `json:"tolerance_by_tensor"`
			}
			readJSON(t, filepath.Join(dir, "case.json"), &cfg)
			f, err := safetensors.Open(filepath.Join(dir, "io.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			read := func(n string) []float32 {
				v, err := f.ReadFloat32(n)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			p0, grads, params := read("param0"), read("grads"), read("params")
			n := len(p0)
			b := New()
			ps, ms, vs := up(b, p0), up(b, make([]float32, n)), up(b, make([]float32, n))
			c := cfg.Config
			tol := cfg.ByTensor["params"]
			for step := 1; step <= c.Steps; step++ {
				g := up(b, grads[(step-1)*n:step*n])
				b.AdamW(ps, g, ms, vs, tensor.AdamWParams{
					LR: float32(c.LR), Beta1: float32(c.Betas[0]), Beta2: float32(c.Betas[1]),
					Eps: float32(c.Eps), WeightDecay: float32(c.WeightDecay), Step: step, GradScale: 1,
				})
				near(t, fmt.Sprintf("params after step %d", step), Float32s(ps), to64(params[(step-1)*n:step*n]), tol)
			}
		})
	}
}

// TestExpShift checks the vector exp (when present) against math.Exp,
// including the −Inf of masked scores and lengths off a multiple of 16.
func TestExpShift(t *testing.T) {
	t.Logf("vector exp in use: %v", useVectorExp())
	r := newRand(18)
	for _, n := range []int{1, 15, 16, 17, 77, 100, 1000} {
		x := randn(r, n)
		for i := range x {
			x[i] *= 60
		}
		x[n/2] = float32(math.Inf(-1))
		want := make([]float64, n)
		var wsum float64
		for i, v := range x {
			want[i] = math.Exp(float64(v) - 3)
			wsum += want[i]
		}
		got := append([]float32(nil), x...)
		s := expShift(got, 3)
		near(t, fmt.Sprintf("expShift n=%d", n), got, want, 3e-7)
		if math.Abs(float64(s)-wsum) > 1e-6*wsum {
			t.Errorf("expShift n=%d: sum %v, want %v", n, s, wsum)
		}
		if got[n/2] != 0 {
			t.Errorf("expShift(-Inf) = %v, want 0", got[n/2])
		}
	}
}

func TestSigmoidScaled(t *testing.T) {
	r := newRand(19)
	for _, n := range []int{3, 16, 33, 1000} {
		x := randn(r, n)
		for i := range x {
			x[i] *= 30
		}
		x[0] = float32(math.Inf(-1))
		if n > 1 {
			x[1] = float32(math.Inf(1))
		}
		for _, a := range []float32{1, 1.702} {
			got := make([]float32, n)
			sigmoidScaled(got, x, a)
			want := make([]float64, n)
			for i, v := range x {
				want[i] = 1 / (1 + math.Exp(-float64(a)*float64(v)))
			}
			near(t, fmt.Sprintf("sigmoid n=%d a=%v", n, a), got, want, 3e-7)
		}
	}
}

// TestNormCDF32 compares the float32 Φ with math.Erfc, relatively, down
// into the tail.
func TestNormCDF32(t *testing.T) {
	worst, wx := 0.0, 0.0
	for x := -12.0; x < 8; x += 0.00731 {
		x32 := float32(x)
		want := 0.5 * math.Erfc(-float64(x32)/math.Sqrt2)
		got := float64(normCDF32(x32))
		if want < 1e-30 {
			continue
		}
		if e := math.Abs(got-want) / want; e > worst {
			worst, wx = e, x
		}
	}
	if worst > 1e-6 {
		t.Errorf("normCDF32: worst relative error %.3g at %v", worst, wx)
	}
}

func TestRowMax(t *testing.T) {
	r := newRand(20)
	for _, n := range []int{0, 1, 15, 16, 17, 64, 100} {
		for pos := 0; pos < n; pos += 7 {
			x := randn(r, n)
			x[pos] = 5
			if got := rowMax(x, -1); got != 5 {
				t.Errorf("rowMax n=%d, max at %d: %v", n, pos, got)
			}
		}
		if got := rowMax(randn(r, n), 9); got != 9 {
			t.Errorf("rowMax n=%d with a larger start: %v", n, got)
		}
	}
	x := []float32{float32(math.Inf(-1)), float32(math.Inf(-1))}
	if got := rowMax(x, float32(math.Inf(-1))); !math.IsInf(float64(got), -1) {
		t.Errorf("rowMax of -Inf = %v", got)
	}
}

// TestNormCDFVec checks the vector Φ (when present) relatively, into the
// tail, and on lengths off a multiple of 16.
func TestNormCDFVec(t *testing.T) {
	for _, n := range []int{5, 16, 1000, 2741} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(-13 + 21*float64(i)/float64(n))
		}
		got := make([]float32, n)
		normCDFVec(got, x)
		worst, wi := 0.0, 0
		for i, v := range x {
			want := 0.5 * math.Erfc(-float64(v)/math.Sqrt2)
			if want < 1e-30 {
				continue
			}
			e := math.Abs(float64(got[i])-want) / want
			if v < -6 {
				// Beyond 6σ (Φ < 1e-9) the float32 exponent −x²/2
				// rounds to a relative 6e-8·x²/2.
				e /= 10
			}
			if e > worst {
				worst, wi = e, i
			}
		}
		// float32 rounding of x/√2 alone costs a relative 1.2e-7·x²/2.
		if worst > 4e-6 {
			t.Errorf("normCDFVec n=%d: worst relative error %.3g at x=%v", n, worst, x[wi])
		}
	}
}

func TestAxpy32(t *testing.T) {
	r := newRand(21)
	for _, n := range []int{1, 16, 37, 1000} {
		y, x := randn(r, n), randn(r, n+3)
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(y[i]) + 0.75*float64(x[i])
		}
		axpy32(y, x, 0.75)
		near(t, fmt.Sprintf("axpy32 n=%d", n), y, want, 1e-7)
	}
}

// TestScale covers the copy path (alpha 1, used by the tape to hand a
// gradient over) and the multiply loop, on lengths below and above the
// parallel threshold.
func TestScale(t *testing.T) {
	b := New()
	r := newRand(5)
	for _, n := range []int{1, 17, minParallelWork + 3} {
		x := randn(r, n)
		for _, alpha := range []float32{1, -0.5, 3} {
			y := nanStorage(b, n)
			b.Scale(y, up(b, x), alpha)
			got := Float32s(y)
			for i := range x {
				if got[i] != alpha*x[i] {
					t.Fatalf("scale n=%d alpha=%g: y[%d] = %g, want %g", n, alpha, i, got[i], alpha*x[i])
				}
			}
		}
	}
}

// TestBinaryVec checks the same-shape add and multiply (vector body and
// scalar tail) element for element against the scalar arithmetic.
func TestBinaryVec(t *testing.T) {
	r := newRand(9)
	for _, n := range []int{3, 16, 37, 1000} {
		a, b := randn(r, n), randn(r, n)
		for _, op := range []tensor.BinaryOp{tensor.OpAdd, tensor.OpMul} {
			y := make([]float32, n)
			for i := range y {
				y[i] = float32(math.NaN())
			}
			binaryVec(op, y, a, b)
			for i := range y {
				want := a[i] + b[i]
				if op == tensor.OpMul {
					want = a[i] * b[i]
				}
				if y[i] != want {
					t.Fatalf("%v n=%d: y[%d] = %g, want %g", op, n, i, y[i], want)
				}
			}
		}
	}
}

// TestConcurrently: every function runs once, both orders of finishing
// are fine, and a panic in one (on whichever goroutine ran it) reaches
// the caller after the others have returned.
func TestConcurrently(t *testing.T) {
	b := New()
	for _, threads := range []int{1, 2} {
		SetThreads(threads)
		got := make([]float32, 2)
		x := randn(newRand(3), minParallelWork*2)
		b.Concurrently(func() { got[0] = float32(b.SumSquares(up(b, x))) }, func() { got[1] = float32(sumSquares(x)) })
		if got[0] == 0 || got[0] != got[1] {
			t.Errorf("threads %d: results %v, want two equal non-zero sums", threads, got)
		}
		done := false
		func() {
			defer func() {
				if r := recover(); r == nil || !done {
					t.Errorf("threads %d: recovered %v after the other ran: %v", threads, r, done)
				}
			}()
			b.Concurrently(func() { panic("conv2d_backward_filter: boom") }, func() { done = true })
		}()
	}
	SetThreads(0)
}
