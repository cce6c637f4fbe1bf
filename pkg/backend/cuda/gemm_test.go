package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"loco/pkg/tensor"
)

// cublasRef is cuBLAS's strided-batched GEMM in its own column-major terms,
// as documented: C = alpha op(A) op(B) + beta C, element (i,j) at i + j*ld.
func cublasRef(g colMajorGemm, alpha, beta float64, A, B, C []float64) {
	at := func(M []float64, base, ld, i, j int, trans bool) float64 {
		if trans {
			i, j = j, i
		}
		return M[base+i+j*ld]
	}
	for bt := 0; bt < g.batch; bt++ {
		for i := 0; i < g.m; i++ {
			for j := 0; j < g.n; j++ {
				var s float64
				for l := 0; l < g.k; l++ {
					s += at(A, bt*g.strideA, g.lda, i, l, g.transa == cublasOpT) * at(B, bt*g.strideB, g.ldb, l, j, g.transb == cublasOpT)
				}
				ci := bt*g.strideC + i + j*g.ldc
				if beta == 0 {
					C[ci] = alpha * s
				} else {
					C[ci] = alpha*s + beta*C[ci]
				}
			}
		}
	}
}

// TestToColMajorAllTransposes checks the row-major to cuBLAS mapping for
// the four transpose cases, padded leading dimensions, batches and a
// broadcast operand, against a row-major reference.
func TestToColMajorAllTransposes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			M, N, K, batch := 5, 7, 3, 2
			p := tensor.GemmParams{TransA: ta, TransB: tb, M: M, N: N, K: K, Batch: batch, Alpha: 1.5, Beta: 0.5}
			ar, ac := M, K
			if ta {
				ar, ac = K, M
			}
			br, bc := K, N
			if tb {
				br, bc = N, K
			}
			p.LDA, p.LDB, p.LDC = ac+2, bc+1, N+3
			p.StrideA, p.StrideB, p.StrideC = ar*p.LDA, 0, M*p.LDC // B broadcast
			A := make([]float64, batch*p.StrideA)
			B := make([]float64, br*p.LDB)
			C := make([]float64, batch*p.StrideC)
			for _, s := range [][]float64{A, B, C} {
				for i := range s {
					s[i] = rng.NormFloat64()
				}
			}
			want := append([]float64(nil), C...)
			for bt := 0; bt < batch; bt++ {
				for i := 0; i < M; i++ {
					for j := 0; j < N; j++ {
						var s float64
						for l := 0; l < K; l++ {
							var a, b float64
							if ta {
								a = A[bt*p.StrideA+l*p.LDA+i]
							} else {
								a = A[bt*p.StrideA+i*p.LDA+l]
							}
							if tb {
								b = B[j*p.LDB+l]
							} else {
								b = B[l*p.LDB+j]
							}
							s += a * b
						}
						ci := bt*p.StrideC + i*p.LDC + j
						want[ci] = 1.5*s + 0.5*C[ci]
					}
				}
			}
			g := toColMajor(p.Tight())
			got := append([]float64(nil), C...)
			cublasRef(g, 1.5, 0.5, B, A, got) // cuBLAS's A slot gets our B
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-12 {
					t.Fatalf("transA=%v transB=%v: C[%d] = %g, want %g", ta, tb, i, got[i], want[i])
				}
			}
		}
	}
}
