package cpu

import (
	"loco/pkg/backend/cpu/sgemm"
	"loco/pkg/tensor"
)

// Gemm computes C_i = Alpha*op(A_i)*op(B_i) + Beta*C_i for each batch item.
func (b *Backend) Gemm(c, a, bm tensor.Storage, p tensor.GemmParams) {
	const op = "gemm"
	cs, as, bs := f32(op, c), f32(op, a), f32(op, bm)
	p = p.Tight()
	if p.M < 0 || p.N < 0 || p.K < 0 || p.Batch < 0 || p.StrideA < 0 || p.StrideB < 0 || p.StrideC < 0 {
		tensor.Errorf(op, "negative parameter in %+v", p)
	}
	ar, ac := p.M, p.K
	if p.TransA {
		ar, ac = p.K, p.M
	}
	br, bc := p.K, p.N
	if p.TransB {
		br, bc = p.N, p.K
	}
	checkMatrix(op, "A", as, ar, ac, p.LDA, p.Batch, p.StrideA)
	checkMatrix(op, "B", bs, br, bc, p.LDB, p.Batch, p.StrideB)
	checkMatrix(op, "C", cs, p.M, p.N, p.LDC, p.Batch, p.StrideC)
	if p.Batch > 1 && p.StrideC < p.M*p.LDC && p.M > 0 && p.N > 0 {
		tensor.Errorf(op, "batch items of C overlap: StrideC %d < M*LDC = %d", p.StrideC, p.M*p.LDC)
	}
	if p.M == 0 || p.N == 0 {
		return
	}
	gemmBatched(p.TransA, p.TransB, p.M, p.N, p.K, p.Alpha, as, p.LDA, p.StrideA, bs, p.LDB, p.StrideB, p.Beta, cs, p.LDC, p.StrideC, p.Batch)
}

// checkMatrix checks that batch matrices of rows×cols with leading
// dimension ld, stride apart, fit in s.
func checkMatrix(op, name string, s []float32, rows, cols, ld, batch, stride int) {
	if ld < max(cols, 1) {
		tensor.Errorf(op, "LD%s = %d is less than the %d columns of %s", name, ld, cols, name)
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (batch-1)*stride + (rows-1)*ld + cols; len(s) < need {
		tensor.Errorf(op, "%s (%d batches of %d×%d, LD %d, stride %d) needs %d elements, has %d",
			name, batch, rows, cols, ld, stride, need, len(s))
	}
}

// gemm is the single-product SGEMM (parallel over the workers when large).
func gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemm.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmBatched runs batch products; small ones are spread over the workers
// one whole product each.
func gemmBatched(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, batch int) {
	sgemm.GemmBatched(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch)
}

func setGemmThreads(n int) { sgemm.SetThreads(n) }

// GemmKernel names the SGEMM micro-kernel in use ("avx512", "avx2", "generic").
func GemmKernel() string { return sgemm.Kernel() }
