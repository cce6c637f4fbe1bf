package backendtest

import (
	"loco/pkg/tensor"
)

// refBackend is a tensor.Backend built on the float64 reference, storing
// values rounded to their dtype. It exists to test the suite itself: Run
// must pass on it for every dtype, and broken wrappers around it must fail.
type refBackend struct{}

type refStorage struct {
	dt   tensor.DType
	data []float32 // values representable in dt; views share the parent's array
}

func (s *refStorage) DType() tensor.DType { return s.dt }
func (s *refStorage) Len() int            { return len(s.data) }

func rs(s tensor.Storage) *refStorage { return s.(*refStorage) }

// get returns a float64 copy of s (nil for nil).
func get(s tensor.Storage) []float64 {
	if s == nil {
		return nil
	}
	return f64(rs(s).data)
}

// put stores v into s, rounding to its dtype (no-op for nil).
func put(s tensor.Storage, v []float64) {
	if s == nil {
		return
	}
	r := rs(s)
	for i := range r.data {
		r.data[i] = roundTo(r.dt, float32(v[i]))
	}
}

func (refBackend) Name() string { return "ref" }
func (refBackend) Alloc(dt tensor.DType, n int) tensor.Storage {
	return &refStorage{dt, make([]float32, n)}
}
func (refBackend) Free(tensor.Storage) {}
func (refBackend) View(s tensor.Storage, off, n int) tensor.Storage {
	return &refStorage{s.DType(), rs(s).data[off : off+n : off+n]}
}
func (refBackend) Upload(dst tensor.Storage, src []float32) {
	need("upload", "dst", dst, len(src))
	put(dst, f64(src))
}
func (refBackend) Download(dst []float32, src tensor.Storage) { copy(dst, rs(src).data) }
func (refBackend) Fill(dst tensor.Storage, v float32) {
	d := rs(dst)
	for i := range d.data {
		d.data[i] = roundTo(d.dt, v)
	}
}
func (refBackend) Copy(dst, src tensor.Storage) {
	need("copy", "dst", dst, src.Len())
	put(dst, get(src))
}
func (refBackend) CopyStrided(dst, src tensor.Storage, p tensor.StridedCopy) {
	d, s := get(dst), get(src)
	for r := 0; r < p.Rows; r++ {
		for c := 0; c < p.Cols; c++ {
			v := s[p.SrcOff+r*p.SrcStride+c]
			if p.Accumulate {
				v += d[p.DstOff+r*p.DstStride+c]
			}
			d[p.DstOff+r*p.DstStride+c] = v
		}
	}
	put(dst, d)
}
func (refBackend) Sync() error { return nil }

func (refBackend) Gemm(c, a, b tensor.Storage, p tensor.GemmParams) {
	na, nb, nc := gemmSizes(p)
	atLeast("gemm", "a", a, na)
	atLeast("gemm", "b", b, nb)
	atLeast("gemm", "c", c, nc)
	cv := get(c)
	refGemm(cv, get(a), get(b), p)
	put(c, cv)
}
func (refBackend) Conv2D(y, x, w, bias tensor.Storage, p tensor.ConvParams) {
	nx, nw, ny := convLens(p)
	need("conv2d", "x", x, nx)
	need("conv2d", "w", w, nw)
	need("conv2d", "y", y, ny)
	yv := get(y)
	refConv2D(yv, get(x), get(w), get(bias), p)
	put(y, yv)
}
func (refBackend) Conv2DBackwardData(dx, dy, w tensor.Storage, p tensor.ConvParams) {
	v := get(dx)
	if p.Overwrite {
		clear(v)
	}
	refConv2DBackwardData(v, get(dy), get(w), p)
	put(dx, v)
}
func (refBackend) Conv2DBackwardFilter(dw, dbias, dy, x tensor.Storage, p tensor.ConvParams) {
	w, b := get(dw), get(dbias)
	refConv2DBackwardFilter(w, b, get(dy), get(x), p)
	put(dw, w)
	put(dbias, b)
}
func (refBackend) GroupNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	need("group_norm", "x", x, p.N*p.C*p.HW)
	need("group_norm", "y", y, p.N*p.C*p.HW)
	yv, m, r := get(y), get(mean), get(rstd)
	refGroupNorm(yv, m, r, get(x), get(gamma), get(beta), p)
	put(y, yv)
	put(mean, m)
	put(rstd, r)
}
func (refBackend) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta tensor.Storage, p tensor.NormParams) {
	a, g, b := get(dx), get(dgamma), get(dbeta)
	refGroupNormBackward(a, g, b, get(dy), get(x), get(gamma), get(beta), p)
	put(dx, a)
	put(dgamma, g)
	put(dbeta, b)
}
func (refBackend) LayerNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	yv, m, r := get(y), get(mean), get(rstd)
	refLayerNorm(yv, m, r, get(x), get(gamma), get(beta), p)
	put(y, yv)
	put(mean, m)
	put(rstd, r)
}
func (refBackend) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma tensor.Storage, p tensor.NormParams) {
	a, g, b := get(dx), get(dgamma), get(dbeta)
	refLayerNormBackward(a, g, b, get(dy), get(x), get(gamma), p)
	put(dx, a)
	put(dgamma, g)
	put(dbeta, b)
}
func (refBackend) Unary(op tensor.UnaryOp, y, x tensor.Storage) {
	v := get(x)
	refUnary(op, v, v)
	put(y, v)
}
func (refBackend) UnaryBackward(op tensor.UnaryOp, dx, dy, x tensor.Storage) {
	v := get(dx)
	refUnaryBackward(op, v, get(dy), get(x))
	put(dx, v)
}
func (refBackend) GEGLU(y, x tensor.Storage, rows, half int) {
	v := get(y)
	refGEGLU(v, get(x), rows, half)
	put(y, v)
}
func (refBackend) GEGLUBackward(dx, dy, x tensor.Storage, rows, half int) {
	v := get(dx)
	refGEGLUBackward(v, get(dy), get(x), rows, half)
	put(dx, v)
}
func (refBackend) Softmax(y, x tensor.Storage, rows, cols int) {
	v := get(y)
	refSoftmax(v, get(x), rows, cols)
	put(y, v)
}
func (refBackend) SoftmaxBackward(dx, dy, y tensor.Storage, rows, cols int) {
	v := get(dx)
	refSoftmaxBackward(v, get(dy), get(y), rows, cols)
	put(dx, v)
}
func (refBackend) Attention(o, lse, q, k, v tensor.Storage, p tensor.AttnParams) {
	nq, nk, _ := attnLens(p)
	need("attention", "q", q, nq)
	need("attention", "o", o, nq)
	need("attention", "k", k, nk)
	ov, l := get(o), get(lse)
	refAttention(ov, l, get(q), get(k), get(v), p)
	put(o, ov)
	put(lse, l)
}
func (refBackend) AttentionBackward(dq, dk, dv, do, q, k, v, o, lse tensor.Storage, p tensor.AttnParams) {
	a, b, c := get(dq), get(dk), get(dv)
	if p.Overwrite {
		clear(a)
		clear(b)
		clear(c)
	}
	refAttentionBackward(a, b, c, get(do), get(q), get(k), get(v), p)
	put(dq, a)
	put(dk, b)
	put(dv, c)
}
func (refBackend) Binary(op tensor.BinaryOp, y, a, b tensor.Storage, p tensor.Broadcast) {
	need("binary", "b", b, p.BLen)
	need("binary", "y", y, a.Len())
	v := get(a)
	refBinary(op, v, get(a), get(b), p)
	put(y, v)
}
func (refBackend) BinaryBackward(op tensor.BinaryOp, da, db, dy, a, b tensor.Storage, p tensor.Broadcast) {
	x, y := get(da), get(db)
	refBinaryBackward(op, x, y, get(dy), get(a), get(b), p)
	put(da, x)
	put(db, y)
}
func (refBackend) Scale(y, x tensor.Storage, alpha float32) {
	v := get(x)
	for i := range v {
		v[i] *= float64(alpha)
	}
	put(y, v)
}
func (refBackend) Axpy(y, x tensor.Storage, alpha float32) {
	v, xv := get(y), get(x)
	for i := range v {
		v[i] += float64(alpha) * xv[i]
	}
	put(y, v)
}
func (refBackend) Permute(y, x tensor.Storage, shape, perm []int, accumulate bool) {
	seen := make([]bool, len(shape))
	for _, d := range perm {
		if d < 0 || d >= len(shape) || seen[d] || len(perm) != len(shape) {
			tensor.Errorf("permute", "%v is not a permutation of the axes of %v", perm, shape)
		}
		seen[d] = true
	}
	v := get(y)
	refPermute(v, get(x), shape, perm, accumulate)
	put(y, v)
}
func (refBackend) Upsample2x(y, x tensor.Storage, nc, h, w int) {
	v := get(y)
	refUpsample2x(v, get(x), nc, h, w)
	put(y, v)
}
func (refBackend) Upsample2xBackward(dx, dy tensor.Storage, nc, h, w int) {
	v := get(dx)
	refUpsample2xBackward(v, get(dy), nc, h, w)
	put(dx, v)
}
func (refBackend) ResizeBilinear(y, x tensor.Storage, nc, h, w, oh, ow int) {
	v := get(y)
	refResizeBilinear(v, get(x), nc, h, w, oh, ow)
	put(y, v)
}
func (refBackend) Embedding(y, table tensor.Storage, ids []int32, dim int) {
	for _, id := range ids {
		if id < 0 || int(id)*dim >= table.Len() {
			tensor.Errorf("embedding", "id %d outside a table of %d rows", id, table.Len()/dim)
		}
	}
	v := get(y)
	refEmbedding(v, get(table), ids, dim)
	put(y, v)
}
func (refBackend) EmbeddingBackward(dtable, dy tensor.Storage, ids []int32, dim int) {
	v := get(dtable)
	refEmbeddingBackward(v, get(dy), ids, dim)
	put(dtable, v)
}
func (refBackend) MSE(loss, a, b tensor.Storage, rows, cols int) {
	v := get(loss)
	refMSE(v, get(a), get(b), rows, cols)
	put(loss, v)
}
func (refBackend) MSEBackward(da, db, g, a, b tensor.Storage, rows, cols int) {
	x, y := get(da), get(db)
	refMSEBackward(x, y, get(g), get(a), get(b), rows, cols)
	put(da, x)
	put(db, y)
}
func (refBackend) SumSquares(x tensor.Storage) float64 { return refSumSquares(get(x)) }
func (refBackend) AdamW(param, grad, m, v tensor.Storage, p tensor.AdamWParams) {
	if !(p.GradScale > 0) {
		tensor.Errorf("ref.AdamW", "GradScale %g", p.GradScale)
	}
	a, b, c := get(param), get(m), get(v)
	refAdamW(a, get(grad), b, c, p)
	put(param, a)
	put(m, b)
	put(v, c)
}

var _ tensor.Backend = refBackend{}

// need and atLeast are the reference's length checks (the BadInput cases).
func need(op, name string, s tensor.Storage, n int) {
	if s.Len() != n {
		tensor.Errorf(op, "%s has %d elements, want %d", name, s.Len(), n)
	}
}

func atLeast(op, name string, s tensor.Storage, n int) {
	if s.Len() < n {
		tensor.Errorf(op, "%s has %d elements, needs %d", name, s.Len(), n)
	}
}
