package sgemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// withKernel runs f with kern active and nt workers, then restores both.
func withKernel(kern *kernel, nt int, f func()) {
	saved, savedT := active, Threads()
	active = kern
	SetThreads(nt)
	defer func() { active = saved; SetThreads(savedT) }()
	f()
}

var benchShapes = []struct {
	name    string
	m, n, k int
}{
	{"1024x1024x1024", 1024, 1024, 1024},
	{"4096x320x2880", 4096, 320, 2880},
	{"4096x2880x320", 4096, 2880, 320},
}

// BenchmarkGemm times whole Gemm calls, packing included, for every kernel,
// the shapes of the issue (m×n×k, no transposes, beta 0) and 1 and 2 workers.
func BenchmarkGemm(b *testing.B) {
	for _, kern := range kernels() {
		for _, s := range benchShapes {
			for _, nt := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", kern.name, s.name, nt), func(b *testing.B) {
					benchGemm(b, kern, nt, false, false, s.m, s.n, s.k)
				})
			}
		}
	}
}

// BenchmarkGemmTrans covers the transposed layouts on the best kernel.
func BenchmarkGemmTrans(b *testing.B) {
	kern := kernels()[0]
	for _, tr := range allTrans() {
		b.Run(fmt.Sprintf("%s/transA=%v/transB=%v/1024x1024x1024/threads=2", kern.name, tr[0], tr[1]), func(b *testing.B) {
			benchGemm(b, kern, 2, tr[0], tr[1], 1024, 1024, 1024)
		})
	}
}

func benchGemm(b *testing.B, kern *kernel, nt int, transA, transB bool, m, n, k int) {
	if kern.name == "generic" && m*n*k > 1<<30 && testing.Short() {
		b.Skip("generic kernel on a large shape skipped in -short mode")
	}
	rng := rand.New(rand.NewPCG(1, 1))
	a, bm, c := randMat(rng, m*k), randMat(rng, k*n), make([]float32, m*n)
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	withKernel(kern, nt, func() {
		Gemm(transA, transB, m, n, k, 1, a, lda, bm, ldb, 0, c, n) // warm the pools
		b.ResetTimer()
		for b.Loop() {
			Gemm(transA, transB, m, n, k, 1, a, lda, bm, ldb, 0, c, n)
		}
		b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// BenchmarkMicroKernel calls the micro-kernel alone on one packed pair of
// panels (kc = kcBlock) that stay in L1, accumulating into one C tile: the
// ceiling the blocked algorithm can approach.
func BenchmarkMicroKernel(b *testing.B) {
	for _, kern := range kernels() {
		b.Run(kern.name, func(b *testing.B) {
			kc := kcBlock
			rng := rand.New(rand.NewPCG(2, 2))
			pa, pb := randMat(rng, kern.mr*kc), randMat(rng, kern.nr*kc)
			c := randMat(rng, kern.mr*kern.nr)
			for b.Loop() {
				kern.fn(kc, &pa[0], &pb[0], &c[0], kern.nr, 1, 1, 1)
			}
			b.ReportMetric(2*float64(kern.mr*kern.nr*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkPack times packing one kcBlock-deep A block of mcBlock rows and
// one B block of 2880 columns, in both layouts, in GB/s of packed output.
func BenchmarkPack(b *testing.B) {
	kern := kernels()[0]
	kc, mc, nc := kcBlock, max(mcBlock/kern.mr, 1)*kern.mr, 2880
	rng := rand.New(rand.NewPCG(3, 3))
	src := randMat(rng, max(mc, nc)*kc*2)
	dst := make([]float32, (max(mc, nc)+64)*kc)
	for _, trans := range []bool{false, true} {
		b.Run(fmt.Sprintf("A/trans=%v", trans), func(b *testing.B) {
			ld := 2 * kc
			if trans {
				ld = 2 * mc
			}
			for b.Loop() {
				packA(kern.asm, trans, src, ld, 0, 0, mc, kc, kern.mr, dst)
			}
			b.ReportMetric(float64(4*mc*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
		b.Run(fmt.Sprintf("B/trans=%v", trans), func(b *testing.B) {
			ld := nc
			if trans {
				ld = kc
			}
			for b.Loop() {
				packB(kern.asm, trans, src, ld, 0, 0, kc, nc, kern.nr, dst)
			}
			b.ReportMetric(float64(4*nc*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
