package backendtest

import (
	"fmt"

	"loco/pkg/tensor"
)

func gemmCases() []testCase {
	var ps []tensor.GemmParams
	for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		ta, tb := tr[0], tr[1]
		// Tight leading dimensions (zero: the backend fills them in).
		ps = append(ps, tensor.GemmParams{TransA: ta, TransB: tb, M: 7, N: 13, K: 5, Alpha: 1})
		// Leading dimensions wider than tight: the gaps must stay untouched.
		g := tensor.GemmParams{TransA: ta, TransB: tb, M: 11, N: 3, K: 17, Alpha: 1}.Tight()
		g.LDA += 3
		g.LDB += 2
		g.LDC += 5
		ps = append(ps, g)
		// Batched, with gaps between the C matrices, alpha and accumulate.
		g = tensor.GemmParams{TransA: ta, TransB: tb, M: 5, N: 9, K: 8, Batch: 3, Alpha: 0.5, Beta: 1}
		g.StrideA, g.StrideB, g.StrideC = 5*8+1, 9*8+3, 5*9+4
		ps = append(ps, g)
	}
	ps = append(ps,
		tensor.GemmParams{M: 1, N: 1, K: 1, Alpha: 1},
		tensor.GemmParams{M: 1, N: 31, K: 29, Alpha: 1},               // a row vector
		tensor.GemmParams{M: 37, N: 1, K: 64, TransB: true, Alpha: 1}, // a column
		tensor.GemmParams{M: 3, N: 5, K: 2, Alpha: -1.5, Beta: 0.25},
		// Batch stride 0 broadcasts: a shared weight (B), a shared A.
		tensor.GemmParams{M: 6, N: 7, K: 10, TransB: true, Batch: 4, StrideA: 60, StrideB: 0, StrideC: 42, Alpha: 1},
		tensor.GemmParams{M: 6, N: 7, K: 10, Batch: 3, StrideA: 0, StrideB: 70, StrideC: 42, Alpha: 1, Beta: 1},
		// Attention-like: batch of (T×D)·(T×D)^T.
		tensor.GemmParams{M: 19, N: 23, K: 40, TransB: true, Batch: 2, StrideA: 19 * 40, StrideB: 23 * 40, StrideC: 19 * 23, Alpha: 0.125},
		// Medium, SD-like: 256 tokens through a 320→640 linear layer.
		tensor.GemmParams{M: 256, N: 640, K: 320, TransB: true, Alpha: 1},
	)
	var cs []testCase
	for _, p := range ps {
		name := fmt.Sprintf("Gemm/%s_%s%s_ld%d,%d,%d_b%d_s%d,%d,%d_a%g_b%g", dims(p.M, p.N, p.K),
			tchar(p.TransA), tchar(p.TransB), p.LDA, p.LDB, p.LDC, p.Batch, p.StrideA, p.StrideB, p.StrideC, p.Alpha, p.Beta)
		cs = append(cs, testCase{"Gemm", name, func(e *env) { testGemm(e, p) }})
	}
	return cs
}

func tchar(t bool) string {
	if t {
		return "T"
	}
	return "N"
}

// gemmSizes returns the number of elements each operand spans.
func gemmSizes(p tensor.GemmParams) (na, nb, nc int) {
	t := p.Tight()
	rowsA, rowsB := t.M, t.K
	if t.TransA {
		rowsA = t.K
	}
	if t.TransB {
		rowsB = t.N
	}
	na = (t.Batch-1)*t.StrideA + rowsA*t.LDA
	nb = (t.Batch-1)*t.StrideB + rowsB*t.LDB
	nc = (t.Batch-1)*t.StrideC + t.M*t.LDC
	return
}

func testGemm(e *env, p tensor.GemmParams) {
	e.t.Helper()
	na, nb, nc := gemmSizes(p)
	av, bv := e.data(na), e.data(nb)
	// C starts random; with Beta == 0 the elements the product writes start
	// as NaN (they must not be read), while the gaps between rows and
	// matrices keep random values that must survive.
	cv := e.data(nc)
	if p.Beta == 0 {
		t := p.Tight()
		for i := 0; i < t.Batch; i++ {
			for m := 0; m < t.M; m++ {
				for n := 0; n < t.N; n++ {
					cv[i*t.StrideC+m*t.LDC+n] = nans(1)[0]
				}
			}
		}
	}
	want := f64(cv)
	refGemm(want, f64(av), f64(bv), p)
	a, b := e.in("a", e.dt, av), e.in("b", e.dt, bv)
	c := e.buf(e.dt, cv)
	e.b.Gemm(c, a, b, p)
	e.checkInputs("Gemm")
	e.check("Gemm", "c", e.get(c), want, e.tol)
}
