package backendtest

// The float64 reference of every Backend method: plain loops over the
// definitions, written for obviousness, not speed. Each function mirrors one
// Backend method with []float64 in place of Storage and the same argument
// order. Backward halves ADD into their gradient slices and skip nil ones,
// like the backends. Backward references recompute what they need from the
// inputs instead of trusting saved values, so they depend on nothing a
// backend produced.

import (
	"math"

	"loco/pkg/tensor"
)

// refGemm: C_i = Alpha*op(A_i)*op(B_i) + Beta*C_i; Beta == 0 does not read C.
func refGemm(c, a, b []float64, p tensor.GemmParams) {
	p = p.Tight()
	for i := 0; i < p.Batch; i++ {
		ao, bo, co := i*p.StrideA, i*p.StrideB, i*p.StrideC
		for m := 0; m < p.M; m++ {
			for n := 0; n < p.N; n++ {
				var s float64
				for k := 0; k < p.K; k++ {
					var av, bv float64
					if p.TransA {
						av = a[ao+k*p.LDA+m]
					} else {
						av = a[ao+m*p.LDA+k]
					}
					if p.TransB {
						bv = b[bo+n*p.LDB+k]
					} else {
						bv = b[bo+k*p.LDB+n]
					}
					s += av * bv
				}
				ci := co + m*p.LDC + n
				v := float64(p.Alpha) * s
				if p.Beta != 0 {
					v += float64(p.Beta) * c[ci]
				}
				c[ci] = v
			}
		}
	}
}

// convTap calls f(xi, wi, yi) for every multiply of the convolution: x index,
// weight index, output index. Padding taps are left out.
func convTap(p tensor.ConvParams, f func(xi, wi, yi int)) {
	P, Q := p.P(), p.Q()
	for n := 0; n < p.N; n++ {
		for k := 0; k < p.K; k++ {
			for oh := 0; oh < P; oh++ {
				for ow := 0; ow < Q; ow++ {
					yi := ((n*p.K+k)*P+oh)*Q + ow
					for c := 0; c < p.C; c++ {
						for r := 0; r < p.R; r++ {
							h := oh*p.StrideH - p.PadH + r
							if h < 0 || h >= p.H {
								continue
							}
							for s := 0; s < p.S; s++ {
								w := ow*p.StrideW - p.PadW + s
								if w < 0 || w >= p.W {
									continue
								}
								f(((n*p.C+c)*p.H+h)*p.W+w, ((k*p.C+c)*p.R+r)*p.S+s, yi)
							}
						}
					}
				}
			}
		}
	}
}

func refConv2D(y, x, w, bias []float64, p tensor.ConvParams) {
	P, Q := p.P(), p.Q()
	for i := range y[:p.N*p.K*P*Q] {
		y[i] = 0
		if bias != nil {
			y[i] = bias[(i/(P*Q))%p.K]
		}
	}
	convTap(p, func(xi, wi, yi int) { y[yi] += x[xi] * w[wi] })
}

func refConv2DBackwardData(dx, dy, w []float64, p tensor.ConvParams) {
	convTap(p, func(xi, wi, yi int) { dx[xi] += dy[yi] * w[wi] })
}

func refConv2DBackwardFilter(dw, dbias, dy, x []float64, p tensor.ConvParams) {
	if dw != nil {
		convTap(p, func(xi, wi, yi int) { dw[wi] += dy[yi] * x[xi] })
	}
	if dbias != nil {
		PQ := p.P() * p.Q()
		for i := range dy[:p.N*p.K*PQ] {
			dbias[(i/PQ)%p.K] += dy[i]
		}
	}
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// normRows normalises each of the rows sets of x indices given by idx(row, j),
// j < cnt, with channel(row, j) selecting gamma and beta.
type normLayout struct {
	rows, cnt    int
	idx, channel func(row, j int) int
}

func groupLayout(p tensor.NormParams) normLayout {
	cg := p.C / p.Groups
	return normLayout{
		rows: p.N * p.Groups, cnt: cg * p.HW,
		idx: func(row, j int) int {
			n, g := row/p.Groups, row%p.Groups
			return (n*p.C+g*cg)*p.HW + j
		},
		channel: func(row, j int) int { return (row%p.Groups)*cg + j/p.HW },
	}
}

func layerLayout(p tensor.NormParams) normLayout {
	return normLayout{
		rows: p.Rows, cnt: p.Cols,
		idx:     func(row, j int) int { return row*p.Cols + j },
		channel: func(row, j int) int { return j },
	}
}

// refNorm: y = silu?((x-mean)*rstd*gamma + beta) with the biased variance.
func refNorm(l normLayout, y, mean, rstd, x, gamma, beta []float64, eps float32, silu bool) {
	for row := 0; row < l.rows; row++ {
		var m float64
		for j := 0; j < l.cnt; j++ {
			m += x[l.idx(row, j)]
		}
		m /= float64(l.cnt)
		var v float64
		for j := 0; j < l.cnt; j++ {
			d := x[l.idx(row, j)] - m
			v += d * d
		}
		v /= float64(l.cnt)
		rs := 1 / math.Sqrt(v+float64(eps))
		mean[row], rstd[row] = m, rs
		for j := 0; j < l.cnt; j++ {
			i := l.idx(row, j)
			z := (x[i] - m) * rs
			if gamma != nil {
				z = z*gamma[l.channel(row, j)] + beta[l.channel(row, j)]
			}
			if silu {
				z *= sigmoid(z)
			}
			y[i] = z
		}
	}
}

// refNormBackward recomputes mean and rstd from x.
func refNormBackward(l normLayout, dx, dgamma, dbeta, dy, x, gamma, beta []float64, eps float32, silu bool) {
	for row := 0; row < l.rows; row++ {
		var m float64
		for j := 0; j < l.cnt; j++ {
			m += x[l.idx(row, j)]
		}
		m /= float64(l.cnt)
		var v float64
		for j := 0; j < l.cnt; j++ {
			d := x[l.idx(row, j)] - m
			v += d * d
		}
		v /= float64(l.cnt)
		rs := 1 / math.Sqrt(v+float64(eps))

		xh := make([]float64, l.cnt)  // normalised x
		dxh := make([]float64, l.cnt) // gradient of the loss w.r.t. xh
		for j := 0; j < l.cnt; j++ {
			i := l.idx(row, j)
			xh[j] = (x[i] - m) * rs
			g, bt := 1.0, 0.0
			if gamma != nil {
				g = gamma[l.channel(row, j)]
				if beta != nil {
					bt = beta[l.channel(row, j)]
				}
			}
			dz := dy[i] // gradient w.r.t. the affine output z
			if silu {
				z := xh[j]*g + bt
				s := sigmoid(z)
				dz *= s * (1 + z*(1-s))
			}
			if dgamma != nil {
				dgamma[l.channel(row, j)] += dz * xh[j]
			}
			if dbeta != nil {
				dbeta[l.channel(row, j)] += dz
			}
			dxh[j] = dz * g
		}
		if dx == nil {
			continue
		}
		var s1, s2 float64
		for j := range dxh {
			s1 += dxh[j]
			s2 += dxh[j] * xh[j]
		}
		n := float64(l.cnt)
		for j := range dxh {
			dx[l.idx(row, j)] += rs * (dxh[j] - s1/n - xh[j]*s2/n)
		}
	}
}

func refGroupNorm(y, mean, rstd, x, gamma, beta []float64, p tensor.NormParams) {
	refNorm(groupLayout(p), y, mean, rstd, x, gamma, beta, p.Eps, p.SiLU)
}

func refGroupNormBackward(dx, dgamma, dbeta, dy, x, gamma, beta []float64, p tensor.NormParams) {
	refNormBackward(groupLayout(p), dx, dgamma, dbeta, dy, x, gamma, beta, p.Eps, p.SiLU)
}

func refLayerNorm(y, mean, rstd, x, gamma, beta []float64, p tensor.NormParams) {
	refNorm(layerLayout(p), y, mean, rstd, x, gamma, beta, p.Eps, false)
}

func refLayerNormBackward(dx, dgamma, dbeta, dy, x, gamma []float64, p tensor.NormParams) {
	refNormBackward(layerLayout(p), dx, dgamma, dbeta, dy, x, gamma, nil, p.Eps, false)
}

// unaryF returns f(x) and f'(x).
func unaryF(op tensor.UnaryOp, x float64) (f, df float64) {
	switch op {
	case tensor.OpSiLU:
		s := sigmoid(x)
		return x * s, s * (1 + x*(1-s))
	case tensor.OpGELU:
		return gelu(x)
	case tensor.OpQuickGELU:
		s := sigmoid(1.702 * x)
		return x * s, s + 1.702*x*s*(1-s)
	}
	panic("backendtest: unknown unary op " + op.String())
}

// gelu is x*Φ(x) (exact erf form) and its derivative Φ(x) + x*φ(x).
func gelu(x float64) (f, df float64) {
	cdf := 0.5 * (1 + math.Erf(x/math.Sqrt2))
	pdf := math.Exp(-x*x/2) / math.Sqrt(2*math.Pi)
	return x * cdf, cdf + x*pdf
}

func refUnary(op tensor.UnaryOp, y, x []float64) {
	for i := range x {
		y[i], _ = unaryF(op, x[i])
	}
}

func refUnaryBackward(op tensor.UnaryOp, dx, dy, x []float64) {
	for i := range x {
		_, d := unaryF(op, x[i])
		dx[i] += dy[i] * d
	}
}

func refGEGLU(y, x []float64, rows, half int) {
	for r := 0; r < rows; r++ {
		for j := 0; j < half; j++ {
			g, _ := gelu(x[r*2*half+half+j])
			y[r*half+j] = x[r*2*half+j] * g
		}
	}
}

func refGEGLUBackward(dx, dy, x []float64, rows, half int) {
	for r := 0; r < rows; r++ {
		for j := 0; j < half; j++ {
			a := x[r*2*half+j]
			g, dg := gelu(x[r*2*half+half+j])
			d := dy[r*half+j]
			dx[r*2*half+j] += d * g
			dx[r*2*half+half+j] += d * a * dg
		}
	}
}

func refSoftmax(y, x []float64, rows, cols int) {
	for r := 0; r < rows; r++ {
		row := x[r*cols : (r+1)*cols]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(v - mx)
		}
		for c, v := range row {
			y[r*cols+c] = math.Exp(v-mx) / s
		}
	}
}

func refSoftmaxBackward(dx, dy, y []float64, rows, cols int) {
	for r := 0; r < rows; r++ {
		var dot float64
		for c := 0; c < cols; c++ {
			dot += dy[r*cols+c] * y[r*cols+c]
		}
		for c := 0; c < cols; c++ {
			i := r*cols + c
			dx[i] += y[i] * (dy[i] - dot)
		}
	}
}

// attnRow returns the attention probabilities of query i of (b, h) over the
// keys it sees, and the log-sum-exp of its scaled scores.
func attnRow(q, k []float64, p tensor.AttnParams, b, h, i int) (prob []float64, lse float64) {
	nk := p.Tk
	if p.Causal {
		nk = i + 1
	}
	s := make([]float64, nk)
	mx := math.Inf(-1)
	for j := range s {
		var dot float64
		for d := 0; d < p.D; d++ {
			dot += q[((b*p.Tq+i)*p.H+h)*p.D+d] * k[((b*p.Tk+j)*p.H+h)*p.D+d]
		}
		s[j] = dot * float64(p.Scale)
		mx = math.Max(mx, s[j])
	}
	var sum float64
	for _, v := range s {
		sum += math.Exp(v - mx)
	}
	lse = mx + math.Log(sum)
	for j := range s {
		s[j] = math.Exp(s[j] - lse)
	}
	return s, lse
}

func refAttention(o, lse, q, k, v []float64, p tensor.AttnParams) {
	for b := 0; b < p.B; b++ {
		for h := 0; h < p.H; h++ {
			for i := 0; i < p.Tq; i++ {
				prob, l := attnRow(q, k, p, b, h, i)
				lse[(b*p.H+h)*p.Tq+i] = l
				for d := 0; d < p.D; d++ {
					var s float64
					for j, pj := range prob {
						s += pj * v[((b*p.Tk+j)*p.H+h)*p.D+d]
					}
					o[((b*p.Tq+i)*p.H+h)*p.D+d] = s
				}
			}
		}
	}
}

// refAttentionBackward recomputes the probabilities from q and k (it does
// not read o or lse).
func refAttentionBackward(dq, dk, dv, do, q, k, v []float64, p tensor.AttnParams) {
	sc := float64(p.Scale)
	for b := 0; b < p.B; b++ {
		for h := 0; h < p.H; h++ {
			for i := 0; i < p.Tq; i++ {
				prob, _ := attnRow(q, k, p, b, h, i)
				qi := ((b*p.Tq+i)*p.H + h) * p.D
				dp := make([]float64, len(prob)) // dL/dprob_j = do_i · v_j
				var dot float64                  // Σ_j prob_j dp_j
				for j := range prob {
					kj := ((b*p.Tk+j)*p.H + h) * p.D
					for d := 0; d < p.D; d++ {
						dp[j] += do[qi+d] * v[kj+d]
					}
					dot += prob[j] * dp[j]
				}
				for j, pj := range prob {
					kj := ((b*p.Tk+j)*p.H + h) * p.D
					ds := pj * (dp[j] - dot) // dL/dscore_j
					for d := 0; d < p.D; d++ {
						if dq != nil {
							dq[qi+d] += sc * ds * k[kj+d]
						}
						if dk != nil {
							dk[kj+d] += sc * ds * q[qi+d]
						}
						if dv != nil {
							dv[kj+d] += pj * do[qi+d]
						}
					}
				}
			}
		}
	}
}

func binaryF(op tensor.BinaryOp, a, b float64) float64 {
	switch op {
	case tensor.OpAdd:
		return a + b
	case tensor.OpMul:
		return a * b
	}
	panic("backendtest: unknown binary op " + op.String())
}

func refBinary(op tensor.BinaryOp, y, a, b []float64, p tensor.Broadcast) {
	for i := range a {
		y[i] = binaryF(op, a[i], b[(i/p.Inner)%p.BLen])
	}
}

func refBinaryBackward(op tensor.BinaryOp, da, db, dy, a, b []float64, p tensor.Broadcast) {
	for i := range dy {
		j := (i / p.Inner) % p.BLen
		dA, dB := 1.0, 1.0 // ∂y/∂a, ∂y/∂b
		if op == tensor.OpMul {
			dA, dB = b[j], a[i]
		}
		if da != nil {
			da[i] += dy[i] * dA
		}
		if db != nil {
			db[j] += dy[i] * dB
		}
	}
}

// refPermute: y = x.permute(perm), x of the given shape; accumulate adds.
func refPermute(y, x []float64, shape, perm []int, accumulate bool) {
	rank := len(shape)
	xstride := make([]int, rank)
	s := 1
	for d := rank - 1; d >= 0; d-- {
		xstride[d] = s
		s *= shape[d]
	}
	idx := make([]int, rank) // index into y, whose axis d is x's axis perm[d]
	for yi := 0; yi < s; yi++ {
		rem := yi
		for d := rank - 1; d >= 0; d-- {
			idx[d] = rem % shape[perm[d]]
			rem /= shape[perm[d]]
		}
		xi := 0
		for d := range idx {
			xi += idx[d] * xstride[perm[d]]
		}
		if accumulate {
			y[yi] += x[xi]
		} else {
			y[yi] = x[xi]
		}
	}
}

func refUpsample2x(y, x []float64, nc, h, w int) {
	for c := 0; c < nc; c++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				y[(c*2*h+i)*2*w+j] = x[(c*h+i/2)*w+j/2]
			}
		}
	}
}

func refUpsample2xBackward(dx, dy []float64, nc, h, w int) {
	for c := 0; c < nc; c++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				dx[(c*h+i/2)*w+j/2] += dy[(c*2*h+i)*2*w+j]
			}
		}
	}
}

// bilinearSrc is PyTorch's source index for align_corners=false: the two
// neighbours and the weight of the second.
func bilinearSrc(dst, in, out int) (i0, i1 int, l1 float64) {
	src := (float64(dst)+0.5)*float64(in)/float64(out) - 0.5
	if src < 0 {
		src = 0
	}
	i0 = int(src)
	i1 = min(i0+1, in-1)
	return i0, i1, src - float64(i0)
}

func refResizeBilinear(y, x []float64, nc, h, w, oh, ow int) {
	for c := 0; c < nc; c++ {
		for i := 0; i < oh; i++ {
			h0, h1, lh := bilinearSrc(i, h, oh)
			for j := 0; j < ow; j++ {
				w0, w1, lw := bilinearSrc(j, w, ow)
				at := func(a, b int) float64 { return x[(c*h+a)*w+b] }
				y[(c*oh+i)*ow+j] = (1-lh)*((1-lw)*at(h0, w0)+lw*at(h0, w1)) +
					lh*((1-lw)*at(h1, w0)+lw*at(h1, w1))
			}
		}
	}
}

func refEmbedding(y, table []float64, ids []int32, dim int) {
	for i, id := range ids {
		copy(y[i*dim:(i+1)*dim], table[int(id)*dim:(int(id)+1)*dim])
	}
}

func refEmbeddingBackward(dtable, dy []float64, ids []int32, dim int) {
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			dtable[int(id)*dim+j] += dy[i*dim+j]
		}
	}
}

func refMSE(loss, a, b []float64, rows, cols int) {
	for r := 0; r < rows; r++ {
		var s float64
		for c := 0; c < cols; c++ {
			d := a[r*cols+c] - b[r*cols+c]
			s += d * d
		}
		loss[r] = s / float64(cols)
	}
}

func refMSEBackward(da, db, g, a, b []float64, rows, cols int) {
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			i := r*cols + c
			d := g[r] * 2 * (a[i] - b[i]) / float64(cols)
			if da != nil {
				da[i] += d
			}
			if db != nil {
				db[i] -= d
			}
		}
	}
}

func refSumSquares(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return s
}

// refAdamW is one torch.optim.AdamW step.
func refAdamW(param, grad, m, v []float64, p tensor.AdamWParams) {
	b1, b2 := float64(p.Beta1), float64(p.Beta2)
	lr, wd, eps := float64(p.LR), float64(p.WeightDecay), float64(p.Eps)
	bc1 := 1 - math.Pow(b1, float64(p.Step))
	bc2 := 1 - math.Pow(b2, float64(p.Step))
	for i := range param {
		g := grad[i] * float64(p.GradScale)
		param[i] *= 1 - lr*wd
		m[i] = b1*m[i] + (1-b1)*g
		v[i] = b2*v[i] + (1-b2)*g*g
		denom := math.Sqrt(v[i])/math.Sqrt(bc2) + eps
		param[i] -= lr / bc1 * m[i] / denom
	}
}
