package cpu

import "loco/pkg/tensor"

// Unary applies op elementwise; y may alias x.
func (b *Backend) Unary(op tensor.UnaryOp, y, x tensor.Storage) {
	name := op.String()
	ys, xs := f32(name, y), f32(name, x)
	checkLen(name, "y", len(ys), len(xs))
	checkUnary(op)
	parallelFor(len(xs), 4, func(lo, hi int) { unaryForward(op, ys[lo:hi], xs[lo:hi]) })
}

// UnaryBackward adds dy·f'(x) into dx.
func (b *Backend) UnaryBackward(op tensor.UnaryOp, dx, dy, x tensor.Storage) {
	name := op.String() + "_backward"
	dxs, dys, xs := f32(name, dx), f32(name, dy), f32(name, x)
	checkLen(name, "dy", len(dys), len(xs))
	checkUnary(op)
	if dxs == nil {
		return
	}
	checkLen(name, "dx", len(dxs), len(xs))
	parallelFor(len(xs), 6, func(lo, hi int) { unaryBackward(op, dxs[lo:hi], dys[lo:hi], xs[lo:hi]) })
}

func checkUnary(op tensor.UnaryOp) {
	switch op {
	case tensor.OpSiLU, tensor.OpGELU, tensor.OpQuickGELU:
		return
	}
	tensor.Errorf("unary", "unknown op %v", op)
}

func unaryForward[T float](op tensor.UnaryOp, y, x []T) {
	y = y[:len(x)]
	var buf [chunk]T
	if op == tensor.OpGELU {
		for off := 0; off < len(x); off += chunk {
			xs := x[off:min(off+chunk, len(x))]
			phi := buf[:len(xs)]
			normCDFRow(phi, xs)
			ys := y[off:][:len(xs)]
			for i, v := range xs {
				ys[i] = v * phi[i]
			}
		}
		return
	}
	a := T(1) // SiLU: x·σ(x); QuickGELU: x·σ(1.702x)
	if op == tensor.OpQuickGELU {
		a = 1.702
	}
	for off := 0; off < len(x); off += chunk {
		xs := x[off:min(off+chunk, len(x))]
		s := buf[:len(xs)]
		sigmoidRow(s, xs, a)
		ys := y[off:][:len(xs)]
		for i, v := range xs {
			ys[i] = v * s[i]
		}
	}
}

func unaryBackward[T float](op tensor.UnaryOp, dx, dy, x []T) {
	dx, dy = dx[:len(x)], dy[:len(x)]
	if op == tensor.OpGELU {
		var cdf, pdf [chunk]T
		for off := 0; off < len(x); off += chunk {
			xs := x[off:min(off+chunk, len(x))]
			c, p := cdf[:len(xs)], pdf[:len(xs)]
			normCDFRow(c, xs)
			gaussRow(p, xs)
			dxs, dys := dx[off:][:len(xs)], dy[off:][:len(xs)]
			for i, v := range xs {
				dxs[i] += dys[i] * (c[i] + v*p[i]) // Φ + x·φ
			}
		}
		return
	}
	// d/dx x·σ(ax) = σ + a·x·σ·(1−σ)
	a := T(1)
	if op == tensor.OpQuickGELU {
		a = 1.702
	}
	var buf [chunk]T
	for off := 0; off < len(x); off += chunk {
		xs := x[off:min(off+chunk, len(x))]
		s := buf[:len(xs)]
		sigmoidRow(s, xs, a)
		dxs, dys := dx[off:][:len(xs)], dy[off:][:len(xs)]
		for i, v := range xs {
			si := s[i]
			dxs[i] += dys[i] * (si + a*v*si*(1-si))
		}
	}
}

// GEGLU: y[r, j] = x[r, j] * gelu(x[r, half+j]).
func (b *Backend) GEGLU(y, x tensor.Storage, rows, half int) {
	const op = "geglu"
	ys, xs := f32(op, y), f32(op, x)
	checkDims(op, rows, half)
	checkShape(op, "x", len(xs), rows, 2*half)
	checkShape(op, "y", len(ys), rows, half)
	parallelFor(rows, 4*half, func(lo, hi int) { gegluForward(ys, xs, half, lo, hi) })
}

func gegluForward[T float](y, x []T, half, lo, hi int) {
	var buf [chunk]T
	for r := lo; r < hi; r++ {
		xr, yr := x[2*r*half:][:2*half], y[r*half:][:half]
		for off := 0; off < half; off += chunk {
			n := min(chunk, half-off)
			a, g := xr[off:off+n], xr[half+off:half+off+n]
			phi := buf[:n]
			normCDFRow(phi, g)
			ys := yr[off : off+n]
			for j := range ys {
				ys[j] = a[j] * g[j] * phi[j]
			}
		}
	}
}

// GEGLUBackward adds the gradient of GEGLU into dx.
func (b *Backend) GEGLUBackward(dx, dy, x tensor.Storage, rows, half int) {
	const op = "geglu_backward"
	dxs, dys, xs := f32(op, dx), f32(op, dy), f32(op, x)
	checkDims(op, rows, half)
	checkShape(op, "x", len(xs), rows, 2*half)
	checkShape(op, "dy", len(dys), rows, half)
	if dxs == nil {
		return
	}
	checkShape(op, "dx", len(dxs), rows, 2*half)
	parallelFor(rows, 6*half, func(lo, hi int) { gegluBackward(dxs, dys, xs, half, lo, hi) })
}

func gegluBackward[T float](dx, dy, x []T, half, lo, hi int) {
	var cdf, pdf [chunk]T
	for r := lo; r < hi; r++ {
		xr, dxr, dyr := x[2*r*half:][:2*half], dx[2*r*half:][:2*half], dy[r*half:][:half]
		for off := 0; off < half; off += chunk {
			n := min(chunk, half-off)
			a, g := xr[off:off+n], xr[half+off:half+off+n]
			c, p := cdf[:n], pdf[:n]
			normCDFRow(c, g)
			gaussRow(p, g)
			da, dg, d := dxr[off:off+n], dxr[half+off:half+off+n], dyr[off:off+n]
			for j, gj := range g {
				da[j] += d[j] * gj * c[j]               // gelu(g)
				dg[j] += d[j] * a[j] * (c[j] + gj*p[j]) // a·gelu'(g)
			}
		}
	}
}

// Softmax over the last dim of x[rows, cols].
func (b *Backend) Softmax(y, x tensor.Storage, rows, cols int) {
	const op = "softmax"
	ys, xs := f32(op, y), f32(op, x)
	checkDims(op, rows, cols)
	checkShape(op, "x", len(xs), rows, cols)
	checkShape(op, "y", len(ys), rows, cols)
	parallelFor(rows, 8*cols, func(lo, hi int) { softmaxForward(ys, xs, cols, lo, hi) })
}

func softmaxForward[T float](y, x []T, cols, lo, hi int) {
	for r := lo; r < hi; r++ {
		xr, yr := x[r*cols:][:cols], y[r*cols:][:cols]
		m := xr[0]
		for _, v := range xr {
			m = max(m, v)
		}
		copy(yr, xr)
		inv := 1 / expShiftRow(yr, m)
		for i := range yr {
			yr[i] *= inv
		}
	}
}

// SoftmaxBackward adds y·(dy − Σ dy·y) into dx.
func (b *Backend) SoftmaxBackward(dx, dy, y tensor.Storage, rows, cols int) {
	const op = "softmax_backward"
	dxs, dys, ys := f32(op, dx), f32(op, dy), f32(op, y)
	checkDims(op, rows, cols)
	checkShape(op, "y", len(ys), rows, cols)
	checkShape(op, "dy", len(dys), rows, cols)
	if dxs == nil {
		return
	}
	checkShape(op, "dx", len(dxs), rows, cols)
	parallelFor(rows, 4*cols, func(lo, hi int) { softmaxBackward(dxs, dys, ys, cols, lo, hi) })
}

func softmaxBackward[T float](dx, dy, y []T, cols, lo, hi int) {
	for r := lo; r < hi; r++ {
		yr, dyr, dxr := y[r*cols:][:cols], dy[r*cols:][:cols], dx[r*cols:][:cols]
		var dot T
		for i, v := range yr {
			dot += v * dyr[i]
		}
		for i, v := range yr {
			dxr[i] += v * (dyr[i] - dot)
		}
	}
}
