package tensor

// Matrix products, linear layers and convolutions.

// MatMul is the batched product op(a) @ op(b). a is [..., M, K] ([..., K, M]
// with transA); b is [..., K, N] ([..., N, K] with transB) with the same
// leading dims as a, or rank 2 (broadcast over a's batch). The result is
// [..., M, N].
func MatMul(a, b *Tensor, transA, transB bool) *Tensor {
	return MatMulScaled(a, b, transA, transB, 1)
}

// MatMulScaled is alpha·MatMul(a, b, transA, transB), the scale folded into
// the GEMM (forward and backward) instead of a separate Scale.
func MatMulScaled(a, b *Tensor, transA, transB bool, alpha float32) *Tensor {
	e := a.e
	if len(a.shape) < 2 || len(b.shape) < 2 {
		Errorf("MatMul", "operands need rank ≥ 2, got %v and %v", a.shape, b.shape)
	}
	ra, rb := len(a.shape), len(b.shape)
	m, k := a.shape[ra-2], a.shape[ra-1]
	if transA {
		m, k = k, m
	}
	kb, n := b.shape[rb-2], b.shape[rb-1]
	if transB {
		kb, n = n, kb
	}
	batch := Shape(a.shape[:ra-2]).Numel()
	if kb != k || (rb > 2 && !Shape(b.shape[:rb-2]).Equal(a.shape[:ra-2])) {
		Errorf("MatMul", "shapes %v (transA %v) and %v (transB %v) do not chain", a.shape, transA, b.shape, transB)
	}
	sb := k * n
	if rb == 2 {
		sb = 0
	}
	out := append(a.shape[:ra-2].clone(), m, n)
	y := e.NewOf(a.DType(), out...)
	p := GemmParams{TransA: transA, TransB: transB, M: m, N: n, K: k, Batch: batch,
		StrideA: m * k, StrideB: sb, StrideC: m * n, Alpha: alpha}
	e.B.Gemm(y.data, a.data, b.data, p)
	if e.track(y, a, b) {
		e.push(y, func(gy Storage) {
			if a.needGrad {
				ga, beta := e.gradOut(a)
				// dA = gy @ op(B)^T, or its transpose when transA.
				q := GemmParams{M: m, N: k, K: n, TransB: !transB, Batch: batch,
					StrideA: m * n, StrideB: sb, StrideC: m * k, Alpha: alpha, Beta: beta}
				if transA { // dA^T is [K,M] = op(B) @ gy^T
					q = GemmParams{M: k, N: m, K: n, TransA: transB, TransB: true, Batch: batch,
						StrideA: sb, StrideB: m * n, StrideC: m * k, Alpha: alpha, Beta: beta}
					if transB {
						q.LDA = k // B stored [N,K]; op = transpose gives [K,N]
					}
					e.B.Gemm(ga, b.data, gy, q)
				} else {
					e.B.Gemm(ga, gy, b.data, q)
				}
			}
			if b.needGrad {
				gb := e.gradOf(b)
				if transB { // dB is [N,K] = gy^T @ op(A)
					q := GemmParams{M: n, N: k, K: m, TransA: true, TransB: transA, Batch: batch,
						StrideA: m * n, StrideB: m * k, StrideC: sb, Alpha: alpha, Beta: 1}
					gemmMaybeReduce(e, gb, gy, a.data, q, rb == 2)
				} else { // dB is [K,N] = op(A)^T @ gy
					q := GemmParams{M: k, N: n, K: m, TransA: !transA, Batch: batch,
						StrideA: m * k, StrideB: m * n, StrideC: sb, Alpha: alpha, Beta: 1}
					gemmMaybeReduce(e, gb, a.data, gy, q, rb == 2)
				}
			}
		})
	}
	return y
}

// gemmMaybeReduce runs a batched GEMM into c; when the gradient target is
// shared by the whole batch (StrideC 0), it runs the items one by one, each
// accumulating (Beta 1) into the same C.
func gemmMaybeReduce(e *Engine, c, a, b Storage, p GemmParams, shared bool) {
	if !shared || p.Batch <= 1 {
		e.B.Gemm(c, a, b, p)
		return
	}
	batch := p.Batch
	p.Batch = 1
	for i := 0; i < batch; i++ {
		e.B.Gemm(c, e.B.View(a, i*p.StrideA, p.StrideA), e.B.View(b, i*p.StrideB, p.StrideB), p)
	}
}

// Linear is x @ w^T + bias for x [..., in], w [out, in], bias [out] or nil.
func Linear(x, w, bias *Tensor) *Tensor {
	e := x.e
	if len(w.shape) != 2 || len(x.shape) < 1 || x.shape[len(x.shape)-1] != w.shape[1] {
		Errorf("Linear", "input %v does not match weight %v", x.shape, w.shape)
	}
	if bias != nil && (bias.Len() != w.shape[0]) {
		Errorf("Linear", "bias %v does not match weight %v", bias.shape, w.shape)
	}
	in, out := w.shape[1], w.shape[0]
	rows := x.Len() / in
	yShape := append(x.shape[:len(x.shape)-1].clone(), out)
	y := e.NewOf(x.DType(), yShape...)
	e.B.Gemm(y.data, x.data, w.data, GemmParams{M: rows, N: out, K: in, TransB: true, Alpha: 1})
	if bias != nil {
		e.B.Binary(OpAdd, y.data, y.data, bias.data, Broadcast{Inner: 1, BLen: out})
	}
	if e.track(y, x, w, bias) {
		e.push(y, func(gy Storage) {
			// Gradient buffers come from the arena on this goroutine.
			var dx, dw Storage
			var beta, bw float32
			if x.needGrad {
				dx, beta = e.gradOut(x)
			}
			if w.needGrad {
				dw, bw = e.gradOut(w)
			}
			dataGrad := func() { // dx[rows,in] (+)= gy[rows,out] @ w[out,in]
				e.B.Gemm(dx, gy, w.data, GemmParams{M: rows, N: in, K: out, Alpha: 1, Beta: beta})
			}
			filterGrad := func() { // dw[out,in] (+)= gy^T @ x
				e.B.Gemm(dw, gy, x.data, GemmParams{M: out, N: in, K: rows, TransA: true, Alpha: 1, Beta: bw})
			}
			switch {
			case dx != nil && dw != nil:
				e.both(2*rows*in*out < concurrentMaxFlops, dataGrad, filterGrad)
			case dx != nil:
				dataGrad()
			case dw != nil:
				filterGrad()
			}
			if bias != nil && bias.needGrad {
				e.B.BinaryBackward(OpAdd, nil, e.gradOf(bias), gy, y.data, bias.data, Broadcast{Inner: 1, BLen: out})
			}
		})
	}
	return y
}

// Conv2D is a 2-D convolution of x [N,C,H,W] with w [K,C,R,S] and optional
// bias [K], symmetric zero padding.
func Conv2D(x, w, bias *Tensor, stride, pad int) *Tensor {
	e := x.e
	y := convForward("Conv2D", x, w, bias, stride, pad)
	if e.track(y, x, w, bias) {
		p := convParams(x, w, stride, pad)
		e.push(y, func(gy Storage) {
			dx, dw, db, p := e.convGrads(x, w, bias, p)
			dataGrad := func() { e.B.Conv2DBackwardData(dx, gy, w.data, p) }
			filterGrad := func() { e.B.Conv2DBackwardFilter(dw, db, gy, x.data, p) }
			switch flops := 2 * p.N * p.K * p.P() * p.Q() * p.C * p.R * p.S; {
			case dx != nil && (dw != nil || db != nil):
				e.both(flops < concurrentMaxFlops, dataGrad, filterGrad)
			case dx != nil:
				dataGrad()
			case dw != nil || db != nil:
				filterGrad()
			}
		})
	}
	return y
}

// convGrads returns the gradient buffers of a convolution's input, weight
// and bias (nil where none is needed), and p with Overwrite set when x's is
// fresh: the backward data then writes it instead of adding into a
// zero-filled one.
func (e *Engine) convGrads(x, w, bias *Tensor, p ConvParams) (dx, dw, db Storage, q ConvParams) {
	q = p
	if x.needGrad {
		var beta float32
		dx, beta = e.gradOut(x)
		q.Overwrite = beta == 0
	}
	if w.needGrad {
		dw = e.gradOf(w)
	}
	if bias != nil && bias.needGrad {
		db = e.gradOf(bias)
	}
	return dx, dw, db, q
}

// convParams describes the convolution of x with w.
func convParams(x, w *Tensor, stride, pad int) ConvParams {
	return ConvParams{N: x.shape[0], C: x.shape[1], H: x.shape[2], W: x.shape[3],
		K: w.shape[0], R: w.shape[2], S: w.shape[3], StrideH: stride, StrideW: stride, PadH: pad, PadW: pad}
}

// convForward validates a convolution and computes it into a new tensor
// (no backward step recorded).
func convForward(op string, x, w, bias *Tensor, stride, pad int) *Tensor {
	e := x.e
	if len(x.shape) != 4 || len(w.shape) != 4 || x.shape[1] != w.shape[1] {
		Errorf(op, "input %v does not match weight %v", x.shape, w.shape)
	}
	if bias != nil && bias.Len() != w.shape[0] {
		Errorf(op, "bias %v does not match weight %v", bias.shape, w.shape)
	}
	if stride < 1 || pad < 0 {
		Errorf(op, "stride %d, padding %d", stride, pad)
	}
	p := convParams(x, w, stride, pad)
	if p.H+2*pad < p.R || p.W+2*pad < p.S {
		Errorf(op, "input %v smaller than kernel %v with padding %d", x.shape, w.shape, pad)
	}
	y := e.NewOf(x.DType(), p.N, p.K, p.P(), p.Q())
	var bd Storage
	if bias != nil {
		bd = bias.data
	}
	e.B.Conv2D(y.data, x.data, w.data, bd, p)
	return y
}

// LinearLowRank is Linear(x, w, bias) + scale·h·upᵀ: a layer with a
// low-rank branch (LoCon) whose input projection h [..., r] the caller has
// computed from x, and up [out, r]. The branch's scale and sum are folded
// into the GEMMs' alpha and beta, so the branch costs one GEMM forward and
// two backward, and no separate scale or add.
func LinearLowRank(x, w, bias, h, up *Tensor, scale float32) *Tensor {
	e := x.e
	if len(w.shape) != 2 || len(x.shape) < 1 || x.shape[len(x.shape)-1] != w.shape[1] {
		Errorf("LinearLowRank", "input %v does not match weight %v", x.shape, w.shape)
	}
	if bias != nil && bias.Len() != w.shape[0] {
		Errorf("LinearLowRank", "bias %v does not match weight %v", bias.shape, w.shape)
	}
	in, out := w.shape[1], w.shape[0]
	rows := x.Len() / in
	if len(up.shape) != 2 || up.shape[0] != out || len(h.shape) != len(x.shape) ||
		!Shape(h.shape[:len(h.shape)-1]).Equal(x.shape[:len(x.shape)-1]) || h.shape[len(h.shape)-1] != up.shape[1] {
		Errorf("LinearLowRank", "branch %v × up %v does not match input %v and weight %v", h.shape, up.shape, x.shape, w.shape)
	}
	if h.DType() != x.DType() || up.DType() != w.DType() {
		Errorf("LinearLowRank", "dtypes: input %v, weight %v, branch %v, up %v", x.DType(), w.DType(), h.DType(), up.DType())
	}
	r := up.shape[1]
	y := e.NewOf(x.DType(), append(x.shape[:len(x.shape)-1].clone(), out)...)
	e.B.Gemm(y.data, x.data, w.data, GemmParams{M: rows, N: out, K: in, TransB: true, Alpha: 1})
	if bias != nil {
		e.B.Binary(OpAdd, y.data, y.data, bias.data, Broadcast{Inner: 1, BLen: out})
	}
	e.B.Gemm(y.data, h.data, up.data, GemmParams{M: rows, N: out, K: r, TransB: true, Alpha: scale, Beta: 1})
	if e.track(y, x, w, bias, h, up) {
		e.push(y, func(gy Storage) {
			var dx, dw, dh, dup Storage
			var bx, bw, bh float32
			if x.needGrad {
				dx, bx = e.gradOut(x)
			}
			if w.needGrad {
				dw, bw = e.gradOut(w)
			}
			if h.needGrad {
				dh, bh = e.gradOut(h)
			}
			if up.needGrad {
				dup = e.gradOf(up)
			}
			inputs := func() {
				if dx != nil { // dx[rows,in] (+)= gy[rows,out] @ w[out,in]
					e.B.Gemm(dx, gy, w.data, GemmParams{M: rows, N: in, K: out, Alpha: 1, Beta: bx})
				}
				if dh != nil { // dh[rows,r] (+)= scale · gy @ up[out,r]
					e.B.Gemm(dh, gy, up.data, GemmParams{M: rows, N: r, K: out, Alpha: scale, Beta: bh})
				}
			}
			weights := func() {
				if dw != nil { // dw[out,in] (+)= gy^T @ x
					e.B.Gemm(dw, gy, x.data, GemmParams{M: out, N: in, K: rows, TransA: true, Alpha: 1, Beta: bw})
				}
				if dup != nil { // dup[out,r] += scale · gy^T @ h
					e.B.Gemm(dup, gy, h.data, GemmParams{M: out, N: r, K: rows, TransA: true, Alpha: scale, Beta: 1})
				}
			}
			e.both(2*rows*(in+r)*out < concurrentMaxFlops, inputs, weights)
			if bias != nil && bias.needGrad {
				e.B.BinaryBackward(OpAdd, nil, e.gradOf(bias), gy, y.data, bias.data, Broadcast{Inner: 1, BLen: out})
			}
		})
	}
	return y
}

// Conv2DLowRank is Conv2D(x, w, bias, stride, pad) + scale·up(h): a
// convolution with a low-rank branch (LoCon) whose rank features h
// [N, r, P, Q] the caller has computed from x, and up [K, r] or [K, r, 1, 1]
// (a 1×1 convolution). As in LinearLowRank, the branch's scale and sum are
// the alpha and beta of one batched GEMM.
func Conv2DLowRank(x, w, bias *Tensor, stride, pad int, h, up *Tensor, scale float32) *Tensor {
	e := x.e
	if len(w.shape) != 4 || len(h.shape) != 4 || up.Len() == 0 || up.shape[0] != w.shape[0] || (len(up.shape) != 2 && len(up.shape) != 4) ||
		(len(up.shape) == 4 && (up.shape[2] != 1 || up.shape[3] != 1)) || up.shape[1] != h.shape[1] {
		Errorf("Conv2DLowRank", "branch %v × up %v does not match weight %v", h.shape, up.shape, w.shape)
	}
	if h.DType() != x.DType() || up.DType() != w.DType() {
		Errorf("Conv2DLowRank", "dtypes: input %v, weight %v, branch %v, up %v", x.DType(), w.DType(), h.DType(), up.DType())
	}
	y := convForward("Conv2DLowRank", x, w, bias, stride, pad)
	s := y.shape
	n, k, pq, r := s[0], s[1], s[2]*s[3], h.shape[1]
	if h.shape[0] != n || h.shape[2] != s[2] || h.shape[3] != s[3] {
		Errorf("Conv2DLowRank", "branch %v does not match the output %v", h.shape, s)
	}
	// y[n] (K×PQ) += scale · up (K×r) · h[n] (r×PQ), the weight shared by the batch.
	e.B.Gemm(y.data, up.data, h.data, GemmParams{M: k, N: pq, K: r, Batch: n,
		StrideB: r * pq, StrideC: k * pq, Alpha: scale, Beta: 1})
	if e.track(y, x, w, bias, h, up) {
		p := convParams(x, w, stride, pad)
		e.push(y, func(gy Storage) {
			dx, dw, db, p := e.convGrads(x, w, bias, p)
			var dh, dup Storage
			var bh float32
			if h.needGrad {
				dh, bh = e.gradOut(h)
			}
			if up.needGrad {
				dup = e.gradOf(up)
			}
			inputs := func() {
				if dx != nil {
					e.B.Conv2DBackwardData(dx, gy, w.data, p)
				}
				if dh != nil { // dh[n] (r×PQ) (+)= scale · upᵀ (r×K) · gy[n] (K×PQ)
					e.B.Gemm(dh, up.data, gy, GemmParams{TransA: true, M: r, N: pq, K: k, Batch: n,
						StrideB: k * pq, StrideC: r * pq, Alpha: scale, Beta: bh})
				}
			}
			weights := func() {
				if dw != nil || db != nil {
					e.B.Conv2DBackwardFilter(dw, db, gy, x.data, p)
				}
				if dup != nil { // dup (K×r) += scale · Σ_n gy[n] (K×PQ) · h[n]ᵀ (PQ×r)
					gemmMaybeReduce(e, dup, gy, h.data, GemmParams{TransB: true, M: k, N: r, K: pq, Batch: n,
						StrideA: k * pq, StrideB: r * pq, Alpha: scale, Beta: 1}, true)
				}
			}
			flops := 2 * p.N * p.K * p.P() * p.Q() * (p.C*p.R*p.S + r)
			e.both(flops < concurrentMaxFlops, inputs, weights)
		})
	}
	return y
}
