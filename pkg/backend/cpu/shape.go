package cpu

import (
	"loco/pkg/tensor"
)

// Permute: y = x.permute(perm) made contiguous (y += with accumulate).
func (b *Backend) Permute(y, x tensor.Storage, shape, perm []int, accumulate bool) {
	const op = "permute"
	ys, xs := f32(op, y), f32(op, x)
	if len(shape) != len(perm) || len(shape) > 6 || len(shape) == 0 {
		tensor.Errorf(op, "shape %v and perm %v must have the same rank, 1 to 6", shape, perm)
	}
	n := 1
	seen := 0
	for i, d := range shape {
		if d < 0 {
			tensor.Errorf(op, "negative dimension in shape %v", shape)
		}
		n *= d
		if perm[i] < 0 || perm[i] >= len(shape) || seen&(1<<perm[i]) != 0 {
			tensor.Errorf(op, "perm %v is not a permutation of 0..%d", perm, len(shape)-1)
		}
		seen |= 1 << perm[i]
	}
	checkShape(op, "x", len(xs), shape...)
	checkLen(op, "y", len(ys), n)
	if n == 0 {
		return
	}
	permute(ys, xs, shape, perm, accumulate)
}

// permute is the reference loop: the output is walked in order, rows of
// its last dimension at a time, reading x with the permuted strides.
func permute[T float](y, x []T, shape, perm []int, accumulate bool) {
	// Pad to rank 6 with leading unit dimensions.
	var od, is [6]int
	r := len(shape)
	var xstride [6]int
	st := 1
	for i := r - 1; i >= 0; i-- {
		xstride[i] = st
		st *= shape[i]
	}
	for i := 0; i < 6; i++ {
		od[i], is[i] = 1, 0
		if j := i - (6 - r); j >= 0 {
			od[i], is[i] = shape[perm[j]], xstride[perm[j]]
		}
	}
	if is[5] != 1 && od[5] > 1 {
		// The output's last dim walks x with a stride: a transpose. Do it
		// in tiles against the output dim that walks x contiguously.
		for j := 4; j >= 0; j-- {
			if is[j] == 1 && od[j] > 1 {
				permuteTiled(y, x, od, is, j, accumulate)
				return
			}
		}
	}
	inner := od[5]
	rows := len(y) / inner
	parallelFor(rows, inner, func(lo, hi int) {
		for row := lo; row < hi; row++ {
			// Decompose row into the indices of output dims 0..4.
			off, rem := 0, row
			for d := 4; d >= 0; d-- {
				off += (rem % od[d]) * is[d]
				rem /= od[d]
			}
			yr := y[row*inner : (row+1)*inner]
			s := is[5]
			if s == 1 {
				xr := x[off : off+inner]
				if accumulate {
					addTo(yr, xr)
				} else {
					copy(yr, xr)
				}
				continue
			}
			if accumulate {
				for i := range yr {
					yr[i] += x[off+i*s]
				}
			} else {
				for i := range yr {
					yr[i] = x[off+i*s]
				}
			}
		}
	})
}

// permuteTiled is permute for output dims od read from x with strides is,
// where output dim j reads x contiguously (is[j] == 1) and the last output
// dim does not: for every index of the other four dims, a 2-D transpose
// of od[j] × od[5], done in square tiles so that both sides stay in cache.
func permuteTiled[T float](y, x []T, od, is [6]int, j int, accumulate bool) {
	const tile = 32
	var ostride [6]int
	st := 1
	for d := 5; d >= 0; d-- {
		ostride[d] = st
		st *= od[d]
	}
	na, nb := od[j], od[5]
	outer := len(y) / (na * nb)
	sa, sb := ostride[j], is[5] // y stride of a; x stride of b
	parallelFor(outer, na*nb, func(lo, hi int) {
		for o := lo; o < hi; o++ {
			// Offsets of the four other dims.
			xoff, yoff, rem := 0, 0, o
			for d := 4; d >= 0; d-- {
				if d == j {
					continue
				}
				i := rem % od[d]
				rem /= od[d]
				xoff += i * is[d]
				yoff += i * ostride[d]
			}
			for a0 := 0; a0 < na; a0 += tile {
				a1 := min(a0+tile, na)
				for b0 := 0; b0 < nb; b0 += tile {
					b1 := min(b0+tile, nb)
					// Read rows of x (contiguous in a), write columns of
					// the tile of y: x's rows are often a power of two
					// apart, and walking x down a column would keep
					// hitting the same cache set.
					for bi := b0; bi < b1; bi++ {
						xr := x[xoff+bi*sb+a0 : xoff+bi*sb+a1]
						yo := yoff + a0*sa + bi
						if accumulate {
							for i, v := range xr {
								y[yo+i*sa] += v
							}
						} else {
							for i, v := range xr {
								y[yo+i*sa] = v
							}
						}
					}
				}
			}
		}
	})
}

// Upsample2x: nearest neighbour, x[NC,H,W] -> y[NC,2H,2W].
func (b *Backend) Upsample2x(y, x tensor.Storage, nc, h, w int) {
	const op = "upsample2x"
	ys, xs := f32(op, y), f32(op, x)
	checkDims(op, nc, h, w)
	checkShape(op, "x", len(xs), nc, h, w)
	checkShape(op, "y", len(ys), nc, 2*h, 2*w)
	parallelFor(nc*h, 4*w, func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = c*h + i: input row i of plane c
			xr := xs[r*w : (r+1)*w]
			y0 := ys[2*r*2*w : (2*r+1)*2*w]
			for j, v := range xr {
				y0[2*j], y0[2*j+1] = v, v
			}
			copy(ys[(2*r+1)*2*w:(2*r+2)*2*w], y0)
		}
	})
}

// Upsample2xBackward: dx[NC,H,W] += the sum of the four copies in dy.
func (b *Backend) Upsample2xBackward(dx, dy tensor.Storage, nc, h, w int) {
	const op = "upsample2x_backward"
	dxs, dys := f32(op, dx), f32(op, dy)
	checkDims(op, nc, h, w)
	checkShape(op, "dx", len(dxs), nc, h, w)
	checkShape(op, "dy", len(dys), nc, 2*h, 2*w)
	parallelFor(nc*h, 4*w, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dxr := dxs[r*w : (r+1)*w]
			d0 := dys[2*r*2*w : (2*r+1)*2*w]
			d1 := dys[(2*r+1)*2*w : (2*r+2)*2*w]
			for j := range dxr {
				dxr[j] += d0[2*j] + d0[2*j+1] + d1[2*j] + d1[2*j+1]
			}
		}
	})
}

// ResizeBilinear: x[NC,H,W] -> y[NC,OH,OW] with PyTorch's
// align_corners=False rule: source = (dst+0.5)·in/out − 0.5, clamped
// below at 0; the right neighbour is clamped to the last pixel.
func (b *Backend) ResizeBilinear(y, x tensor.Storage, nc, h, w, oh, ow int) {
	const op = "resize_bilinear"
	ys, xs := f32(op, y), f32(op, x)
	checkDims(op, nc, h, w, oh, ow)
	checkShape(op, "x", len(xs), nc, h, w)
	checkShape(op, "y", len(ys), nc, oh, ow)
	resizeBilinear(ys, xs, nc, h, w, oh, ow)
}

// bilinearTaps returns, per output index, the two source indices and the
// weight of the second.
func bilinearTaps(in, out int) (i0, i1 []int, lam []float32) {
	i0, i1, lam = make([]int, out), make([]int, out), make([]float32, out)
	scale := float32(in) / float32(out)
	for d := 0; d < out; d++ {
		src := scale*(float32(d)+0.5) - 0.5
		if src < 0 {
			src = 0
		}
		k := int(src)
		i0[d] = k
		i1[d] = k
		if k < in-1 {
			i1[d] = k + 1
		}
		lam[d] = src - float32(k)
	}
	return i0, i1, lam
}

func resizeBilinear[T float](y, x []T, nc, h, w, oh, ow int) {
	r0, r1, rl := bilinearTaps(h, oh)
	c0, c1, cl := bilinearTaps(w, ow)
	parallelFor(nc*oh, 8*ow, func(lo, hi int) {
		for row := lo; row < hi; row++ {
			c, d := row/oh, row%oh
			xp := x[c*h*w : (c+1)*h*w]
			a, bb := xp[r0[d]*w:][:w], xp[r1[d]*w:][:w]
			ly := T(rl[d])
			yr := y[row*ow : (row+1)*ow]
			for j := range yr {
				lx := T(cl[j])
				top := (1-lx)*a[c0[j]] + lx*a[c1[j]]
				bot := (1-lx)*bb[c0[j]] + lx*bb[c1[j]]
				yr[j] = (1-ly)*top + ly*bot
			}
		}
	})
}

// Embedding: y[i, :] = table[ids[i], :].
func (b *Backend) Embedding(y, table tensor.Storage, ids []int32, dim int) {
	const op = "embedding"
	ys, ts := f32(op, y), f32(op, table)
	embeddingCheck(op, ts, ids, dim)
	checkShape(op, "y", len(ys), len(ids), dim)
	for i, id := range ids {
		copy(ys[i*dim:(i+1)*dim], ts[int(id)*dim:])
	}
}

func embeddingCheck(op string, table []float32, ids []int32, dim int) int {
	checkDims(op, dim)
	if len(table)%dim != 0 {
		tensor.Errorf(op, "table of %d elements is not a whole number of rows of %d", len(table), dim)
	}
	rows := len(table) / dim
	for i, id := range ids {
		if id < 0 || int(id) >= rows {
			tensor.Errorf(op, "ids[%d] = %d is outside the table's %d rows", i, id, rows)
		}
	}
	return rows
}

// EmbeddingBackward: dtable[ids[i], :] += dy[i, :].
func (b *Backend) EmbeddingBackward(dtable, dy tensor.Storage, ids []int32, dim int) {
	const op = "embedding_backward"
	dts, dys := f32(op, dtable), f32(op, dy)
	embeddingCheck(op, dts, ids, dim)
	checkShape(op, "dy", len(dys), len(ids), dim)
	for i, id := range ids {
		addTo(dts[int(id)*dim:(int(id)+1)*dim], dys[i*dim:(i+1)*dim])
	}
}
