package cuda

import (
	"math"
	"sort"
	"unsafe"

	"loco/pkg/tensor"
)

func (b *Backend) Upsample2x(y, x tensor.Storage, nc, h, w int) {
	const op = "cuda.Upsample2x"
	yb, xb := buf(op, y), buf(op, x)
	same(op, nc*h*w, yb, xb)
	same(op, 4*nc*h*w, yb)
	b.ew(op, "misc", "upsample2x_"+sfx(xb.dt), 4*nc*h*w, yb, xb, nc, h, w)
}

func (b *Backend) Upsample2xBackward(dx, dy tensor.Storage, nc, h, w int) {
	const op = "cuda.Upsample2xBackward"
	dxb, dyb := buf(op, dx), buf(op, dy)
	if dxb == nil {
		return
	}
	same(op, nc*h*w, dxb, dyb)
	same(op, 4*nc*h*w, dyb)
	b.ew(op, "misc", "upsample2x_bwd_"+sfx(dyb.dt), nc*h*w, dxb, dyb, nc, h, w)
}

func (b *Backend) ResizeBilinear(y, x tensor.Storage, nc, h, w, oh, ow int) {
	const op = "cuda.ResizeBilinear"
	yb, xb := buf(op, y), buf(op, x)
	same(op, nc*h*w, xb)
	same(op, nc*oh*ow, yb)
	same(op, 0, xb, yb)
	if h <= 0 || w <= 0 {
		tensor.Errorf(op, "empty input %dx%d", h, w)
	}
	b.ew(op, "misc", "resize_bilinear_"+sfx(xb.dt), nc*oh*ow, yb, xb, nc, h, w, oh, ow)
}

// uploadInt32 copies host ints into a scratch device block (release it
// with unscratch after the kernels that read it are queued).
func (b *Backend) uploadInt32(op string, v []int32) uintptr {
	p := b.scratch(op, 4*len(v))
	if len(v) > 0 {
		b.hostToDevice(op, p, unsafe.Pointer(&v[0]), 4*len(v))
	}
	return p
}

func checkIDs(op string, ids []int32, rows int) {
	for i, id := range ids {
		if id < 0 || int(id) >= rows {
			tensor.Errorf(op, "id %d at position %d outside the table's %d rows", id, i, rows)
		}
	}
}

func (b *Backend) Embedding(y, table tensor.Storage, ids []int32, dim int) {
	const op = "cuda.Embedding"
	yb, tb := buf(op, y), buf(op, table)
	same(op, len(ids)*dim, yb)
	same(op, 0, yb, tb)
	if dim <= 0 || tb.n%dim != 0 {
		tensor.Errorf(op, "table of %d elements is not rows of %d", tb.n, dim)
	}
	checkIDs(op, ids, tb.n/dim)
	if len(ids) == 0 {
		return
	}
	p := b.uploadInt32(op, ids)
	b.ew(op, "misc", "embedding_"+sfx(tb.dt), len(ids)*dim, yb, tb, devPtr(p), len(ids), dim)
	b.unscratch(p)
}

// embeddingGroups groups positions by id: distinct ids, start offsets
// (len(uid)+1) and the positions of each id in order.
func embeddingGroups(ids []int32) (uid, start, pos []int32) {
	order := make([]int32, len(ids))
	for i := range order {
		order[i] = int32(i)
	}
	sort.SliceStable(order, func(a, c int) bool { return ids[order[a]] < ids[order[c]] })
	for k, p := range order {
		if k == 0 || ids[p] != ids[order[k-1]] {
			uid = append(uid, ids[p])
			start = append(start, int32(k))
		}
		pos = append(pos, p)
	}
	start = append(start, int32(len(ids)))
	return uid, start, pos
}

func (b *Backend) EmbeddingBackward(dtable, dy tensor.Storage, ids []int32, dim int) {
	const op = "cuda.EmbeddingBackward"
	tb, dyb := buf(op, dtable), buf(op, dy)
	if tb == nil || len(ids) == 0 {
		return
	}
	same(op, len(ids)*dim, dyb)
	same(op, 0, tb, dyb)
	if dim <= 0 || tb.n%dim != 0 {
		tensor.Errorf(op, "table of %d elements is not rows of %d", tb.n, dim)
	}
	checkIDs(op, ids, tb.n/dim)
	uid, start, pos := embeddingGroups(ids)
	pu, ps, pp := b.uploadInt32(op, uid), b.uploadInt32(op, start), b.uploadInt32(op, pos)
	cfg := launchCfg{grid: [3]int{len(uid), 1, 1}, block: [3]int{min(256, (dim+31)/32*32), 1, 1}}
	b.launch(op, "misc", "embedding_bwd_"+sfx(tb.dt), cfg, tb, dyb, devPtr(pu), devPtr(ps), devPtr(pp), dim)
	b.unscratch(pu)
	b.unscratch(ps)
	b.unscratch(pp)
}

func (b *Backend) MSE(loss, a, bs tensor.Storage, rows, cols int) {
	const op = "cuda.MSE"
	lb, ab, bb := buf(op, loss), buf(op, a), buf(op, bs)
	requireF32(op, lb)
	same(op, rows, lb)
	same(op, rows*cols, ab, bb)
	if rows == 0 {
		return
	}
	cfg := launchCfg{grid: [3]int{rows, 1, 1}, block: [3]int{256, 1, 1}}
	b.launch(op, "misc", "mse_"+sfx(ab.dt), cfg, lb, ab, bb, cols)
}

func (b *Backend) MSEBackward(da, db, g, a, bs tensor.Storage, rows, cols int) {
	const op = "cuda.MSEBackward"
	dab, dbb, gb, ab, bb := buf(op, da), buf(op, db), buf(op, g), buf(op, a), buf(op, bs)
	if dab == nil && dbb == nil {
		return
	}
	requireF32(op, gb)
	same(op, rows, gb)
	same(op, rows*cols, dab, dbb, ab, bb)
	b.ew(op, "misc", "mse_bwd_"+sfx(ab.dt), rows*cols, dab, dbb, gb, ab, bb, rows, cols)
}

func (b *Backend) SumSquares(x tensor.Storage) float64 {
	const op = "cuda.SumSquares"
	xb := buf(op, x)
	if xb.n == 0 {
		return 0
	}
	cfg := b.grid1(xb.n)
	cfg.grid[0] = min(cfg.grid[0], 1024)
	parts := cfg.grid[0]
	p := b.scratch(op, 8*parts)
	b.launch(op, "misc", "sumsq_"+sfx(xb.dt), cfg, devPtr(p), xb, xb.n)
	host := make([]float64, parts)
	b.deviceToHost(op, unsafe.Pointer(&host[0]), p, 8*parts)
	b.unscratch(p)
	var s float64
	for _, v := range host {
		s += v
	}
	return s
}

func (b *Backend) AdamW(param, grad, m, v tensor.Storage, p tensor.AdamWParams) {
	const op = "cuda.AdamW"
	pb, gb, mb, vb := buf(op, param), buf(op, grad), buf(op, m), buf(op, v)
	requireF32(op, pb, gb, mb, vb)
	same(op, pb.n, pb, gb, mb, vb)
	if p.Step < 1 {
		tensor.Errorf(op, "step %d (1-based)", p.Step)
	}
	if !(p.GradScale > 0) {
		tensor.Errorf(op, "GradScale %g would scale every gradient to zero or NaN (1 means no scaling)", p.GradScale)
	}
	bc1 := 1 - math.Pow(float64(p.Beta1), float64(p.Step))
	bc2 := 1 - math.Pow(float64(p.Beta2), float64(p.Step))
	stepSize := float32(float64(p.LR) / bc1)
	sqrtBC2 := float32(math.Sqrt(bc2))
	b.ew(op, "misc", "adamw_f32", pb.n, pb, gb, mb, vb, pb.n, p.LR, p.Beta1, p.Beta2, p.Eps, p.WeightDecay,
		stepSize, sqrtBC2, p.GradScale)
}
