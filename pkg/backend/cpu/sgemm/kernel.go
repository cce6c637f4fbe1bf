package sgemm

import (
	"os"
	"unsafe"
)

// kernelFunc computes one mr×nr tile: C = alpha*Ã·B̃ + beta*C, where Ã is a
// packed mr×kc panel, B̃ a packed kc×nr panel and C row-major with stride
// ldc (elements). With loadC == 0, C is written without being read and
// beta is ignored. kc ≥ 1.
type kernelFunc func(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int)

// kernelFuncA is a kernelFunc that reads an mr×kc block of op(A) in place
// instead of a packed panel: with op(A) = A (fnRowsA) row r of the block
// starts at a + r*lda and its kc values are contiguous; with op(A) = Aᵀ
// (fnColsA) the mr values of one k are contiguous and consecutive k are
// lda apart. Every one of the mr rows must exist (no edge tiles).
type kernelFuncA func(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int, lda int)

type kernel struct {
	name   string
	mr, nr int
	fn     kernelFunc
	asm    bool // pack with assembly too (off for the pure-Go kernel)
	// fnRowsA, fnColsA: the unpacked-A variants of fn; nil when the
	// kernel has none (then A is always packed).
	fnRowsA, fnColsA kernelFuncA
	// dot4, when set, computes four dot products of length k at once
	// (rows of a lda apart against b); gemmDot uses it for products with
	// few rows and a transposed B.
	dot4 func(k int, a *float32, lda int, b *float32, out *[4]float32)
}

var genericKernel = &kernel{name: "generic", mr: 4, nr: 4, fn: kernelGeneric}

// active is the kernel Gemm uses; chosen once at start.
var active = pickKernel()

// noasmEnv reports whether LOCO_NOASM=1 forbids the assembly kernels.
func noasmEnv() bool { return os.Getenv("LOCO_NOASM") == "1" }

// kernels lists the micro-kernels usable on this machine and build, fastest
// first; the pure-Go kernel is always last.
func kernels() []*kernel {
	var ks []*kernel
	if !noasmEnv() {
		ks = asmKernels()
	}
	return append(ks, genericKernel)
}

func pickKernel() *kernel { return kernels()[0] }

// kernelGeneric is the pure-Go 4×4 micro-kernel.
func kernelGeneric(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int) {
	pa := unsafe.Slice(a, 4*kc)
	pb := unsafe.Slice(b, 4*kc)
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	for p := 0; p < kc; p++ {
		av := pa[4*p : 4*p+4 : 4*p+4]
		bv := pb[4*p : 4*p+4 : 4*p+4]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	cs := unsafe.Slice(c, 3*ldc+4)
	acc := [16]float32{c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33}
	for r := 0; r < 4; r++ {
		row := cs[r*ldc : r*ldc+4 : r*ldc+4]
		for j := 0; j < 4; j++ {
			v := alpha * acc[4*r+j]
			if loadC != 0 {
				v += beta * row[j]
			}
			row[j] = v
		}
	}
}
