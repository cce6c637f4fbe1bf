package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"loco/pkg/tensor"
)

// The reference backward halves against central finite differences of the
// reference forward halves, in float64, on tiny shapes. Each check uses the
// scalar loss L = Σ dy·y with random dy, so dL/dinput is what a backward
// half computes from dy.

const fdTol = 1e-6 // relative L2 between analytic and numeric gradients

func randVec(r *rand.Rand, n int, mean, dev float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = mean + dev*r.NormFloat64()
	}
	return v
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// numGrad is the central-difference gradient of loss with respect to x;
// loss must read x.
func numGrad(x []float64, loss func() float64) []float64 {
	g := make([]float64, len(x))
	for i := range x {
		old := x[i]
		h := 1e-5 * math.Max(1, math.Abs(old))
		x[i] = old + h
		up := loss()
		x[i] = old - h
		down := loss()
		x[i] = old
		g[i] = (up - down) / (2 * h)
	}
	return g
}

func checkGrad(t *testing.T, what string, analytic, numeric []float64) {
	t.Helper()
	var num, den float64
	worst, worstErr := 0, -1.0
	for i := range analytic {
		d := analytic[i] - numeric[i]
		num += d * d
		den += numeric[i] * numeric[i]
		if math.Abs(d) > worstErr {
			worst, worstErr = i, math.Abs(d)
		}
	}
	if den == 0 {
		t.Fatalf("%s: the numeric gradient is all zero; the check would prove nothing", what)
	}
	if rel := math.Sqrt(num / den); !(rel <= fdTol) {
		t.Errorf("%s: analytic vs finite-difference gradient: relative L2 %.3g > %.3g; worst at [%d]: analytic %.9g, numeric %.9g",
			what, rel, fdTol, worst, analytic[worst], numeric[worst])
	}
}

func TestReferenceGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))

	t.Run("Conv2D", func(t *testing.T) {
		for _, p := range []tensor.ConvParams{
			{N: 2, C: 2, H: 5, W: 4, K: 3, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
			{N: 1, C: 3, H: 6, W: 7, K: 2, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
			{N: 1, C: 2, H: 4, W: 5, K: 2, R: 1, S: 3, StrideH: 1, StrideW: 2, PadH: 0, PadW: 1},
		} {
			nx, nw, ny := convLens(p)
			x, w, bias, dy := randVec(r, nx, 0, 1), randVec(r, nw, 0, 1), randVec(r, p.K, 0, 1), randVec(r, ny, 0, 1)
			loss := func() float64 {
				y := make([]float64, ny)
				refConv2D(y, x, w, bias, p)
				return dot(dy, y)
			}
			dx, dw, db := make([]float64, nx), make([]float64, nw), make([]float64, p.K)
			refConv2DBackwardData(dx, dy, w, p)
			refConv2DBackwardFilter(dw, db, dy, x, p)
			name := fmt.Sprintf("%+v", p)
			checkGrad(t, name+" dx", dx, numGrad(x, loss))
			checkGrad(t, name+" dw", dw, numGrad(w, loss))
			checkGrad(t, name+" dbias", db, numGrad(bias, loss))
		}
	})

	t.Run("GroupNorm", func(t *testing.T) {
		for _, silu := range []bool{false, true} {
			for _, affine := range []bool{false, true} {
				p := tensor.NormParams{N: 2, C: 6, HW: 4, Groups: 3, Eps: 1e-5, SiLU: silu}
				n := p.N * p.C * p.HW
				x, dy := randVec(r, n, 0.5, 1.2), randVec(r, n, 0, 1)
				var gamma, beta []float64
				if affine {
					gamma, beta = randVec(r, p.C, 1, 0.5), randVec(r, p.C, 0, 1)
				}
				loss := func() float64 {
					y, m, s := make([]float64, n), make([]float64, p.N*p.Groups), make([]float64, p.N*p.Groups)
					refGroupNorm(y, m, s, x, gamma, beta, p)
					return dot(dy, y)
				}
				dx, dg, db := make([]float64, n), make([]float64, p.C), make([]float64, p.C)
				refGroupNormBackward(dx, dg, db, dy, x, gamma, beta, p)
				name := fmt.Sprintf("silu=%v affine=%v", silu, affine)
				checkGrad(t, name+" dx", dx, numGrad(x, loss))
				if affine {
					checkGrad(t, name+" dgamma", dg, numGrad(gamma, loss))
					checkGrad(t, name+" dbeta", db, numGrad(beta, loss))
				}
			}
		}
	})

	t.Run("LayerNorm", func(t *testing.T) {
		p := tensor.NormParams{Rows: 3, Cols: 7, Eps: 1e-5}
		n := p.Rows * p.Cols
		x, dy := randVec(r, n, 0.5, 1.2), randVec(r, n, 0, 1)
		gamma, beta := randVec(r, p.Cols, 1, 0.5), randVec(r, p.Cols, 0, 1)
		loss := func() float64 {
			y, m, s := make([]float64, n), make([]float64, p.Rows), make([]float64, p.Rows)
			refLayerNorm(y, m, s, x, gamma, beta, p)
			return dot(dy, y)
		}
		dx, dg, db := make([]float64, n), make([]float64, p.Cols), make([]float64, p.Cols)
		refLayerNormBackward(dx, dg, db, dy, x, gamma, p)
		checkGrad(t, "dx", dx, numGrad(x, loss))
		checkGrad(t, "dgamma", dg, numGrad(gamma, loss))
		checkGrad(t, "dbeta", db, numGrad(beta, loss))
	})

	t.Run("Unary", func(t *testing.T) {
		for _, op := range []tensor.UnaryOp{tensor.OpSiLU, tensor.OpGELU, tensor.OpQuickGELU} {
			x, dy := randVec(r, 50, 0, 2.5), randVec(r, 50, 0, 1)
			loss := func() float64 {
				y := make([]float64, len(x))
				refUnary(op, y, x)
				return dot(dy, y)
			}
			dx := make([]float64, len(x))
			refUnaryBackward(op, dx, dy, x)
			checkGrad(t, op.String()+" dx", dx, numGrad(x, loss))
		}
	})

	t.Run("GEGLU", func(t *testing.T) {
		rows, half := 3, 5
		x, dy := randVec(r, rows*2*half, 0, 2), randVec(r, rows*half, 0, 1)
		loss := func() float64 {
			y := make([]float64, rows*half)
			refGEGLU(y, x, rows, half)
			return dot(dy, y)
		}
		dx := make([]float64, len(x))
		refGEGLUBackward(dx, dy, x, rows, half)
		checkGrad(t, "dx", dx, numGrad(x, loss))
	})

	t.Run("Softmax", func(t *testing.T) {
		rows, cols := 4, 6
		x, dy := randVec(r, rows*cols, 0, 2), randVec(r, rows*cols, 0, 1)
		y := make([]float64, rows*cols)
		refSoftmax(y, x, rows, cols)
		loss := func() float64 {
			y := make([]float64, rows*cols)
			refSoftmax(y, x, rows, cols)
			return dot(dy, y)
		}
		dx := make([]float64, len(x))
		refSoftmaxBackward(dx, dy, y, rows, cols)
		checkGrad(t, "dx", dx, numGrad(x, loss))
	})

	t.Run("Attention", func(t *testing.T) {
		for _, p := range []tensor.AttnParams{
			{B: 2, H: 2, Tq: 3, Tk: 5, D: 4, Scale: 0.5},
			{B: 1, H: 2, Tq: 4, Tk: 4, D: 3, Scale: 0.7, Causal: true},
		} {
			nq, nk, nl := attnLens(p)
			q, k, v, do := randVec(r, nq, 0, 1), randVec(r, nk, 0, 1), randVec(r, nk, 0, 1), randVec(r, nq, 0, 1)
			loss := func() float64 {
				o, l := make([]float64, nq), make([]float64, nl)
				refAttention(o, l, q, k, v, p)
				return dot(do, o)
			}
			dq, dk, dv := make([]float64, nq), make([]float64, nk), make([]float64, nk)
			refAttentionBackward(dq, dk, dv, do, q, k, v, p)
			name := fmt.Sprintf("%+v", p)
			checkGrad(t, name+" dq", dq, numGrad(q, loss))
			checkGrad(t, name+" dk", dk, numGrad(k, loss))
			checkGrad(t, name+" dv", dv, numGrad(v, loss))
		}
	})

	t.Run("Binary", func(t *testing.T) {
		for _, bc := range []struct {
			n int
			p tensor.Broadcast
		}{
			{35, tensor.Broadcast{Inner: 1, BLen: 7}},
			{30, tensor.Broadcast{Inner: 5, BLen: 3}},
			{30, tensor.Broadcast{Inner: 5, BLen: 6}},
			{29, tensor.Broadcast{Inner: 1, BLen: 29}},
			{11, tensor.Broadcast{Inner: 1, BLen: 1}},
		} {
			for _, op := range []tensor.BinaryOp{tensor.OpAdd, tensor.OpMul} {
				a, b, dy := randVec(r, bc.n, 0, 1), randVec(r, bc.p.BLen, 0, 1), randVec(r, bc.n, 0, 1)
				loss := func() float64 {
					y := make([]float64, bc.n)
					refBinary(op, y, a, b, bc.p)
					return dot(dy, y)
				}
				da, db := make([]float64, len(a)), make([]float64, len(b))
				refBinaryBackward(op, da, db, dy, a, b, bc.p)
				name := fmt.Sprintf("%v %+v", op, bc.p)
				checkGrad(t, name+" da", da, numGrad(a, loss))
				checkGrad(t, name+" db", db, numGrad(b, loss))
			}
		}
	})

	t.Run("Upsample2x", func(t *testing.T) {
		nc, h, w := 2, 3, 5
		x, dy := randVec(r, nc*h*w, 0, 1), randVec(r, 4*nc*h*w, 0, 1)
		loss := func() float64 {
			y := make([]float64, 4*nc*h*w)
			refUpsample2x(y, x, nc, h, w)
			return dot(dy, y)
		}
		dx := make([]float64, len(x))
		refUpsample2xBackward(dx, dy, nc, h, w)
		checkGrad(t, "dx", dx, numGrad(x, loss))
	})

	t.Run("Embedding", func(t *testing.T) {
		vocab, dim := 6, 4
		ids := []int32{2, 5, 2, 0, 2}
		table, dy := randVec(r, vocab*dim, 0, 1), randVec(r, len(ids)*dim, 0, 1)
		loss := func() float64 {
			y := make([]float64, len(ids)*dim)
			refEmbedding(y, table, ids, dim)
			return dot(dy, y)
		}
		dt := make([]float64, len(table))
		refEmbeddingBackward(dt, dy, ids, dim)
		checkGrad(t, "dtable", dt, numGrad(table, loss))
	})

	t.Run("MSE", func(t *testing.T) {
		rows, cols := 3, 5
		a, b, g := randVec(r, rows*cols, 0, 1), randVec(r, rows*cols, 0, 1), randVec(r, rows, 0, 1)
		loss := func() float64 {
			l := make([]float64, rows)
			refMSE(l, a, b, rows, cols)
			return dot(g, l)
		}
		da, db := make([]float64, len(a)), make([]float64, len(b))
		refMSEBackward(da, db, g, a, b, rows, cols)
		checkGrad(t, "da", da, numGrad(a, loss))
		checkGrad(t, "db", db, numGrad(b, loss))
	})
}

// TestReferenceHandCases pins the reference on values worked out by hand,
// so that a reference and a backend cannot agree on the same mistake.
func TestReferenceHandCases(t *testing.T) {
	near := func(what string, got, want []float64) {
		t.Helper()
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-12*math.Max(1, math.Abs(want[i])) {
				t.Errorf("%s: [%d] = %.15g, want %.15g", what, i, got[i], want[i])
			}
		}
	}
	// Gemm: [1 2; 3 4]·[5 6; 7 8] = [19 22; 43 50]; with TransA the first is [1 3; 2 4].
	c := make([]float64, 4)
	refGemm(c, []float64{1, 2, 3, 4}, []float64{5, 6, 7, 8}, tensor.GemmParams{M: 2, N: 2, K: 2, Alpha: 1})
	near("Gemm NN", c, []float64{19, 22, 43, 50})
	refGemm(c, []float64{1, 2, 3, 4}, []float64{5, 6, 7, 8}, tensor.GemmParams{M: 2, N: 2, K: 2, TransA: true, Alpha: 1, Beta: 1})
	near("Gemm TN + C", c, []float64{19 + 26, 22 + 30, 43 + 38, 50 + 44})

	// Conv: a 3×3 image of 1..9, a 2×2 kernel of ones, no padding: window sums.
	y := make([]float64, 4)
	refConv2D(y, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, []float64{1, 1, 1, 1}, []float64{0.5},
		tensor.ConvParams{N: 1, C: 1, H: 3, W: 3, K: 1, R: 2, S: 2, StrideH: 1, StrideW: 1})
	near("Conv2D", y, []float64{12.5, 16.5, 24.5, 28.5})

	// LayerNorm of [1 2 3]: mean 2, variance 2/3.
	ln, m, s := make([]float64, 3), make([]float64, 1), make([]float64, 1)
	refLayerNorm(ln, m, s, []float64{1, 2, 3}, []float64{1, 1, 1}, []float64{0, 0, 0}, tensor.NormParams{Rows: 1, Cols: 3})
	k := math.Sqrt(1.5)
	near("LayerNorm", ln, []float64{-k, 0, k})
	near("LayerNorm mean, rstd", []float64{m[0], s[0]}, []float64{2, k})

	// GELU(1) = Φ(1) = 0.841344746068543; SiLU(1) = 1/(1+e⁻¹); QuickGELU(1) = 1/(1+e^-1.702).
	u := make([]float64, 3)
	refUnary(tensor.OpGELU, u[0:1], []float64{1})
	refUnary(tensor.OpSiLU, u[1:2], []float64{1})
	refUnary(tensor.OpQuickGELU, u[2:3], []float64{1})
	near("Unary at 1", u, []float64{0.841344746068543, 1 / (1 + math.Exp(-1)), 1 / (1 + math.Exp(-1.702))})

	// Attention with one key returns its value; with two equal keys, their mean.
	o, l := make([]float64, 2), make([]float64, 1)
	refAttention(o, l, []float64{1, 0}, []float64{3, 3, 3, 3}, []float64{1, 2, 5, 6}, tensor.AttnParams{B: 1, H: 1, Tq: 1, Tk: 2, D: 2, Scale: 1})
	near("Attention, equal keys", append(o, l[0]), []float64{3, 4, 3 + math.Log(2)})

	// Bilinear 2×2 → 4×4 (align_corners=false): PyTorch gives the first row
	// of [[1,2],[3,4]] as [1, 1.25, 1.75, 2].
	rz := make([]float64, 16)
	refResizeBilinear(rz, []float64{1, 2, 3, 4}, 1, 2, 2, 4, 4)
	near("ResizeBilinear row 0", rz[:4], []float64{1, 1.25, 1.75, 2})
	near("ResizeBilinear row 1", rz[4:8], []float64{1.5, 1.75, 2.25, 2.5})

	// AdamW step 1 from zero moments: m = (1-β1)g, v = (1-β2)g², and the
	// bias-corrected update is lr·sign(g) (up to eps).
	pv, gv, mv, vv := []float64{1}, []float64{2}, []float64{0}, []float64{0}
	refAdamW(pv, gv, mv, vv, tensor.AdamWParams{LR: 0.1, Beta1: 0.9, Beta2: 0.999, Eps: 0, WeightDecay: 0.5, Step: 1, GradScale: 1})
	lr, b1, b2 := float64(float32(0.1)), float64(float32(0.9)), float64(float32(0.999))
	near("AdamW step 1", []float64{pv[0], mv[0], vv[0]}, []float64{1*(1-lr*0.5) - lr, (1 - b1) * 2, (1 - b2) * 4})
}
