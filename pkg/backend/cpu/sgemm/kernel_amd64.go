//go:build amd64 && !noasm

package sgemm

import "golang.org/x/sys/cpu"

//go:generate go run gen_kernels.go -out kernel_amd64.s

// kernelAVX512 is the 14×32 AVX-512F micro-kernel (see kernelFunc).
//
//go:noescape
func kernelAVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int)

// kernelAVX2 is the 6×16 AVX2+FMA micro-kernel (see kernelFunc).
//
//go:noescape
func kernelAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int)

// The ...RowsA and ...ColsA kernels are the same micro-kernels reading A
// where it lies instead of from a packed panel (see kernelFuncA).

//go:noescape
func kernelAVX512RowsA(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int, lda int)

//go:noescape
func kernelAVX512ColsA(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int, lda int)

//go:noescape
func kernelAVX2RowsA(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int, lda int)

//go:noescape
func kernelAVX2ColsA(kc int, a, b, c *float32, ldc int, alpha, beta float32, loadC int, lda int)

// dot4AVX512 sets out[r] = Σ_{p<k} a[r*lda+p]·b[p] for r = 0..3.
//
//go:noescape
func dot4AVX512(k int, a *float32, lda int, b *float32, out *[4]float32)

var (
	avx512Kernel = &kernel{name: "avx512", mr: 14, nr: 32, fn: kernelAVX512, asm: true,
		fnRowsA: kernelAVX512RowsA, fnColsA: kernelAVX512ColsA, dot4: dot4AVX512}
	avx2Kernel = &kernel{name: "avx2", mr: 6, nr: 16, fn: kernelAVX2, asm: true,
		fnRowsA: kernelAVX2RowsA, fnColsA: kernelAVX2ColsA}
)

// asmKernels lists the assembly kernels this CPU (and its OS) supports.
func asmKernels() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel)
	}
	return ks
}
