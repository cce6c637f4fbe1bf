package cpu

import (
	"fmt"
	"testing"

	"loco/pkg/tensor"
)

// Benchmarks at Stable Diffusion 1.5 sizes (512 px: latent 64×64). They
// use 2 workers, the size of the reference machine, unless -cpu says less.

func benchThreads(b *testing.B) {
	old := Threads()
	SetThreads(min(2, old))
	b.Cleanup(func() { SetThreads(old) })
}

func benchStorage(be *Backend, n int, seed uint64) tensor.Storage {
	return up(be, randn(newRand(seed), n))
}

func BenchmarkGemm(b *testing.B) {
	for _, s := range [][3]int{{1024, 1024, 1024}, {4096, 320, 2880}} {
		m, n, k := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(b *testing.B) {
			benchThreads(b)
			be := New()
			a, bb, c := benchStorage(be, m*k, 1), benchStorage(be, k*n, 2), be.Alloc(tensor.F32, m*n)
			p := tensor.GemmParams{M: m, N: n, K: k, Alpha: 1}
			for b.Loop() {
				be.Gemm(c, a, bb, p)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkConv3x3(b *testing.B) {
	p := tensor.ConvParams{N: 1, C: 320, H: 64, W: 64, K: 320, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	flops := 2 * float64(p.N*p.K*p.P()*p.Q()*p.C*p.R*p.S)
	be := New()
	x := benchStorage(be, p.N*p.C*p.H*p.W, 1)
	w := benchStorage(be, p.K*p.C*p.R*p.S, 2)
	bias := benchStorage(be, p.K, 3)
	y := benchStorage(be, p.N*p.K*p.P()*p.Q(), 4)
	dx := be.Alloc(tensor.F32, p.N*p.C*p.H*p.W)
	dw := be.Alloc(tensor.F32, p.K*p.C*p.R*p.S)
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"forward", func() { be.Conv2D(y, x, w, bias, p) }},
		{"backward_data", func() { be.Conv2DBackwardData(dx, y, w, p) }},
		{"backward_filter", func() { be.Conv2DBackwardFilter(dw, nil, y, x, p) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchThreads(b)
			for b.Loop() {
				c.fn()
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkConvBackwardDataDown: the input gradient of a LoCon down
// projection (3×3, 320 → 4 channels) at SD's first level, on the flipped
// kernel path it takes and on the GEMM + col2im path (old=true).
func BenchmarkConvBackwardDataDown(b *testing.B) {
	p := tensor.ConvParams{N: 1, C: 320, H: 64, W: 64, K: 4, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	be := New()
	w := Float32s(benchStorage(be, p.K*p.C*p.R*p.S, 2))
	dy := Float32s(benchStorage(be, p.N*p.K*p.P()*p.Q(), 4))
	dx := Float32s(be.Alloc(tensor.F32, p.N*p.C*p.H*p.W))
	for _, old := range []bool{false, true} {
		b.Run(fmt.Sprintf("old=%v", old), func(b *testing.B) {
			benchThreads(b)
			for b.Loop() {
				if old {
					be.convBackwardDataCol2im(dx, dy, w, p, p.P(), p.Q())
				} else {
					be.convBackwardDataFlipped(dx, dy, w, p, p.P(), p.Q())
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkAttention: 8 heads × 4096 tokens × 40 dims (the first UNet
// level at 512 px). FLOPs are the algorithm's matrix products: 4·T²·D per
// head forward (QKᵀ, PV), 8·T²·D backward (dV, dP, dQ, dK; the recomputed
// QKᵀ is not counted).
func BenchmarkAttention(b *testing.B) {
	p := tensor.AttnParams{B: 1, H: 8, Tq: 4096, Tk: 4096, D: 40, Scale: 0.158113883}
	n := p.B * p.Tq * p.H * p.D
	be := New()
	q, k, v := benchStorage(be, n, 1), benchStorage(be, n, 2), benchStorage(be, n, 3)
	o, lse := be.Alloc(tensor.F32, n), be.Alloc(tensor.F32, p.B*p.H*p.Tq)
	do := benchStorage(be, n, 4)
	dq, dk, dv := be.Alloc(tensor.F32, n), be.Alloc(tensor.F32, n), be.Alloc(tensor.F32, n)
	be.Attention(o, lse, q, k, v, p)
	unit := float64(p.B*p.H) * float64(p.Tq) * float64(p.Tk) * float64(p.D)
	b.Run("forward", func(b *testing.B) {
		benchThreads(b)
		for b.Loop() {
			be.Attention(o, lse, q, k, v, p)
		}
		b.ReportMetric(4*unit*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/op")
	})
	b.Run("backward", func(b *testing.B) {
		benchThreads(b)
		for b.Loop() {
			be.AttentionBackward(dq, dk, dv, do, q, k, v, o, lse, p)
		}
		b.ReportMetric(8*unit*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/op")
	})
}

// BenchmarkMemoryBound reports GB/s (bytes read plus written) of the
// elementwise and normalisation ops on a 2×320×64×64 activation.
func BenchmarkMemoryBound(b *testing.B) {
	const n, c, hw = 2, 320, 64 * 64
	be := New()
	size := n * c * hw
	x, y, dy, dx := benchStorage(be, size, 1), be.Alloc(tensor.F32, size), benchStorage(be, size, 2), be.Alloc(tensor.F32, size)
	gamma, beta := benchStorage(be, c, 3), benchStorage(be, c, 4)
	mean, rstd := be.Alloc(tensor.F32, n*32), be.Alloc(tensor.F32, n*32)
	np := tensor.NormParams{N: n, C: c, HW: hw, Groups: 32, Eps: 1e-5, SiLU: true}
	be.GroupNorm(y, mean, rstd, x, gamma, beta, np)
	// LayerNorm over the same elements seen as [2·4096 tokens, 320].
	lp := tensor.NormParams{Rows: n * hw, Cols: c, Eps: 1e-5}
	lmean, lrstd := be.Alloc(tensor.F32, n*hw), be.Alloc(tensor.F32, n*hw)
	be.LayerNorm(y, lmean, lrstd, x, gamma, beta, lp)
	dgamma, dbeta := be.Alloc(tensor.F32, c), be.Alloc(tensor.F32, c)
	for _, cs := range []struct {
		name   string
		arrays int // full-size arrays read + written
		fn     func()
	}{
		{"groupnorm_silu", 3, func() { be.GroupNorm(y, mean, rstd, x, gamma, beta, np) }},
		{"groupnorm_silu_backward", 4, func() { be.GroupNormBackward(dx, nil, nil, dy, x, mean, rstd, gamma, beta, np) }},
		{"layernorm", 2, func() { be.LayerNorm(y, lmean, lrstd, x, gamma, beta, lp) }},
		{"layernorm_backward", 3, func() { be.LayerNormBackward(dx, dgamma, dbeta, dy, x, lmean, lrstd, gamma, lp) }},
		{"silu", 2, func() { be.Unary(tensor.OpSiLU, y, x) }},
		{"gelu", 2, func() { be.Unary(tensor.OpGELU, y, x) }},
		{"silu_backward", 4, func() { be.UnaryBackward(tensor.OpSiLU, dx, dy, x) }},
		{"add_channel_bias", 2, func() { be.Binary(tensor.OpAdd, y, x, gamma, tensor.Broadcast{Inner: hw, BLen: c}) }},
		{"add_same_shape", 3, func() { be.Binary(tensor.OpAdd, y, x, dy, tensor.Broadcast{Inner: 1, BLen: size}) }},
		{"permute_nchw_nhwc", 2, func() { be.Permute(y, x, []int{n, c, hw}, []int{0, 2, 1}, false) }},
		{"upsample2x", 5, func() { be.Upsample2x(dx, be.View(x, 0, size/4), n*c/4, 64, 64) }},
	} {
		b.Run(cs.name, func(b *testing.B) {
			benchThreads(b)
			for b.Loop() {
				cs.fn()
			}
			b.ReportMetric(float64(cs.arrays*size*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkConvParts times the pieces of the 3×3 320-channel convolution
// separately (im2col, the forward GEMM, the input-gradient GEMM, col2im),
// to show where the time of BenchmarkConv3x3 goes.
func BenchmarkConvParts(b *testing.B) {
	p := tensor.ConvParams{N: 1, C: 320, H: 64, W: 64, K: 320, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	be := New()
	x := Float32s(benchStorage(be, p.N*p.C*p.H*p.W, 1))
	w := Float32s(benchStorage(be, p.K*p.C*p.R*p.S, 2))
	P, Q := p.P(), p.Q()
	y := Float32s(benchStorage(be, p.K*P*Q, 3))
	rows := bands(p, P, Q)
	crs := p.C * p.R * p.S
	col := make([]float32, crs*rows*Q)
	flops := 2 * float64(p.K*P*Q*crs)
	for _, c := range []struct {
		name  string
		flops float64
		fn    func(p0, np int)
	}{
		{"im2col", 0, func(p0, np int) { im2col(col, x, p, p0, np, P, Q) }},
		{"gemm_forward", flops, func(p0, np int) {
			gemm(false, false, p.K, np*Q, crs, 1, w, crs, col, np*Q, 0, y[p0*Q:], P*Q)
		}},
		{"gemm_backward_data", flops, func(p0, np int) {
			gemm(true, false, crs, np*Q, p.K, 1, w, crs, y[p0*Q:], P*Q, 0, col, np*Q)
		}},
		{"col2im", 0, func(p0, np int) { col2im(x, col, p, p0, np, P, Q) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchThreads(b)
			for b.Loop() {
				for p0 := 0; p0 < P; p0 += rows {
					c.fn(p0, min(rows, P-p0))
				}
			}
			if c.flops > 0 {
				b.ReportMetric(c.flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkSmallOps measures per-call overhead on the sizes of the tiny
// test models (32 channels, 8×8), where checks, scratch and the decision
// to stay on one goroutine matter more than arithmetic.
func BenchmarkSmallOps(b *testing.B) {
	be := New()
	p := tensor.ConvParams{N: 1, C: 32, H: 8, W: 8, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	x, w, y := benchStorage(be, 32*64, 1), benchStorage(be, 32*32*9, 2), benchStorage(be, 32*64, 3)
	bias := benchStorage(be, 32, 4)
	mean, rstd := be.Alloc(tensor.F32, 8), be.Alloc(tensor.F32, 8)
	np := tensor.NormParams{N: 1, C: 32, HW: 64, Groups: 8, Eps: 1e-5, SiLU: true}
	ap := tensor.AttnParams{B: 1, H: 2, Tq: 64, Tk: 64, D: 16, Scale: 0.25}
	lse := be.Alloc(tensor.F32, 2*64)
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"conv3x3", func() { be.Conv2D(y, x, w, bias, p) }},
		{"groupnorm_silu", func() { be.GroupNorm(y, mean, rstd, x, nil, nil, np) }},
		{"gelu", func() { be.Unary(tensor.OpGELU, y, x) }},
		{"add_bias", func() { be.Binary(tensor.OpAdd, y, x, bias, tensor.Broadcast{Inner: 64, BLen: 32}) }},
		{"attention", func() { be.Attention(y, lse, x, x, x, ap) }},
		{"alloc_free", func() { be.Free(be.Alloc(tensor.F32, 2048)) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchThreads(b)
			b.ReportAllocs()
			for b.Loop() {
				c.fn()
			}
		})
	}
}

// BenchmarkAttentionTiny: the attention shapes of the tiny golden UNet
// (heads of 4–16 dims), forward and backward, on the narrow-head path and
// (path=gemm) on the blocked SGEMM path.
func BenchmarkAttentionTiny(b *testing.B) {
	for _, p := range []tensor.AttnParams{
		{B: 2, H: 8, Tq: 384, Tk: 384, D: 4, Scale: 0.5},
		{B: 2, H: 8, Tq: 384, Tk: 77, D: 4, Scale: 0.5},
		{B: 2, H: 8, Tq: 96, Tk: 96, D: 8, Scale: 0.35355338},
		{B: 2, H: 8, Tq: 24, Tk: 77, D: 16, Scale: 0.25},
	} {
		nq, nk := p.B*p.Tq*p.H*p.D, p.B*p.Tk*p.H*p.D
		be := New()
		q, k, v := benchStorage(be, nq, 1), benchStorage(be, nk, 2), benchStorage(be, nk, 3)
		o, lse := be.Alloc(tensor.F32, nq), be.Alloc(tensor.F32, p.B*p.H*p.Tq)
		do := benchStorage(be, nq, 4)
		dq, dk, dv := be.Alloc(tensor.F32, nq), be.Alloc(tensor.F32, nk), be.Alloc(tensor.F32, nk)
		be.Attention(o, lse, q, k, v, p)
		for _, path := range []string{"narrow", "gemm"} {
			name := fmt.Sprintf("T=%dx%d/D=%d/%s", p.Tq, p.Tk, p.D, path)
			setPath := func(b *testing.B) {
				benchThreads(b)
				if path == "gemm" {
					old := attnSmallMaxD
					attnSmallMaxD = 0
					b.Cleanup(func() { attnSmallMaxD = old })
				}
			}
			b.Run(name+"/forward", func(b *testing.B) {
				setPath(b)
				for b.Loop() {
					be.Attention(o, lse, q, k, v, p)
				}
				b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(b.N), "µs/op")
			})
			b.Run(name+"/backward", func(b *testing.B) {
				setPath(b)
				for b.Loop() {
					be.AttentionBackward(dq, dk, dv, do, q, k, v, o, lse, p)
				}
				b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(b.N), "µs/op")
			})
		}
	}
}
