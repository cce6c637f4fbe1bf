package backendtest

import (
	"math/rand/v2"
	"testing"

	"loco/pkg/tensor"
)

// A benchmark case sets up its buffers once and returns the call to time
// and the work one call does: floating-point operations (reported as
// GFLOP/s) or bytes moved to and from memory (GB/s).
type benchCase struct {
	name  string
	setup func(k *benchEnv) (run func(), work float64, unit string)
}

const (
	gflops = "GFLOP/s"
	gbps   = "GB/s"
)

type benchEnv struct {
	be    tensor.Backend
	dt    tensor.DType
	rng   *rand.Rand
	owned []tensor.Storage
}

// rand allocates n random values in dt (normal, deviation dev).
func (k *benchEnv) rand(dt tensor.DType, n int, dev float64) tensor.Storage {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(dev * k.rng.NormFloat64())
	}
	s := k.be.Alloc(dt, n)
	k.owned = append(k.owned, s)
	k.be.Upload(s, v)
	return s
}

func (k *benchEnv) x(n int) tensor.Storage   { return k.rand(k.dt, n, 1) }
func (k *benchEnv) f32(n int) tensor.Storage { return k.rand(tensor.F32, n, 1) }

// Benchmark runs every Backend op at Stable Diffusion 1.5 sizes (512×512
// images: 64×64 latents, 4096 tokens at the first UNet level), one b.Run
// per op, synchronising the backend inside the timed loop.
func Benchmark(b *testing.B, be tensor.Backend, o Options) {
	o = o.withDefaults()
	for _, c := range benchCases() {
		b.Run(c.name, func(b *testing.B) {
			k := &benchEnv{be: be, dt: o.DType, rng: rand.New(rand.NewPCG(7, 11))}
			defer func() {
				for _, s := range k.owned {
					be.Free(s)
				}
			}()
			run, work, unit := c.setup(k)
			if err := be.Sync(); err != nil {
				b.Fatalf("%s: setup: %v", c.name, err)
			}
			n := 0
			for b.Loop() {
				run()
				if err := be.Sync(); err != nil {
					b.Fatalf("%s: %v", c.name, err)
				}
				n++
			}
			if sec := b.Elapsed().Seconds(); sec > 0 {
				b.ReportMetric(work*float64(n)/sec/1e9, unit)
			}
		})
	}
}

func benchCases() []benchCase {
	var cs []benchCase
	add := func(name string, setup func(k *benchEnv) (func(), float64, string)) {
		cs = append(cs, benchCase{name, setup})
	}

	// GEMM: a linear layer over 4096 tokens (x·Wᵀ) and a square product.
	for _, g := range []tensor.GemmParams{
		{M: 4096, N: 2880, K: 320, TransB: true, Alpha: 1},
		{M: 1024, N: 1024, K: 1024, Alpha: 1},
	} {
		p := g
		add("Gemm/"+dims(p.M, p.N, p.K)+"_"+tchar(p.TransA)+tchar(p.TransB), func(k *benchEnv) (func(), float64, string) {
			na, nb, nc := gemmSizes(p)
			a, bb, c := k.x(na), k.x(nb), k.x(nc)
			return func() { k.be.Gemm(c, a, bb, p) }, 2 * float64(p.M) * float64(p.N) * float64(p.K), gflops
		})
	}

	// Convolution: the 3×3 320→320 conv of the first UNet level at 64×64.
	conv := tensor.ConvParams{N: 1, C: 320, H: 64, W: 64, K: 320, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	convFlops := 2 * float64(conv.N*conv.K*conv.P()*conv.Q()) * float64(conv.C*conv.R*conv.S)
	add("Conv2D/320to320_3x3_64x64", func(k *benchEnv) (func(), float64, string) {
		nx, nw, ny := convLens(conv)
		x, w, bias, y := k.x(nx), k.rand(k.dt, nw, 0.02), k.x(conv.K), k.x(ny)
		return func() { k.be.Conv2D(y, x, w, bias, conv) }, convFlops, gflops
	})
	add("Conv2DBackwardData/320to320_3x3_64x64", func(k *benchEnv) (func(), float64, string) {
		nx, nw, ny := convLens(conv)
		dx, dy, w := k.x(nx), k.x(ny), k.rand(k.dt, nw, 0.02)
		return func() { k.be.Conv2DBackwardData(dx, dy, w, conv) }, convFlops, gflops
	})
	add("Conv2DBackwardFilter/320to320_3x3_64x64", func(k *benchEnv) (func(), float64, string) {
		nx, nw, ny := convLens(conv)
		dw, db, dy, x := k.x(nw), k.x(conv.K), k.rand(k.dt, ny, 0.01), k.x(nx)
		return func() { k.be.Conv2DBackwardFilter(dw, db, dy, x, conv) }, convFlops, gflops
	})

	// Attention: 8 heads of 40 over 4096 tokens (self) and 77 text tokens
	// (cross). Forward is 4·Tq·Tk·D flops per head (QKᵀ and PV); backward
	// 10·Tq·Tk·D (QKᵀ again, dP, dV, dQ, dK).
	for _, a := range []struct {
		name string
		p    tensor.AttnParams
	}{
		{"self_h8_t4096_d40", tensor.AttnParams{B: 1, H: 8, Tq: 4096, Tk: 4096, D: 40}},
		{"cross_h8_t4096x77_d40", tensor.AttnParams{B: 1, H: 8, Tq: 4096, Tk: 77, D: 40}},
	} {
		p := a.p
		p.Scale = 1 / 6.324555320336759 // 1/sqrt(40)
		per := float64(p.B*p.H) * float64(p.Tq) * float64(p.Tk) * float64(p.D)
		add("Attention/"+a.name, func(k *benchEnv) (func(), float64, string) {
			nq, nk, nl := attnLens(p)
			q, kk, v, o, lse := k.x(nq), k.x(nk), k.x(nk), k.x(nq), k.f32(nl)
			return func() { k.be.Attention(o, lse, q, kk, v, p) }, 4 * per, gflops
		})
		add("AttentionBackward/"+a.name, func(k *benchEnv) (func(), float64, string) {
			nq, nk, nl := attnLens(p)
			q, kk, v, o, lse := k.x(nq), k.x(nk), k.x(nk), k.x(nq), k.f32(nl)
			k.be.Attention(o, lse, q, kk, v, p)
			do, dq, dk, dv := k.x(nq), k.x(nq), k.x(nk), k.x(nk)
			return func() { k.be.AttentionBackward(dq, dk, dv, do, q, kk, v, o, lse, p) }, 10 * per, gflops
		})
	}

	// bytes is the traffic of elems elements of the dtype under test.
	bytes := func(k *benchEnv, elems float64) float64 { return elems * float64(k.dt.Size()) }

	// Normalisation: GroupNorm(32) + SiLU over 320×64×64, LayerNorm over 4096×320.
	gn := tensor.NormParams{N: 1, C: 320, HW: 64 * 64, Groups: 32, Eps: 1e-5, SiLU: true}
	gnLen := gn.N * gn.C * gn.HW
	add("GroupNorm/320x64x64_g32_silu", func(k *benchEnv) (func(), float64, string) {
		y, mean, rstd, x, g, bt := k.x(gnLen), k.f32(32), k.f32(32), k.x(gnLen), k.x(gn.C), k.x(gn.C)
		return func() { k.be.GroupNorm(y, mean, rstd, x, g, bt, gn) }, bytes(k, 2*float64(gnLen)), gbps
	})
	add("GroupNormBackward/320x64x64_g32_silu", func(k *benchEnv) (func(), float64, string) {
		y, mean, rstd, x, g, bt := k.x(gnLen), k.f32(32), k.f32(32), k.x(gnLen), k.x(gn.C), k.x(gn.C)
		k.be.GroupNorm(y, mean, rstd, x, g, bt, gn)
		dx, dg, db, dy := k.x(gnLen), k.x(gn.C), k.x(gn.C), k.x(gnLen)
		// reads dy, x, dx; writes dx
		return func() { k.be.GroupNormBackward(dx, dg, db, dy, x, mean, rstd, g, bt, gn) }, bytes(k, 4*float64(gnLen)), gbps
	})
	ln := tensor.NormParams{Rows: 4096, Cols: 320, Eps: 1e-5}
	lnLen := ln.Rows * ln.Cols
	add("LayerNorm/4096x320", func(k *benchEnv) (func(), float64, string) {
		y, mean, rstd, x, g, bt := k.x(lnLen), k.f32(ln.Rows), k.f32(ln.Rows), k.x(lnLen), k.x(ln.Cols), k.x(ln.Cols)
		return func() { k.be.LayerNorm(y, mean, rstd, x, g, bt, ln) }, bytes(k, 2*float64(lnLen)), gbps
	})
	add("LayerNormBackward/4096x320", func(k *benchEnv) (func(), float64, string) {
		y, mean, rstd, x, g, bt := k.x(lnLen), k.f32(ln.Rows), k.f32(ln.Rows), k.x(lnLen), k.x(ln.Cols), k.x(ln.Cols)
		k.be.LayerNorm(y, mean, rstd, x, g, bt, ln)
		dx, dg, db, dy := k.x(lnLen), k.x(ln.Cols), k.x(ln.Cols), k.x(lnLen)
		return func() { k.be.LayerNormBackward(dx, dg, db, dy, x, mean, rstd, g, ln) }, bytes(k, 4*float64(lnLen)), gbps
	})

	// Elementwise ops over a 320×64×64 activation (GEGLU over 4096×1280).
	act := 320 * 64 * 64
	for _, op := range []tensor.UnaryOp{tensor.OpSiLU, tensor.OpGELU, tensor.OpQuickGELU} {
		add("Unary/"+op.String()+"_320x64x64", func(k *benchEnv) (func(), float64, string) {
			x, y := k.x(act), k.x(act)
			return func() { k.be.Unary(op, y, x) }, bytes(k, 2*float64(act)), gbps
		})
		add("UnaryBackward/"+op.String()+"_320x64x64", func(k *benchEnv) (func(), float64, string) {
			dx, dy, x := k.x(act), k.x(act), k.x(act)
			return func() { k.be.UnaryBackward(op, dx, dy, x) }, bytes(k, 4*float64(act)), gbps
		})
	}
	add("GEGLU/4096x1280", func(k *benchEnv) (func(), float64, string) {
		x, y := k.x(4096*2560), k.x(4096*1280)
		return func() { k.be.GEGLU(y, x, 4096, 1280) }, bytes(k, 3*4096*1280), gbps
	})
	add("GEGLUBackward/4096x1280", func(k *benchEnv) (func(), float64, string) {
		dx, dy, x := k.x(4096*2560), k.x(4096*1280), k.x(4096*2560)
		return func() { k.be.GEGLUBackward(dx, dy, x, 4096, 1280) }, bytes(k, 7*4096*1280), gbps
	})
	add("Softmax/32768x77", func(k *benchEnv) (func(), float64, string) {
		x, y := k.x(32768*77), k.x(32768*77)
		return func() { k.be.Softmax(y, x, 32768, 77) }, bytes(k, 2*32768*77), gbps
	})
	add("SoftmaxBackward/32768x77", func(k *benchEnv) (func(), float64, string) {
		dx, dy, y := k.x(32768*77), k.x(32768*77), k.x(32768*77)
		return func() { k.be.SoftmaxBackward(dx, dy, y, 32768, 77) }, bytes(k, 4*32768*77), gbps
	})
	perChannel := tensor.Broadcast{Inner: 64 * 64, BLen: 320}
	add("Binary/add_per_channel_320x64x64", func(k *benchEnv) (func(), float64, string) {
		a, bb, y := k.x(act), k.x(320), k.x(act)
		return func() { k.be.Binary(tensor.OpAdd, y, a, bb, perChannel) }, bytes(k, 2*float64(act)), gbps
	})
	add("Binary/mul_same_shape_320x64x64", func(k *benchEnv) (func(), float64, string) {
		a, bb, y := k.x(act), k.x(act), k.x(act)
		return func() { k.be.Binary(tensor.OpMul, y, a, bb, tensor.Broadcast{Inner: 1, BLen: act}) }, bytes(k, 3*float64(act)), gbps
	})
	add("BinaryBackward/mul_per_channel_320x64x64", func(k *benchEnv) (func(), float64, string) {
		da, db, dy, a, bb := k.x(act), k.x(320), k.x(act), k.x(act), k.x(320)
		return func() { k.be.BinaryBackward(tensor.OpMul, da, db, dy, a, bb, perChannel) }, bytes(k, 4*float64(act)), gbps
	})
	add("Scale/320x64x64", func(k *benchEnv) (func(), float64, string) {
		x, y := k.x(act), k.x(act)
		return func() { k.be.Scale(y, x, 0.5) }, bytes(k, 2*float64(act)), gbps
	})
	add("Axpy/320x64x64", func(k *benchEnv) (func(), float64, string) {
		x, y := k.x(act), k.x(act)
		return func() { k.be.Axpy(y, x, 1e-3) }, bytes(k, 3*float64(act)), gbps
	})

	// Layout: split heads, upsample to the next level, concat on channels.
	add("Permute/2x4096x8x40_perm0x2x1x3", func(k *benchEnv) (func(), float64, string) {
		n := 2 * 4096 * 8 * 40
		x, y := k.x(n), k.x(n)
		shape, perm := []int{2, 4096, 8, 40}, []int{0, 2, 1, 3}
		return func() { k.be.Permute(y, x, shape, perm, false) }, bytes(k, 2*float64(n)), gbps
	})
	add("Upsample2x/320x32x32", func(k *benchEnv) (func(), float64, string) {
		x, y := k.x(320*32*32), k.x(320*64*64)
		return func() { k.be.Upsample2x(y, x, 320, 32, 32) }, bytes(k, 5*320*32*32), gbps
	})
	add("Upsample2xBackward/320x32x32", func(k *benchEnv) (func(), float64, string) {
		dx, dy := k.x(320*32*32), k.x(320*64*64)
		return func() { k.be.Upsample2xBackward(dx, dy, 320, 32, 32) }, bytes(k, 6*320*32*32), gbps
	})
	add("ResizeBilinear/3x768x640_to_3x512x427", func(k *benchEnv) (func(), float64, string) {
		x, y := k.x(3*768*640), k.x(3*512*427)
		return func() { k.be.ResizeBilinear(y, x, 3, 768, 640, 512, 427) }, bytes(k, 3*768*640+3*512*427), gbps
	})
	add("CopyStrided/concat_640x64x64_half", func(k *benchEnv) (func(), float64, string) {
		src, dst := k.x(act), k.x(2*act)
		p := tensor.StridedCopy{Rows: 1, Cols: act, DstOff: act, DstStride: 2 * act, SrcStride: act}
		return func() { k.be.CopyStrided(dst, src, p) }, bytes(k, 2*float64(act)), gbps
	})
	add("Copy/cast_F32_to_dtype_320x64x64", func(k *benchEnv) (func(), float64, string) {
		src, dst := k.f32(act), k.x(act)
		return func() { k.be.Copy(dst, src) }, float64(act) * float64(4+k.dt.Size()), gbps
	})
	add("Embedding/77x768_of_49408", func(k *benchEnv) (func(), float64, string) {
		table, y := k.x(49408*768), k.x(77*768)
		ids := make([]int32, 77)
		for i := range ids {
			ids[i] = int32(k.rng.IntN(49408))
		}
		return func() { k.be.Embedding(y, table, ids, 768) }, bytes(k, 2*77*768), gbps
	})
	add("EmbeddingBackward/77x768_of_49408", func(k *benchEnv) (func(), float64, string) {
		dt, dy := k.x(49408*768), k.x(77*768)
		ids := make([]int32, 77)
		for i := range ids {
			ids[i] = int32(k.rng.IntN(49408))
		}
		return func() { k.be.EmbeddingBackward(dt, dy, ids, 768) }, bytes(k, 3*77*768), gbps
	})

	// Loss and optimiser (F32): the latent MSE of a batch of 8, AdamW and
	// the gradient norm over 3.2M parameters (a LoCon's size).
	add("MSE/8x4x64x64", func(k *benchEnv) (func(), float64, string) {
		n := 4 * 64 * 64
		loss, a, bb := k.f32(8), k.f32(8*n), k.f32(8*n)
		return func() { k.be.MSE(loss, a, bb, 8, n) }, 2 * 4 * float64(8*n), gbps
	})
	add("MSEBackward/8x4x64x64", func(k *benchEnv) (func(), float64, string) {
		n := 4 * 64 * 64
		da, db, g, a, bb := k.f32(8*n), k.f32(8*n), k.f32(8), k.f32(8*n), k.f32(8*n)
		return func() { k.be.MSEBackward(da, db, g, a, bb, 8, n) }, 6 * 4 * float64(8*n), gbps
	})
	const nParams = 3_200_000
	add("AdamW/3.2M", func(k *benchEnv) (func(), float64, string) {
		param, grad, m, v := k.f32(nParams), k.f32(nParams), k.rand(tensor.F32, nParams, 0.01), k.f32(nParams)
		k.be.Unary(tensor.OpSiLU, v, v) // any positive-leaning second moment will do
		k.be.Binary(tensor.OpMul, v, v, v, tensor.Broadcast{Inner: 1, BLen: nParams})
		step := 0
		return func() {
			step++
			k.be.AdamW(param, grad, m, v, tensor.AdamWParams{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: step, GradScale: 1})
		}, 7 * 4 * nParams, gbps // param, m, v read and written; grad read
	})
	add("SumSquares/3.2M", func(k *benchEnv) (func(), float64, string) {
		x := k.x(nParams)
		return func() { _ = k.be.SumSquares(x) }, bytes(k, nParams), gbps
	})
	return cs
}
