package cpu

import (
	"fmt"
	"testing"

	"loco/pkg/tensor"
)

// gemmRef is the reference product, generic so that tests can run it in
// float64: C = alpha*op(A)*op(B) + beta*C, row-major, beta == 0 does not
// read C. Loops are ordered so that the innermost one walks rows of B and C.
func gemmRef[T float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
		} else if beta != 1 {
			for j := range ci {
				ci[j] *= beta
			}
		}
		if alpha == 0 {
			continue
		}
		for l := 0; l < k; l++ {
			ail := a[i*lda+l]
			if transA {
				ail = a[l*lda+i]
			}
			ail *= alpha
			if !transB {
				bl := b[l*ldb : l*ldb+n]
				for j := range ci {
					ci[j] += ail * bl[j]
				}
			} else {
				for j := range ci {
					ci[j] += ail * b[j*ldb+l]
				}
			}
		}
	}
}

// TestGemmBatched checks Backend.Gemm (all transposes, padded leading
// dimensions, strided and broadcast batches, beta ≠ 0) against gemmRef in
// float64.
func TestGemmBatched(t *testing.T) {
	be := New()
	r := newRand(22)
	const m, n, k, batch = 13, 37, 21, 3
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for _, bcastB := range []bool{false, true} {
				p := tensor.GemmParams{TransA: ta, TransB: tb, M: m, N: n, K: k, Batch: batch, Alpha: 0.5, Beta: 1.5}
				ar, ac, br, bc := m, k, k, n
				if ta {
					ar, ac = k, m
				}
				if tb {
					br, bc = n, k
				}
				p.LDA, p.LDB, p.LDC = ac+3, bc+1, n+2
				p.StrideA, p.StrideB, p.StrideC = ar*p.LDA+5, br*p.LDB, m*p.LDC+1
				if bcastB {
					p.StrideB = 0
				}
				a := randn(r, (batch-1)*p.StrideA+ar*p.LDA)
				bm := randn(r, (batch-1)*p.StrideB+br*p.LDB)
				c := randn(r, (batch-1)*p.StrideC+m*p.LDC)
				want := to64(c)
				a64, b64 := to64(a), to64(bm)
				for i := 0; i < batch; i++ {
					gemmRef(ta, tb, m, n, k, 0.5, a64[i*p.StrideA:], p.LDA, b64[i*p.StrideB:], p.LDB, 1.5, want[i*p.StrideC:], p.LDC)
				}
				cs := up(be, c)
				be.Gemm(cs, up(be, a), up(be, bm), p)
				near(t, fmt.Sprintf("gemm transA=%v transB=%v broadcastB=%v", ta, tb, bcastB), Float32s(cs), want, 1e-6)
			}
		}
	}
}
