package cuda

import (
	"unsafe"

	"loco/pkg/tensor"
)

// cuBLAS constants.
const (
	cublasOpN     = 0
	cublasOpT     = 1
	cudaR32F      = 0
	cudaR16F      = 2
	cudaR16BF     = 14
	cublasCompute = 68 // CUBLAS_COMPUTE_32F
	cublasAlgoDef = -1 // CUBLAS_GEMM_DEFAULT
)

func cudaDataType(dt tensor.DType) int {
	switch dt {
	case tensor.F32:
		return cudaR32F
	case tensor.F16:
		return cudaR16F
	case tensor.BF16:
		return cudaR16BF
	}
	panic("cuda: unknown dtype")
}

// colMajorGemm is one cublasGemmStridedBatchedEx call in cuBLAS's
// column-major terms. first and second say which row-major operand goes
// in cuBLAS's A and B slots.
type colMajorGemm struct {
	transa, transb int
	m, n, k        int
	lda, ldb, ldc  int
	strideA        int // of cuBLAS's A (our B)
	strideB        int // of cuBLAS's B (our A)
	strideC        int
	batch          int
}

// toColMajor maps a row-major GEMM (tensor.GemmParams, made Tight) to
// cuBLAS. A row-major M×N matrix with row stride ld is, read column-major,
// its N×M transpose with the same ld, so C = op(A)·op(B) becomes
// Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS gets our B first and our A second, m=N, n=M,
// each with its own transpose flag unchanged.
func toColMajor(p tensor.GemmParams) colMajorGemm {
	g := colMajorGemm{transa: cublasOpN, transb: cublasOpN, m: p.N, n: p.M, k: p.K,
		lda: p.LDB, ldb: p.LDA, ldc: p.LDC, strideA: p.StrideB, strideB: p.StrideA, strideC: p.StrideC, batch: p.Batch}
	if p.TransB {
		g.transa = cublasOpT
	}
	if p.TransA {
		g.transb = cublasOpT
	}
	return g
}

// gemmExtent is the number of elements a batched operand spans.
func gemmExtent(rows, cols, ld, batch, stride int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (batch-1)*stride + (rows-1)*ld + cols
}

func (b *Backend) Gemm(c, a, bm tensor.Storage, p tensor.GemmParams) {
	const op = "cuda.Gemm"
	cb, ab, bb := buf(op, c), buf(op, a), buf(op, bm)
	if ab.dt != bb.dt || ab.dt != cb.dt {
		tensor.Errorf(op, "dtypes %v = %v x %v differ", cb.dt, ab.dt, bb.dt)
	}
	b.gemm(op, cb.ptr, cb.dt, cb.n, ab, bb, p)
}

// gemm runs C = alpha*op(A)op(B) + beta*C where C may have another dtype
// than A and B (F32 output from F16 inputs), with checks of the extents.
func (b *Backend) gemm(op string, cptr uintptr, cdt tensor.DType, clen int, ab, bb *buffer, p tensor.GemmParams) {
	p = p.Tight()
	if p.M == 0 || p.N == 0 {
		return
	}
	ar, ac := p.M, p.K
	if p.TransA {
		ar, ac = p.K, p.M
	}
	br, bc := p.K, p.N
	if p.TransB {
		br, bc = p.N, p.K
	}
	if p.LDA < ac || p.LDB < bc || p.LDC < p.N {
		tensor.Errorf(op, "leading dimensions %d, %d, %d too small for %dx%d, %dx%d, %dx%d", p.LDA, p.LDB, p.LDC, ar, ac, br, bc, p.M, p.N)
	}
	if n := gemmExtent(ar, ac, p.LDA, p.Batch, p.StrideA); n > ab.n {
		tensor.Errorf(op, "A needs %d elements, has %d", n, ab.n)
	}
	if n := gemmExtent(br, bc, p.LDB, p.Batch, p.StrideB); n > bb.n {
		tensor.Errorf(op, "B needs %d elements, has %d", n, bb.n)
	}
	if n := gemmExtent(p.M, p.N, p.LDC, p.Batch, p.StrideC); n > clen {
		tensor.Errorf(op, "C needs %d elements, has %d", n, clen)
	}
	g := toColMajor(p)
	b.enter()
	defer b.leave()
	alpha, beta := new(float32), new(float32)
	*alpha, *beta = p.Alpha, p.Beta
	dt := uintptr(cudaDataType(ab.dt))
	algo := int64(cublasAlgoDef)
	algoDefault := uintptr(algo)
	r := call(b.blas.cublasGemmStridedBatchedEx, b.handle, uintptr(g.transa), uintptr(g.transb),
		uintptr(g.m), uintptr(g.n), uintptr(g.k), uintptr(unsafe.Pointer(alpha)),
		bb.ptr, dt, uintptr(g.lda), uintptr(g.strideA),
		ab.ptr, dt, uintptr(g.ldb), uintptr(g.strideB),
		uintptr(unsafe.Pointer(beta)), cptr, uintptr(cudaDataType(cdt)), uintptr(g.ldc), uintptr(g.strideC),
		uintptr(g.batch), uintptr(cublasCompute), algoDefault)
	if r != 0 {
		tensor.Errorf(op, "cublasGemmStridedBatchedEx(m=%d n=%d k=%d batch=%d, %v): %s", g.m, g.n, g.k, g.batch, ab.dt, cublasStatusText(r))
	}
	if debugSync {
		if err := b.Sync(); err != nil {
			panic(err)
		}
	}
}
