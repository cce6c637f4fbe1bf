package backendtest

import (
	"fmt"
	"strings"
	"testing"

	"loco/pkg/tensor"
)

// recorder is a tb that collects failures instead of failing the test, so
// that the suite can be run against deliberately broken backends.
type recorder struct{ msgs []string }

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Errorf(format string, a ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, a...))
}

// Each broken backend is the reference with one fault.
type (
	unaryOff          struct{ refBackend } // Unary output off by 0.1%
	convOverwrites    struct{ refBackend } // Conv2DBackwardData overwrites dx instead of adding
	softmaxUnwritten  struct{ refBackend } // Softmax leaves the last element unwritten
	layerNormClobbers struct{ refBackend } // LayerNorm writes into its input x
	attnNoMask        struct{ refBackend } // Attention ignores the causal mask
	gemmNoBeta        struct{ refBackend } // Gemm ignores Beta (never accumulates into C)
	gemmLDC           struct{ refBackend } // Gemm treats C as tight whatever LDC is
	gnDropsDgamma     struct{ refBackend } // GroupNormBackward never writes dgamma
	binaryInner1      struct{ refBackend } // Binary ignores Broadcast.Inner
	permuteNoAcc      struct{ refBackend } // Permute ignores accumulate
	embDedup          struct{ refBackend } // EmbeddingBackward adds a repeated id once
	adamNoScale       struct{ refBackend } // AdamW ignores GradScale
	mseSum            struct{ refBackend } // MSE sums instead of averaging
	stridedOverrun    struct{ refBackend } // CopyStrided copies one element too many per row
	sumSquaresNoNaN   struct{ refBackend } // SumSquares skips NaN
	gemmNoCheck       struct{ refBackend } // Gemm checks no lengths (and indexes out of range)
)

func (b gemmNoCheck) Gemm(c, a, bb tensor.Storage, p tensor.GemmParams) {
	cv := get(c)
	refGemm(cv, get(a), get(bb), p)
	put(c, cv)
}

func (b unaryOff) Unary(op tensor.UnaryOp, y, x tensor.Storage) {
	b.refBackend.Unary(op, y, x)
	b.refBackend.Scale(y, y, 1.001)
}

func (b convOverwrites) Conv2DBackwardData(dx, dy, w tensor.Storage, p tensor.ConvParams) {
	b.Fill(dx, 0)
	b.refBackend.Conv2DBackwardData(dx, dy, w, p)
}

func (b softmaxUnwritten) Softmax(y, x tensor.Storage, rows, cols int) {
	tmp := b.Alloc(y.DType(), y.Len())
	b.refBackend.Softmax(tmp, x, rows, cols)
	b.CopyStrided(y, tmp, tensor.StridedCopy{Rows: 1, Cols: y.Len() - 1})
}

func (b layerNormClobbers) LayerNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	b.refBackend.LayerNorm(y, mean, rstd, x, gamma, beta, p)
	b.Copy(x, y)
}

func (b attnNoMask) Attention(o, lse, q, k, v tensor.Storage, p tensor.AttnParams) {
	p.Causal = false
	b.refBackend.Attention(o, lse, q, k, v, p)
}

func (b gemmNoBeta) Gemm(c, a, bb tensor.Storage, p tensor.GemmParams) {
	p.Beta = 0
	b.refBackend.Gemm(c, a, bb, p)
}

func (b gemmLDC) Gemm(c, a, bb tensor.Storage, p tensor.GemmParams) {
	p.LDC = p.N
	b.refBackend.Gemm(c, a, bb, p)
}

func (b gnDropsDgamma) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta tensor.Storage, p tensor.NormParams) {
	b.refBackend.GroupNormBackward(dx, nil, dbeta, dy, x, mean, rstd, gamma, beta, p)
}

func (b binaryInner1) Binary(op tensor.BinaryOp, y, a, bb tensor.Storage, p tensor.Broadcast) {
	p.Inner = 1
	b.refBackend.Binary(op, y, a, bb, p)
}

func (b permuteNoAcc) Permute(y, x tensor.Storage, shape, perm []int, accumulate bool) {
	b.refBackend.Permute(y, x, shape, perm, false)
}

func (b embDedup) EmbeddingBackward(dtable, dy tensor.Storage, ids []int32, dim int) {
	seen := map[int32]bool{}
	for i, id := range ids {
		if !seen[id] {
			seen[id] = true
			b.refBackend.EmbeddingBackward(dtable, b.View(dy, i*dim, dim), []int32{id}, dim)
		}
	}
}

func (b adamNoScale) AdamW(param, grad, m, v tensor.Storage, p tensor.AdamWParams) {
	p.GradScale = 1
	b.refBackend.AdamW(param, grad, m, v, p)
}

func (b mseSum) MSE(loss, a, bb tensor.Storage, rows, cols int) {
	b.refBackend.MSE(loss, a, bb, rows, cols)
	b.Scale(loss, loss, float32(cols))
}

func (b stridedOverrun) CopyStrided(dst, src tensor.Storage, p tensor.StridedCopy) {
	if p.DstOff+(p.Rows-1)*p.DstStride+p.Cols < dst.Len() && p.SrcOff+(p.Rows-1)*p.SrcStride+p.Cols < src.Len() {
		p.Cols++
	}
	b.refBackend.CopyStrided(dst, src, p)
}

func (b sumSquaresNoNaN) SumSquares(x tensor.Storage) float64 {
	var s float64
	for _, v := range get(x) {
		if v == v {
			s += v * v
		}
	}
	return s
}

// TestSuiteCatchesBugs runs the cases of the broken op against each broken
// backend and requires at least one reported failure whose message says
// what went wrong.
func TestSuiteCatchesBugs(t *testing.T) {
	for _, f := range []struct {
		op      string
		b       tensor.Backend
		dtypes  []tensor.DType
		message string // a phrase the failure must contain
	}{
		{"Unary", unaryOff{}, []tensor.DType{tensor.F32}, "relative L2 error"},
		{"Conv2DBackwardData", convOverwrites{}, []tensor.DType{tensor.F32, tensor.BF16}, "must be added to"},
		{"Softmax", softmaxUnwritten{}, []tensor.DType{tensor.F32, tensor.F16}, "NaN"},
		{"LayerNorm", layerNormClobbers{}, []tensor.DType{tensor.F32, tensor.BF16}, "modified its input x"},
		{"Attention", attnNoMask{}, []tensor.DType{tensor.F32, tensor.BF16}, "relative L2 error"},
		{"Gemm", gemmNoBeta{}, []tensor.DType{tensor.F32, tensor.F16}, "relative L2 error"},
		{"Gemm", gemmLDC{}, []tensor.DType{tensor.F32}, "NaN"},
		{"GroupNormBackward", gnDropsDgamma{}, []tensor.DType{tensor.F32}, "dgamma"},
		{"Binary", binaryInner1{}, []tensor.DType{tensor.F32, tensor.BF16}, "relative L2 error"},
		{"Permute", permuteNoAcc{}, []tensor.DType{tensor.F32}, "relative L2 error"},
		{"EmbeddingBackward", embDedup{}, []tensor.DType{tensor.F32, tensor.BF16}, "must be added to"},
		{"AdamW", adamNoScale{}, []tensor.DType{tensor.F32, tensor.F16}, "AdamW step 1"},
		{"MSE", mseSum{}, []tensor.DType{tensor.F32}, "loss"},
		{"CopyStrided", stridedOverrun{}, []tensor.DType{tensor.F32}, "outside the rows must be untouched"},
		{"SumSquares", sumSquaresNoNaN{}, []tensor.DType{tensor.F32}, "want NaN"},
		{"BadInput", gemmNoCheck{}, []tensor.DType{tensor.F32}, "panicked with runtime.boundsError"},
	} {
		for _, dt := range f.dtypes {
			t.Run(fmt.Sprintf("%T/%v", f.b, dt), func(t *testing.T) {
				rec := &recorder{}
				ran, failed := 0, 0
				for _, c := range cases() {
					if c.op != f.op {
						continue
					}
					ran++
					if !runCase(rec, f.b, Options{DType: dt}, c) {
						failed++
					}
				}
				if ran == 0 {
					t.Fatalf("no cases for op %s", f.op)
				}
				if failed == 0 {
					t.Fatalf("the suite passed a backend whose %s is broken (%d cases)", f.op, ran)
				}
				all := strings.Join(rec.msgs, "\n")
				if !strings.Contains(all, f.message) {
					t.Errorf("no failure message mentions %q; got:\n%s", f.message, all)
				}
				t.Logf("%d of %d %s cases failed, as they should; first: %s", failed, ran, f.op, rec.msgs[0])
			})
		}
	}
}

// TestFailureReport pins the shape of a failure message: the metric, the
// worst element and the first values (STYLE §6).
func TestFailureReport(t *testing.T) {
	rec := &recorder{}
	e := newEnv(rec, refBackend{}, Options{DType: tensor.F32}, "Op/case")
	ok := e.check("Op", "y", []float32{1, 2, 3.5, 4}, []float64{1, 2, 3, 4}, 1e-5)
	if ok || len(rec.msgs) != 1 {
		t.Fatalf("check passed a wrong output or reported %d messages", len(rec.msgs))
	}
	for _, want := range []string{"Op/case", "relative L2 error 0.0913", "worst at [2]: got 3.5, want 3", "first values: got [ 1 2 3.5 4 ] want [ 1 2 3 4 ]"} {
		if !strings.Contains(rec.msgs[0], want) {
			t.Errorf("report %q lacks %q", rec.msgs[0], want)
		}
	}
	rec.msgs = nil
	if e.check("Op", "y", []float32{1, float32(nans(1)[0])}, []float64{1, 2}, 1) || !strings.Contains(rec.msgs[0], "1 NaN/Inf elements") {
		t.Errorf("a NaN output was not reported as such: %q", rec.msgs)
	}
}
