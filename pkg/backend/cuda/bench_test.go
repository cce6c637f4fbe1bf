package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/backendtest"
	"loco/pkg/backend/cuda"
	"loco/pkg/tensor"
)

// filled allocates n random elements of dt (never zeros: zeros can run
// faster than real data).
func filled(be *cuda.Backend, dt tensor.DType, n int, seed uint64) tensor.Storage {
	s := be.Alloc(dt, n)
	rng := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	be.Upload(s, v)
	return s
}

// timeOp runs f once to warm up (kernel compilation, cuBLAS heuristics),
// then times it with a device synchronisation inside each iteration, and
// reports TFLOP/s for flops per call.
func timeOp(b *testing.B, be *cuda.Backend, flops float64, f func()) {
	sec := timeSynced(b, be, f)
	b.ReportMetric(flops/sec/1e12, "TFLOP/s")
	b.ReportMetric(sec*1e3, "ms/op")
}

// timeSynced runs f once untimed, then in the benchmark loop with a device
// synchronisation after each call, and returns the seconds per call.
func timeSynced(b *testing.B, be *cuda.Backend, f func()) float64 {
	f()
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f()
		if err := be.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	return b.Elapsed().Seconds() / float64(b.N)
}

func BenchmarkGemm(b *testing.B) {
	be := device(b)
	shapes := []struct{ m, n, k, batch int }{
		{8192, 8192, 8192, 1}, // the card's ceiling
		{4096 * 3, 320, 320, 1},
		{1024 * 3, 1280, 5120, 1}, // GEGLU projection at 32x32
		{4096, 4096, 40, 24},      // attention scores, GEMM-softmax-GEMM sizes
	}
	for _, dt := range dtypes {
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%v/%dx%dx%dx%d", dt, s.m, s.n, s.k, s.batch), func(b *testing.B) {
				A := filled(be, dt, s.batch*s.m*s.k, 1)
				B := filled(be, dt, s.batch*s.k*s.n, 2)
				C := be.Alloc(dt, s.batch*s.m*s.n)
				defer func() { be.Free(A); be.Free(B); be.Free(C) }()
				p := tensor.GemmParams{M: s.m, N: s.n, K: s.k, Batch: s.batch, StrideA: s.m * s.k, StrideB: s.k * s.n,
					StrideC: s.m * s.n, Alpha: 1}
				timeOp(b, be, 2*float64(s.m*s.n*s.k*s.batch), func() { be.Gemm(C, A, B, p) })
			})
		}
	}
}

func BenchmarkConv(b *testing.B) {
	be := device(b)
	convs := []tensor.ConvParams{
		{N: 3, C: 320, H: 64, W: 64, K: 320, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 3, C: 640, H: 32, W: 32, K: 640, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 3, C: 1280, H: 16, W: 16, K: 1280, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 3, C: 320, H: 64, W: 64, K: 320, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
	}
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		for _, p := range convs {
			name := fmt.Sprintf("%v/C%d_%dx%d_K%d_s%d", dt, p.C, p.H, p.W, p.K, p.StrideH)
			flops := 2 * float64(p.N*p.K*p.P()*p.Q()*p.C*p.R*p.S)
			x := filled(be, dt, p.N*p.C*p.H*p.W, 3)
			w := filled(be, dt, p.K*p.C*p.R*p.S, 4)
			bias := filled(be, dt, p.K, 5)
			y := filled(be, dt, p.N*p.K*p.P()*p.Q(), 6)
			dx := filled(be, dt, p.N*p.C*p.H*p.W, 7)
			dw := filled(be, dt, p.K*p.C*p.R*p.S, 8)
			b.Run(name+"/fwd", func(b *testing.B) { timeOp(b, be, flops, func() { be.Conv2D(y, x, w, bias, p) }) })
			b.Run(name+"/bwd_data", func(b *testing.B) { timeOp(b, be, flops, func() { be.Conv2DBackwardData(dx, y, w, p) }) })
			b.Run(name+"/bwd_filter", func(b *testing.B) {
				timeOp(b, be, flops, func() { be.Conv2DBackwardFilter(dw, nil, y, x, p) })
			})
			for _, s := range []tensor.Storage{x, w, bias, y, dx, dw} {
				be.Free(s)
			}
		}
	}
}

func BenchmarkAttention(b *testing.B) {
	be := device(b)
	cases := []tensor.AttnParams{
		{B: 3, H: 8, Tq: 4096, Tk: 4096, D: 40}, // SD 1.5 at 64x64 latents
		{B: 3, H: 8, Tq: 1024, Tk: 1024, D: 80},
		{B: 3, H: 8, Tq: 256, Tk: 256, D: 160},
		{B: 3, H: 8, Tq: 4096, Tk: 77, D: 40}, // cross-attention
	}
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		for _, p := range cases {
			p.Scale = float32(1 / math.Sqrt(float64(p.D)))
			nq, nk := p.B*p.Tq*p.H*p.D, p.B*p.Tk*p.H*p.D
			q, k, v := filled(be, dt, nq, 1), filled(be, dt, nk, 2), filled(be, dt, nk, 3)
			o, do := filled(be, dt, nq, 4), filled(be, dt, nq, 5)
			dq, dk, dv := filled(be, dt, nq, 6), filled(be, dt, nk, 7), filled(be, dt, nk, 8)
			lse := be.Alloc(tensor.F32, p.B*p.H*p.Tq)
			flops := 4 * float64(p.B*p.H*p.Tq*p.Tk*p.D)
			name := fmt.Sprintf("%v/T%dx%d_D%d", dt, p.Tq, p.Tk, p.D)
			b.Run(name+"/fwd", func(b *testing.B) { timeOp(b, be, flops, func() { be.Attention(o, lse, q, k, v, p) }) })
			b.Run(name+"/bwd", func(b *testing.B) {
				timeOp(b, be, 2.5*flops, func() { be.AttentionBackward(dq, dk, dv, do, q, k, v, o, lse, p) })
			})
			for _, s := range []tensor.Storage{q, k, v, o, do, dq, dk, dv, lse} {
				be.Free(s)
			}
		}
	}
}

// BenchmarkConformance runs the suite's per-op benchmarks.
func BenchmarkConformance(b *testing.B) {
	be := device(b)
	for _, dt := range dtypes {
		b.Run(dt.String(), func(b *testing.B) { backendtest.Benchmark(b, be, backendtest.Options{DType: dt}) })
	}
}

// BenchmarkGroupNorm times GroupNorm(32) + SiLU with affine parameters,
// forward and backward (dx, dgamma, dbeta), at the SD 1.5 shapes of batch
// 3, on the one-block-per-group kernels ("simple") and on the default
// choice ("auto": the split kernels where a group has two or more chunks),
// reporting the minimum traffic (forward: read x, write y; backward: read
// x, dy, dx, write dx) as GB/s.
func BenchmarkGroupNorm(b *testing.B) {
	be := device(b)
	shapes := []struct{ c, hw int }{{320, 64 * 64}, {640, 64 * 64}, {1280, 16 * 16}, {2560, 8 * 8}}
	for _, dt := range []tensor.DType{tensor.F16, tensor.F32} {
		for _, s := range shapes {
			p := tensor.NormParams{N: 3, C: s.c, HW: s.hw, Groups: 32, Eps: 1e-5, SiLU: true}
			n, ng := p.N*p.C*p.HW, p.N*p.Groups
			x, dy, dx := filled(be, dt, n, 1), filled(be, dt, n, 2), filled(be, dt, n, 3)
			y := be.Alloc(dt, n)
			gamma, beta, dg, db := filled(be, dt, p.C, 4), filled(be, dt, p.C, 5), filled(be, dt, p.C, 6), filled(be, dt, p.C, 7)
			mean, rstd := be.Alloc(tensor.F32, ng), be.Alloc(tensor.F32, ng)
			be.GroupNorm(y, mean, rstd, x, gamma, beta, p) // saved statistics for the backward alone
			for _, path := range []string{"simple", "auto"} {
				prev, err := cuda.SetGroupNormPath(path)
				if err != nil {
					b.Fatal(err)
				}
				name := fmt.Sprintf("%v/C%d_%dx%d/%s", dt, p.C, isqrt(p.HW), isqrt(p.HW), path)
				bytes := float64(n * dt.Size())
				b.Run(name+"/fwd", func(b *testing.B) {
					timeBytes(b, be, 2*bytes, func() { be.GroupNorm(y, mean, rstd, x, gamma, beta, p) })
				})
				b.Run(name+"/bwd", func(b *testing.B) {
					timeBytes(b, be, 4*bytes, func() { be.GroupNormBackward(dx, dg, db, dy, x, mean, rstd, gamma, beta, p) })
				})
				cuda.SetGroupNormPath(prev)
			}
			for _, s := range []tensor.Storage{x, dy, dx, y, gamma, beta, dg, db, mean, rstd} {
				be.Free(s)
			}
		}
	}
}

// timeBytes is timeOp for memory-bound ops: GB/s for bytes moved per call.
func timeBytes(b *testing.B, be *cuda.Backend, bytes float64, f func()) {
	sec := timeSynced(b, be, f)
	b.ReportMetric(bytes/sec/1e9, "GB/s")
	b.ReportMetric(sec*1e3, "ms/op")
}

func isqrt(v int) int { return int(math.Round(math.Sqrt(float64(v)))) }
