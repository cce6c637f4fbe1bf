package tensor

import "math"

func sqrt64(x float64) float64 { return math.Sqrt(x) }

// Reshape returns a view of x with a new shape of the same size. One
// dimension may be -1 (inferred).
func Reshape(x *Tensor, shape ...int) *Tensor {
	e := x.e
	sh := Shape(shape).clone()
	infer, known := -1, 1
	for i, d := range sh {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			Errorf("Reshape", "bad target shape %v for %v", Shape(shape), x.shape)
		default:
			known *= d
		}
	}
	if infer >= 0 {
		if known == 0 || x.Len()%known != 0 {
			Errorf("Reshape", "cannot infer %v from %v", Shape(shape), x.shape)
		}
		sh[infer] = x.Len() / known
	}
	if sh.Numel() != x.Len() {
		Errorf("Reshape", "cannot view %v as %v", x.shape, Shape(shape))
	}
	y := &Tensor{shape: sh, data: x.data, e: e, slot: -1, gradSlot: -1}
	if e.track(y, x) {
		e.push(y, func(gy Storage) { e.passGrad(x, y, gy) })
	}
	return y
}

// Permute reorders dimensions: result dim i is x's dim perm[i].
func Permute(x *Tensor, perm ...int) *Tensor {
	e := x.e
	if len(perm) != len(x.shape) || len(perm) > 6 {
		Errorf("Permute", "permutation %v for shape %v", perm, x.shape)
	}
	seen := make([]bool, len(perm))
	out := make([]int, len(perm))
	inv := make([]int, len(perm))
	for i, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			Errorf("Permute", "permutation %v for shape %v", perm, x.shape)
		}
		seen[p] = true
		out[i] = x.shape[p]
		inv[p] = i
	}
	y := e.NewOf(x.DType(), out...)
	xs := x.shape.clone()
	e.B.Permute(y.data, x.data, xs, perm, false)
	if e.track(y, x) {
		e.push(y, func(gy Storage) {
			dx, beta := e.gradOut(x)
			e.B.Permute(dx, gy, out, inv, beta != 0)
		})
	}
	return y
}

// axisSplit views a shape as [outer, shape[axis], inner].
func axisSplit(s Shape, axis int) (outer, mid, inner int) {
	return Shape(s[:axis]).Numel(), s[axis], Shape(s[axis+1:]).Numel()
}

// Concat joins tensors along axis; all other dims must agree.
func Concat(axis int, xs ...*Tensor) *Tensor {
	if len(xs) == 0 {
		Errorf("Concat", "no inputs")
	}
	e := xs[0].e
	ref := xs[0].shape
	if axis < 0 || axis >= len(ref) {
		Errorf("Concat", "axis %d for shape %v", axis, ref)
	}
	total := 0
	for _, x := range xs {
		if len(x.shape) != len(ref) || x.DType() != xs[0].DType() {
			Errorf("Concat", "shapes %v and %v", ref, x.shape)
		}
		for i := range ref {
			if i != axis && x.shape[i] != ref[i] {
				Errorf("Concat", "shapes %v and %v differ off axis %d", ref, x.shape, axis)
			}
		}
		total += x.shape[axis]
	}
	out := ref.clone()
	out[axis] = total
	y := e.NewOf(xs[0].DType(), out...)
	outer, _, inner := axisSplit(out, axis)
	off := 0
	for _, x := range xs {
		cols := x.shape[axis] * inner
		e.B.CopyStrided(y.data, x.data, StridedCopy{Rows: outer, Cols: cols,
			DstOff: off, DstStride: total * inner, SrcStride: cols})
		off += cols
	}
	if e.track(y, xs...) {
		e.push(y, func(gy Storage) {
			off := 0
			for _, x := range xs {
				cols := x.shape[axis] * inner
				if x.needGrad {
					dx, beta := e.gradOut(x) // the copy covers all of dx
					e.B.CopyStrided(dx, gy, StridedCopy{Rows: outer, Cols: cols,
						SrcOff: off, SrcStride: total * inner, DstStride: cols, Accumulate: beta != 0})
				}
				off += cols
			}
		})
	}
	return y
}

// Slice returns elements [start, end) of x along axis, as a new tensor.
func Slice(x *Tensor, axis, start, end int) *Tensor {
	e := x.e
	if axis < 0 || axis >= len(x.shape) || start < 0 || end > x.shape[axis] || start >= end {
		Errorf("Slice", "[%d:%d] on axis %d of %v", start, end, axis, x.shape)
	}
	outer, mid, inner := axisSplit(x.shape, axis)
	out := x.shape.clone()
	out[axis] = end - start
	y := e.NewOf(x.DType(), out...)
	cols := (end - start) * inner
	sc := StridedCopy{Rows: outer, Cols: cols, SrcOff: start * inner, SrcStride: mid * inner, DstStride: cols}
	e.B.CopyStrided(y.data, x.data, sc)
	if e.track(y, x) {
		e.push(y, func(gy Storage) {
			e.B.CopyStrided(e.gradOf(x), gy, StridedCopy{Rows: outer, Cols: cols,
				DstOff: start * inner, DstStride: mid * inner, SrcStride: cols, Accumulate: true})
		})
	}
	return y
}

// Chunk splits x into n equal parts along axis.
func Chunk(x *Tensor, axis, n int) []*Tensor {
	if axis < 0 || axis >= len(x.shape) || n <= 0 || x.shape[axis]%n != 0 {
		Errorf("Chunk", "%d chunks on axis %d of %v", n, axis, x.shape)
	}
	size := x.shape[axis] / n
	out := make([]*Tensor, n)
	for i := range out {
		out[i] = Slice(x, axis, i*size, (i+1)*size)
	}
	return out
}

// Pad2D zero-pads the last two dims of x [..., H, W] by top, bottom, left, right.
func Pad2D(x *Tensor, top, bottom, left, right int) *Tensor {
	e := x.e
	r := len(x.shape)
	if r < 2 || top < 0 || bottom < 0 || left < 0 || right < 0 {
		Errorf("Pad2D", "padding (%d,%d,%d,%d) of %v", top, bottom, left, right, x.shape)
	}
	h, w := x.shape[r-2], x.shape[r-1]
	planes := x.Len() / (h * w)
	h2, w2 := h+top+bottom, w+left+right
	out := x.shape.clone()
	out[r-2], out[r-1] = h2, w2
	y := e.NewOf(x.DType(), out...)
	e.B.Fill(y.data, 0)
	// Rows of x land at y row (p*h2 + top + i), column offset left; do it
	// per plane-row block with two strided copies through a W-padded buffer.
	tmp, tslot := e.alloc(x.DType(), planes*h*w2)
	e.B.Fill(tmp, 0)
	e.B.CopyStrided(tmp, x.data, StridedCopy{Rows: planes * h, Cols: w, DstOff: left, DstStride: w2, SrcStride: w})
	e.B.CopyStrided(y.data, tmp, StridedCopy{Rows: planes, Cols: h * w2, DstOff: top * w2, DstStride: h2 * w2, SrcStride: h * w2})
	e.B.Free(tmp)
	e.arena[tslot] = nil
	if e.track(y, x) {
		e.push(y, func(gy Storage) {
			tmp, tslot := e.alloc(x.DType(), planes*h*w2)
			e.B.CopyStrided(tmp, gy, StridedCopy{Rows: planes, Cols: h * w2, SrcOff: top * w2, SrcStride: h2 * w2, DstStride: h * w2})
			e.B.CopyStrided(e.gradOf(x), tmp, StridedCopy{Rows: planes * h, Cols: w, SrcOff: left, SrcStride: w2, DstStride: w, Accumulate: true})
			e.B.Free(tmp)
			e.arena[tslot] = nil
		})
	}
	return y
}

// Upsample2x is nearest-neighbour 2× upsampling of x [N,C,H,W].
func Upsample2x(x *Tensor) *Tensor {
	e := x.e
	if len(x.shape) != 4 {
		Errorf("Upsample2x", "input %v is not NCHW", x.shape)
	}
	nc, h, w := x.shape[0]*x.shape[1], x.shape[2], x.shape[3]
	y := e.NewOf(x.DType(), x.shape[0], x.shape[1], 2*h, 2*w)
	e.B.Upsample2x(y.data, x.data, nc, h, w)
	if e.track(y, x) {
		e.push(y, func(gy Storage) { e.B.Upsample2xBackward(e.gradOf(x), gy, nc, h, w) })
	}
	return y
}

// ResizeBilinear resizes x [N,C,H,W] to [N,C,oh,ow] (PyTorch bilinear,
// align_corners false). It records no gradient.
func ResizeBilinear(x *Tensor, oh, ow int) *Tensor {
	e := x.e
	if len(x.shape) != 4 || oh <= 0 || ow <= 0 {
		Errorf("ResizeBilinear", "input %v to %dx%d", x.shape, oh, ow)
	}
	y := e.NewOf(x.DType(), x.shape[0], x.shape[1], oh, ow)
	e.B.ResizeBilinear(y.data, x.data, x.shape[0]*x.shape[1], x.shape[2], x.shape[3], oh, ow)
	return y
}

// broadcastOf finds how b broadcasts against a (PyTorch rules restricted to
// one contiguous block of b's non-1 dims matching a's).
func broadcastOf(op string, a, b Shape) Broadcast {
	if len(b) > len(a) {
		Errorf(op, "cannot broadcast %v to %v", b, a)
	}
	pad := make(Shape, len(a))
	for i := range pad {
		pad[i] = 1
	}
	copy(pad[len(a)-len(b):], b)
	first, last := -1, -1
	for i, d := range pad {
		if d != 1 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return Broadcast{Inner: a.Numel(), BLen: 1}
	}
	for i := first; i <= last; i++ {
		if pad[i] != a[i] {
			Errorf(op, "cannot broadcast %v to %v", b, a)
		}
	}
	inner := Shape(a[last+1:]).Numel()
	return Broadcast{Inner: inner, BLen: Shape(pad[first : last+1]).Numel()}
}

func binary(op BinaryOp, name string, a, b *Tensor) *Tensor {
	e := a.e
	if a.DType() != b.DType() {
		Errorf(name, "dtypes %v and %v", a.DType(), b.DType())
	}
	p := broadcastOf(name, a.shape, b.shape)
	y := e.NewOf(a.DType(), a.shape...)
	e.B.Binary(op, y.data, a.data, b.data, p)
	if e.track(y, a, b) {
		if op == OpAdd && p.Inner == 1 && p.BLen == a.Len() {
			// Same shape: both gradients are gy itself.
			e.push(y, func(gy Storage) {
				if b.needGrad {
					e.shareGrad(b, y, gy)
				}
				if a.needGrad {
					e.passGrad(a, y, gy)
				}
			})
			return y
		}
		if op == OpMul && p.Inner == 1 && p.BLen == a.Len() {
			// Same shape: a fresh gradient buffer is written by a forward
			// multiply (da = gy·b, db = gy·a), not zero-filled and added into.
			e.push(y, func(gy Storage) {
				if a.needGrad {
					if da, beta := e.gradOut(a); beta == 0 {
						e.B.Binary(OpMul, da, gy, b.data, p)
					} else {
						e.B.BinaryBackward(op, da, nil, gy, a.data, b.data, p)
					}
				}
				if b.needGrad {
					if db, beta := e.gradOut(b); beta == 0 {
						e.B.Binary(OpMul, db, gy, a.data, p)
					} else {
						e.B.BinaryBackward(op, nil, db, gy, a.data, b.data, p)
					}
				}
			})
			return y
		}
		e.push(y, func(gy Storage) {
			var da, db Storage
			if a.needGrad {
				da = e.gradOf(a)
			}
			if b.needGrad {
				db = e.gradOf(b)
			}
			e.B.BinaryBackward(op, da, db, gy, a.data, b.data, p)
		})
	}
	return y
}

// Add is a + b, with b broadcast over a's leading and trailing dims.
func Add(a, b *Tensor) *Tensor { return binary(OpAdd, "Add", a, b) }

// Mul is a · b, with b broadcast like Add.
func Mul(a, b *Tensor) *Tensor { return binary(OpMul, "Mul", a, b) }

// Scale is alpha·x.
func Scale(x *Tensor, alpha float32) *Tensor {
	e := x.e
	y := e.NewOf(x.DType(), x.shape...)
	e.B.Scale(y.data, x.data, alpha)
	if e.track(y, x) {
		e.push(y, func(gy Storage) { e.accumGrad(x, gy, alpha) })
	}
	return y
}

// Cast converts x to dtype dt (a copy even when dt is x's dtype).
func Cast(x *Tensor, dt DType) *Tensor {
	e := x.e
	y := e.NewOf(dt, x.shape...)
	e.B.Copy(y.data, x.data)
	if e.track(y, x) {
		e.push(y, func(gy Storage) {
			if dt == x.DType() {
				e.passGrad(x, y, gy)
				return
			}
			e.accumGrad(x, gy, 1)
		})
	}
	return y
}

// Embedding looks up rows of table [V, D] for ids; the result is [len(ids), D].
func Embedding(table *Tensor, ids []int32) *Tensor {
	e := table.e
	if len(table.shape) != 2 {
		Errorf("Embedding", "table %v is not [V,D]", table.shape)
	}
	v, d := table.shape[0], table.shape[1]
	for i, id := range ids {
		if id < 0 || int(id) >= v {
			Errorf("Embedding", "id %d at %d outside table %v", id, i, table.shape)
		}
	}
	ids = append([]int32(nil), ids...)
	y := e.NewOf(table.DType(), len(ids), d)
	e.B.Embedding(y.data, table.data, ids, d)
	if e.track(y, table) {
		e.push(y, func(gy Storage) { e.B.EmbeddingBackward(e.gradOf(table), gy, ids, d) })
	}
	return y
}

// MSELoss is the weighted mean squared error: with pred and target of shape
// [B, ...], it returns the F32 scalar Σ_b w_b·mean((pred_b − target_b)²) / B.
// A nil weights means all ones (F.mse_loss with reduction "mean").
func MSELoss(pred, target *Tensor, weights []float32) *Tensor {
	e := pred.e
	if !pred.shape.Equal(target.shape) || len(pred.shape) < 1 {
		Errorf("MSELoss", "pred %v and target %v", pred.shape, target.shape)
	}
	rows := pred.shape[0]
	cols := pred.Len() / rows
	if weights != nil && len(weights) != rows {
		Errorf("MSELoss", "%d weights for batch %d", len(weights), rows)
	}
	// Per-row losses, then their weighted mean as a 1×rows·rows×1 product,
	// all on the device: no host round trip (which would synchronise a GPU
	// and could not be captured in a CUDA graph).
	w := make([]float32, rows) // weight_i / rows
	for i := range w {
		w[i] = 1 / float32(rows)
		if weights != nil {
			w[i] = weights[i] / float32(rows)
		}
	}
	per, _ := e.alloc(F32, rows)
	e.B.MSE(per, pred.data, target.data, rows, cols)
	wd, _ := e.alloc(F32, rows)
	e.B.Upload(wd, w)
	loss := e.NewOf(F32, 1)
	e.B.Gemm(loss.data, wd, per, GemmParams{M: 1, N: 1, K: rows, Alpha: 1})
	if e.track(loss, pred, target) {
		e.push(loss, func(gy Storage) {
			// d loss / d per_i = gy · weight_i / rows.
			gs, slot := e.alloc(F32, rows)
			e.B.Binary(OpMul, gs, wd, gy, Broadcast{Inner: 1, BLen: 1})
			var da, db Storage
			if pred.needGrad {
				da = e.gradOf(pred)
			}
			if target.needGrad {
				db = e.gradOf(target)
			}
			e.B.MSEBackward(da, db, gs, pred.data, target.data, rows, cols)
			e.B.Free(gs)
			e.arena[slot] = nil
		})
	}
	return loss
}

// TimestepEmbedding is the sinusoidal embedding of LDM's UNet computed on
// the host in float32: for half = dim/2, freqs[i] = exp(−ln(10000)·i/half),
// emb = [cos(t·freqs), sin(t·freqs)] (cos first). The result is [len(t), dim].
func (e *Engine) TimestepEmbedding(t []float32, dim int) *Tensor {
	half := dim / 2
	out := make([]float32, len(t)*dim)
	for b, ts := range t {
		for i := 0; i < half; i++ {
			f := float32(math.Exp(float64(float32(-math.Log(10000)) * float32(i) / float32(half))))
			arg := ts * f
			out[b*dim+i] = float32(math.Cos(float64(arg)))
			out[b*dim+half+i] = float32(math.Sin(float64(arg)))
		}
	}
	return e.FromFloat32(out, len(t), dim)
}
