package tensor

// Normalisation, activations, softmax and attention.

// GroupNorm normalises x [N,C,...] over groups of C/groups channels;
// gamma, beta [C] (both nil for no affine). With silu the result is
// silu(groupnorm(x)), fused.
func GroupNorm(x, gamma, beta *Tensor, groups int, eps float32, silu bool) *Tensor {
	e := x.e
	if len(x.shape) < 2 || groups <= 0 || x.shape[1]%groups != 0 {
		Errorf("GroupNorm", "input %v with %d groups", x.shape, groups)
	}
	if (gamma == nil) != (beta == nil) {
		Errorf("GroupNorm", "gamma and beta must both be given or both be nil")
	}
	n, c := x.shape[0], x.shape[1]
	if gamma != nil && (gamma.Len() != c || beta.Len() != c) {
		Errorf("GroupNorm", "input %v with affine %v, %v", x.shape, gamma.shape, beta.shape)
	}
	p := NormParams{N: n, C: c, HW: x.Len() / (n * c), Groups: groups, Eps: eps, SiLU: silu}
	y := e.NewOf(x.DType(), x.shape...)
	mean, _ := e.alloc(F32, n*groups)
	rstd, _ := e.alloc(F32, n*groups)
	var g, b Storage
	if gamma != nil {
		g, b = gamma.data, beta.data
	}
	e.B.GroupNorm(y.data, mean, rstd, x.data, g, b, p)
	if e.track(y, x, gamma, beta) {
		e.push(y, func(gy Storage) {
			var dx, dg, db Storage
			if x.needGrad {
				dx = e.gradOf(x)
			}
			if gamma != nil && gamma.needGrad {
				dg = e.gradOf(gamma)
			}
			if beta != nil && beta.needGrad {
				db = e.gradOf(beta)
			}
			e.B.GroupNormBackward(dx, dg, db, gy, x.data, mean, rstd, g, b, p)
		})
	}
	return y
}

// LayerNorm normalises over the last dim; gamma, beta have that length.
func LayerNorm(x, gamma, beta *Tensor, eps float32) *Tensor {
	e := x.e
	cols := x.shape[len(x.shape)-1]
	if gamma.Len() != cols || beta.Len() != cols {
		Errorf("LayerNorm", "input %v with affine %v, %v", x.shape, gamma.shape, beta.shape)
	}
	rows := x.Len() / cols
	p := NormParams{Rows: rows, Cols: cols, Eps: eps}
	y := e.NewOf(x.DType(), x.shape...)
	mean, _ := e.alloc(F32, rows)
	rstd, _ := e.alloc(F32, rows)
	e.B.LayerNorm(y.data, mean, rstd, x.data, gamma.data, beta.data, p)
	if e.track(y, x, gamma, beta) {
		e.push(y, func(gy Storage) {
			var dx, dg, db Storage
			if x.needGrad {
				dx = e.gradOf(x)
			}
			if gamma.needGrad {
				dg = e.gradOf(gamma)
			}
			if beta.needGrad {
				db = e.gradOf(beta)
			}
			e.B.LayerNormBackward(dx, dg, db, gy, x.data, mean, rstd, gamma.data, p)
		})
	}
	return y
}

func unary(op UnaryOp, x *Tensor) *Tensor {
	e := x.e
	y := e.NewOf(x.DType(), x.shape...)
	e.B.Unary(op, y.data, x.data)
	if e.track(y, x) {
		e.push(y, func(gy Storage) { e.B.UnaryBackward(op, e.gradOf(x), gy, x.data) })
	}
	return y
}

// SiLU is x·sigmoid(x).
func SiLU(x *Tensor) *Tensor { return unary(OpSiLU, x) }

// GELU is the exact (erf) GELU.
func GELU(x *Tensor) *Tensor { return unary(OpGELU, x) }

// QuickGELU is x·sigmoid(1.702x), as in CLIP.
func QuickGELU(x *Tensor) *Tensor { return unary(OpQuickGELU, x) }

// GEGLU splits the last dim of x in halves (value, gate) and returns
// value·gelu(gate).
func GEGLU(x *Tensor) *Tensor {
	e := x.e
	last := x.shape[len(x.shape)-1]
	if last%2 != 0 {
		Errorf("GEGLU", "last dim of %v is odd", x.shape)
	}
	half := last / 2
	rows := x.Len() / last
	out := append(x.shape[:len(x.shape)-1].clone(), half)
	y := e.NewOf(x.DType(), out...)
	e.B.GEGLU(y.data, x.data, rows, half)
	if e.track(y, x) {
		e.push(y, func(gy Storage) { e.B.GEGLUBackward(e.gradOf(x), gy, x.data, rows, half) })
	}
	return y
}

// Softmax over the last dim.
func Softmax(x *Tensor) *Tensor {
	e := x.e
	cols := x.shape[len(x.shape)-1]
	rows := x.Len() / cols
	y := e.NewOf(x.DType(), x.shape...)
	e.B.Softmax(y.data, x.data, rows, cols)
	if e.track(y, x) {
		e.push(y, func(gy Storage) { e.B.SoftmaxBackward(e.gradOf(x), gy, y.data, rows, cols) })
	}
	return y
}

// Attention is multi-head scaled-dot-product attention. q is [B,Tq,H·D],
// k and v are [B,Tk,H·D]; the result is [B,Tq,H·D]. The scale is 1/√D.
func Attention(q, k, v *Tensor, heads int, causal bool) *Tensor {
	e := q.e
	if len(q.shape) != 3 || len(k.shape) != 3 || !k.shape.Equal(v.shape) ||
		q.shape[0] != k.shape[0] || q.shape[2] != k.shape[2] || heads <= 0 || q.shape[2]%heads != 0 {
		Errorf("Attention", "q %v, k %v, v %v with %d heads", q.shape, k.shape, v.shape, heads)
	}
	d := q.shape[2] / heads
	p := AttnParams{B: q.shape[0], H: heads, Tq: q.shape[1], Tk: k.shape[1], D: d,
		Scale: float32(1 / sqrt64(float64(d))), Causal: causal}
	if causal && p.Tq != p.Tk {
		Errorf("Attention", "causal attention needs Tq == Tk, got q %v, k %v", q.shape, k.shape)
	}
	o := e.NewOf(q.DType(), q.shape...)
	lse, _ := e.alloc(F32, p.B*p.H*p.Tq)
	e.B.Attention(o.data, lse, q.data, k.data, v.data, p)
	if e.track(o, q, k, v) {
		e.push(o, func(gy Storage) {
			// Fresh gradient buffers are written, not zero-filled and added
			// into, when all three are fresh and distinct (an overwrite
			// applies to all of them).
			p := p
			p.Overwrite = q != k && k != v && q != v
			for _, t := range []*Tensor{q, k, v} {
				if t.needGrad && t.grad != nil {
					p.Overwrite = false
				}
			}
			grad := func(t *Tensor) Storage {
				switch {
				case !t.needGrad:
					return nil
				case p.Overwrite:
					s, _ := e.gradOut(t)
					return s
				}
				return e.gradOf(t)
			}
			dq, dk, dv := grad(q), grad(k), grad(v)
			e.B.AttentionBackward(dq, dk, dv, gy, q.data, k.data, v.data, o.data, lse, p)
		})
	}
	return o
}
