package cuda

import "loco/pkg/tensor"

// colBudget bounds the im2col workspace (elements) so that large batches
// are processed a few images at a time.
const colBudget = 64 << 20

func convDimsOf(p tensor.ConvParams) convDims {
	return convDims{int64(p.C), int64(p.H), int64(p.W), int64(p.R), int64(p.S), int64(p.P()), int64(p.Q()),
		int64(p.StrideH), int64(p.StrideW), int64(p.PadH), int64(p.PadW)}
}

// pointwise says the convolution is a plain matrix product per image.
func pointwise(p tensor.ConvParams) bool {
	return p.R == 1 && p.S == 1 && p.StrideH == 1 && p.StrideW == 1 && p.PadH == 0 && p.PadW == 0
}

func checkConv(op string, p tensor.ConvParams) {
	if p.StrideH <= 0 || p.StrideW <= 0 || p.PadH < 0 || p.PadW < 0 || p.P() <= 0 || p.Q() <= 0 {
		tensor.Errorf(op, "bad convolution %+v", p)
	}
}

// chunk is how many images fit the im2col budget at once.
func chunk(p tensor.ConvParams) int {
	per := p.C * p.R * p.S * p.P() * p.Q()
	return max(1, min(p.N, colBudget/max(per, 1)))
}

func (b *Backend) Conv2D(y, x, w, bias tensor.Storage, p tensor.ConvParams) {
	const op = "cuda.Conv2D"
	yb, xb, wb, bb := buf(op, y), buf(op, x), buf(op, w), buf(op, bias)
	checkConv(op, p)
	PQ, CRS, HW := p.P()*p.Q(), p.C*p.R*p.S, p.H*p.W
	same(op, p.N*p.C*HW, xb)
	same(op, p.N*p.K*PQ, yb)
	same(op, p.K*CRS, wb)
	same(op, p.K, bb)
	same(op, 0, yb, xb, wb, bb)
	if p.N == 0 {
		return
	}
	if pointwise(p) {
		b.gemm(op, yb.ptr, yb.dt, yb.n, wb, xb, tensor.GemmParams{M: p.K, N: PQ, K: p.C, Batch: p.N,
			StrideA: 0, StrideB: p.C * HW, StrideC: p.K * PQ, Alpha: 1})
	} else {
		nb := chunk(p)
		colp := b.scratch(op, nb*CRS*PQ*xb.dt.Size())
		col := &buffer{ptr: colp, dt: xb.dt, n: nb * CRS * PQ}
		d := convDimsOf(p)
		for n0 := 0; n0 < p.N; n0 += nb {
			cnt := min(nb, p.N-n0)
			xv := b.View(xb, n0*p.C*HW, cnt*p.C*HW).(*buffer)
			b.ew(op, "conv", "im2col_"+sfx(xb.dt), cnt*CRS*PQ, col, xv, cnt, d)
			b.gemm(op, yb.ptr+uintptr(n0*p.K*PQ*yb.dt.Size()), yb.dt, cnt*p.K*PQ, wb, col, tensor.GemmParams{
				M: p.K, N: PQ, K: CRS, Batch: cnt, StrideA: 0, StrideB: CRS * PQ, StrideC: p.K * PQ, Alpha: 1})
		}
		b.unscratch(colp)
	}
	if bb != nil {
		b.binary(op, tensor.OpAdd, yb, yb, bb, tensor.Broadcast{Inner: PQ, BLen: p.K})
	}
}

func (b *Backend) Conv2DBackwardData(dx, dy, w tensor.Storage, p tensor.ConvParams) {
	const op = "cuda.Conv2DBackwardData"
	dxb, dyb, wb := buf(op, dx), buf(op, dy), buf(op, w)
	if dxb == nil {
		return
	}
	checkConv(op, p)
	PQ, CRS, HW := p.P()*p.Q(), p.C*p.R*p.S, p.H*p.W
	same(op, p.N*p.C*HW, dxb)
	same(op, p.N*p.K*PQ, dyb)
	same(op, p.K*CRS, wb)
	same(op, 0, wb, dxb, dyb)
	if p.N == 0 {
		return
	}
	if pointwise(p) {
		// dx_n[C,HW] (+)= wᵀ[C,K] dy_n[K,HW]
		beta := float32(1)
		if p.Overwrite {
			beta = 0
		}
		b.gemm(op, dxb.ptr, dxb.dt, dxb.n, wb, dyb, tensor.GemmParams{TransA: true, M: p.C, N: PQ, K: p.K,
			Batch: p.N, StrideA: 0, StrideB: p.K * PQ, StrideC: p.C * HW, Alpha: 1, Beta: beta})
		return
	}
	// dcol_n[CRS,PQ] = wᵀ[CRS,K] dy_n[K,PQ] in F32, then col2im adds into dx.
	nb := chunk(p)
	colp := b.scratch(op, nb*CRS*PQ*4)
	d := convDimsOf(p)
	for n0 := 0; n0 < p.N; n0 += nb {
		cnt := min(nb, p.N-n0)
		dyv := b.View(dyb, n0*p.K*PQ, cnt*p.K*PQ).(*buffer)
		b.gemm(op, colp, tensor.F32, nb*CRS*PQ, wb, dyv, tensor.GemmParams{TransA: true, M: CRS, N: PQ, K: p.K,
			Batch: cnt, StrideA: 0, StrideB: p.K * PQ, StrideC: CRS * PQ, Alpha: 1})
		dxv := b.View(dxb, n0*p.C*HW, cnt*p.C*HW).(*buffer)
		b.ew(op, "conv", "col2im_"+sfx(dxb.dt), cnt*p.C*HW, dxv, devPtr(colp), cnt, d, !p.Overwrite)
	}
	b.unscratch(colp)
}

func (b *Backend) Conv2DBackwardFilter(dw, dbias, dy, x tensor.Storage, p tensor.ConvParams) {
	const op = "cuda.Conv2DBackwardFilter"
	dwb, dbb, dyb, xb := buf(op, dw), buf(op, dbias), buf(op, dy), buf(op, x)
	checkConv(op, p)
	PQ, CRS, HW := p.P()*p.Q(), p.C*p.R*p.S, p.H*p.W
	same(op, p.N*p.C*HW, xb)
	same(op, p.N*p.K*PQ, dyb)
	same(op, p.K*CRS, dwb)
	same(op, p.K, dbb)
	same(op, 0, dwb, dbb, dyb, xb)
	if p.N == 0 {
		return
	}
	if dbb != nil {
		b.reduceBroadcast(op, dbb, dyb, nil, p.N*p.K*PQ, tensor.Broadcast{Inner: PQ, BLen: p.K}, tensor.OpAdd)
	}
	if dwb == nil {
		return
	}
	// dw[K,CRS] += Σ_n dy_n[K,PQ] col_nᵀ[PQ,CRS], one GEMM per image (they
	// all accumulate into dw, so they cannot be one batched call).
	gp := tensor.GemmParams{TransB: true, M: p.K, N: CRS, K: PQ, Alpha: 1, Beta: 1}
	if pointwise(p) {
		for n := 0; n < p.N; n++ {
			b.gemm(op, dwb.ptr, dwb.dt, dwb.n, b.View(dyb, n*p.K*PQ, p.K*PQ).(*buffer), b.View(xb, n*p.C*HW, p.C*HW).(*buffer), gp)
		}
		return
	}
	nb := chunk(p)
	colp := b.scratch(op, nb*CRS*PQ*xb.dt.Size())
	col := &buffer{ptr: colp, dt: xb.dt, n: nb * CRS * PQ}
	d := convDimsOf(p)
	for n0 := 0; n0 < p.N; n0 += nb {
		cnt := min(nb, p.N-n0)
		xv := b.View(xb, n0*p.C*HW, cnt*p.C*HW).(*buffer)
		b.ew(op, "conv", "im2col_"+sfx(xb.dt), cnt*CRS*PQ, col, xv, cnt, d)
		for i := 0; i < cnt; i++ {
			b.gemm(op, dwb.ptr, dwb.dt, dwb.n, b.View(dyb, (n0+i)*p.K*PQ, p.K*PQ).(*buffer), b.View(col, i*CRS*PQ, CRS*PQ).(*buffer), gp)
		}
	}
	b.unscratch(colp)
}
