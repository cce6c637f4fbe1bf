package sgemm

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// Blocking parameters (in elements). kcBlock bounds the depth of one packed
// panel pair, mcBlock the rows of a packed A block (kept in L2), ncBlock the
// columns of a packed B block (kept in L3). They are variables so that tests
// can shrink them to exercise every blocking boundary on small shapes.
var (
	kcBlock = 256
	mcBlock = 336
	ncBlock = 4096
	// bBlockBytes bounds the packed k×nc block of B (it lives in L3).
	bBlockBytes = 4 << 20
)

// minParallelFlops is the work (2·m·n·k) below which Gemm stays on the
// calling goroutine: starting workers costs more than it saves.
const minParallelFlops = 2 * 96 * 96 * 96

var threads atomic.Int64

func init() { threads.Store(int64(runtime.GOMAXPROCS(0))) }

// SetThreads bounds the number of workers Gemm uses. n < 1 restores the
// default, runtime.GOMAXPROCS(0).
func SetThreads(n int) {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	threads.Store(int64(n))
}

// Threads reports the worker bound set by SetThreads.
func Threads() int { return int(threads.Load()) }

// Kernel names the micro-kernel in use: "avx512", "avx2" or "generic".
func Kernel() string { return active.name }

// Gemm computes C = alpha*op(A)*op(B) + beta*C on row-major matrices.
//
// op(A) is m×k: A is m×k (lda ≥ k) when !transA, k×m (lda ≥ m) when transA.
// op(B) is k×n: B is k×n (ldb ≥ n) when !transB, n×k (ldb ≥ k) when transB.
// C is m×n with ldc ≥ n. When beta == 0, C is only written, never read, so
// NaN or Inf already in C do not reach the result. A and B are not modified.
// Gemm panics, naming the argument, if a dimension or a slice is too small.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	gemmParallel(active, Threads(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// GemmBatched runs batch independent Gemm calls; matrix i of A, B and C
// starts at offset i*strideA, i*strideB and i*strideC. Small matrices are
// spread over the workers one whole product each; large ones are computed
// one after another, each using all workers.
func GemmBatched(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, strideA int, b []float32, ldb int, strideB int, beta float32, c []float32, ldc int, strideC int, batch int) {
	if batch < 0 {
		panic(fmt.Sprintf("sgemm: GemmBatched: batch = %d < 0", batch))
	}
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	sub := func(s []float32, i, stride int, name string) []float32 {
		off := i * stride
		if off > len(s) {
			panic(fmt.Sprintf("sgemm: GemmBatched: matrix %d of %s starts at %d, beyond len %d", i, name, off, len(s)))
		}
		return s[off:]
	}
	nt := Threads()
	flops := 2 * float64(m) * float64(n) * float64(k)
	if nt <= 1 || batch == 1 || flops >= 4*minParallelFlops {
		for i := 0; i < batch; i++ {
			Gemm(transA, transB, m, n, k, alpha, sub(a, i, strideA, "A"), lda, sub(b, i, strideB, "B"), ldb, beta, sub(c, i, strideC, "C"), ldc)
		}
		return
	}
	// Check every argument on the calling goroutine so that a panic names
	// the caller's mistake instead of crashing a worker.
	for i := 0; i < batch; i++ {
		checkArgs(transA, transB, m, n, k, sub(a, i, strideA, "A"), lda, sub(b, i, strideB, "B"), ldb, sub(c, i, strideC, "C"), ldc)
	}
	if nt > batch {
		nt = batch
	}
	var next atomic.Int64
	Run(nt, func(int) {
		for {
			i := int(next.Add(1) - 1)
			if i >= batch {
				return
			}
			ci := c[i*strideC:]
			if k == 0 || alpha == 0 {
				scaleC(m, n, beta, ci, ldc)
				continue
			}
			gemmSerial(active, transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, ci, ldc)
		}
	})
}

func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("sgemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMat("A", ar, ac, a, lda)
	checkMat("B", br, bc, b, ldb)
	checkMat("C", m, n, c, ldc)
}

func checkMat(name string, rows, cols int, s []float32, ld int) {
	if ld < cols {
		panic(fmt.Sprintf("sgemm: ld%s = %d < %d columns of %s (%d×%d)", name, ld, cols, name, rows, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(s) < need {
		panic(fmt.Sprintf("sgemm: %s (%d×%d, ld %d) needs %d elements, has %d", name, rows, cols, ld, need, len(s)))
	}
}

// scaleC sets C = beta*C; beta == 0 writes zeros without reading C.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// gemmParallel splits C into nt blocks of whole rows (or of whole columns
// when C is wide and short) and runs the serial blocked algorithm on each in
// its own goroutine. Splitting rows duplicates only the packing of B, splitting
// columns only the packing of A; the split chosen duplicates the smaller one.
func gemmParallel(kern *kernel, nt int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if 2*float64(m)*float64(n)*float64(k) < minParallelFlops {
		nt = 1
	}
	splitRows := m >= n
	units := (m + kern.mr - 1) / kern.mr // micro-tile rows
	if !splitRows {
		units = (n + kern.nr - 1) / kern.nr
	}
	if nt > units {
		nt = units
	}
	if nt <= 1 {
		gemmSerial(kern, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	Run(nt, func(w int) {
		lo, hi := w*units/nt, (w+1)*units/nt
		if splitRows {
			r0, r1 := lo*kern.mr, min(hi*kern.mr, m)
			var aw []float32
			if transA {
				aw = a[r0:]
			} else {
				aw = a[r0*lda:]
			}
			gemmSerial(kern, transA, transB, r1-r0, n, k, alpha, aw, lda, b, ldb, beta, c[r0*ldc:], ldc)
			return
		}
		c0, c1 := lo*kern.nr, min(hi*kern.nr, n)
		bw := b[c0:]
		if transB {
			bw = b[c0*ldb:]
		}
		gemmSerial(kern, transA, transB, m, c1-c0, k, alpha, a, lda, bw, ldb, beta, c[c0:], ldc)
	})
}
