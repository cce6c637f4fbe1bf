package cpu

import (
	"sync"

	"loco/pkg/tensor"
)

// Binary: y[i] = a[i] op b[(i/Inner) % BLen]; y may alias a.
func (b *Backend) Binary(op tensor.BinaryOp, y, a, bb tensor.Storage, p tensor.Broadcast) {
	name := op.String()
	ys, as, bs := f32(name, y), f32(name, a), f32(name, bb)
	binaryCheck(name, op, p, as, bs)
	checkLen(name, "y", len(ys), len(as))
	n := len(as)
	if p.Inner == 1 {
		// b runs along rows of BLen elements.
		rows := (n + p.BLen - 1) / p.BLen
		parallelFor(rows, p.BLen, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				i0, i1 := r*p.BLen, min((r+1)*p.BLen, n)
				binaryVec(op, ys[i0:i1], as[i0:i1], bs)
			}
		})
		return
	}
	// Each block of Inner elements sees one value of b.
	blocks := (n + p.Inner - 1) / p.Inner
	parallelFor(blocks, p.Inner, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			i0, i1 := j*p.Inner, min((j+1)*p.Inner, n)
			binaryScalar(op, ys[i0:i1], as[i0:i1], bs[j%p.BLen])
		}
	})
}

func binaryCheck(name string, op tensor.BinaryOp, p tensor.Broadcast, a, b []float32) {
	if op != tensor.OpAdd && op != tensor.OpMul {
		tensor.Errorf("binary", "unknown op %v", op)
	}
	checkDims(name, p.Inner, p.BLen)
	checkLen(name, "b", len(b), p.BLen)
	_ = a
}

func binaryVec[T float](op tensor.BinaryOp, y, a, b []T) {
	b = b[:len(a)]
	y = y[:len(a)]
	if y32, ok := asF32(y); ok && len(y) >= 16 {
		a32, _ := asF32(a)
		b32, _ := asF32(b)
		if addMul32(y32, a32, b32, op == tensor.OpMul) {
			return
		}
	}
	if op == tensor.OpAdd {
		for i, v := range a {
			y[i] = v + b[i]
		}
		return
	}
	for i, v := range a {
		y[i] = v * b[i]
	}
}

func binaryScalar[T float](op tensor.BinaryOp, y, a []T, s T) {
	y = y[:len(a)]
	if op == tensor.OpAdd {
		for i, v := range a {
			y[i] = v + s
		}
		return
	}
	for i, v := range a {
		y[i] = v * s
	}
}

// BinaryBackward adds the gradients of Binary into da and db.
func (b *Backend) BinaryBackward(op tensor.BinaryOp, da, db, dy, a, bb tensor.Storage, p tensor.Broadcast) {
	name := op.String() + "_backward"
	das, dbs, dys, as, bs := f32(name, da), f32(name, db), f32(name, dy), f32(name, a), f32(name, bb)
	binaryCheck(name, op, p, as, bs)
	n := len(dys)
	if op == tensor.OpMul {
		checkLen(name, "a", len(as), n)
	}
	checkOpt(name, "da", das, n)
	checkOpt(name, "db", dbs, p.BLen)
	if das != nil {
		if p.Inner == 1 {
			rows := (n + p.BLen - 1) / p.BLen
			parallelFor(rows, p.BLen, func(lo, hi int) {
				for r := lo; r < hi; r++ {
					i0, i1 := r*p.BLen, min((r+1)*p.BLen, n)
					if op == tensor.OpAdd {
						addTo(das[i0:i1], dys[i0:i1])
					} else {
						fma(das[i0:i1], dys[i0:i1], bs)
					}
				}
			})
		} else {
			blocks := (n + p.Inner - 1) / p.Inner
			parallelFor(blocks, p.Inner, func(lo, hi int) {
				for j := lo; j < hi; j++ {
					i0, i1 := j*p.Inner, min((j+1)*p.Inner, n)
					if op == tensor.OpAdd {
						addTo(das[i0:i1], dys[i0:i1])
					} else {
						axpy(das[i0:i1], dys[i0:i1], bs[j%p.BLen])
					}
				}
			})
		}
	}
	if dbs == nil {
		return
	}
	// db[t] += Σ over the elements that read b[t] of dy (add) or dy·a (mul).
	if p.Inner == 1 {
		// Rows of BLen: per-worker partial sums, merged under a lock.
		rows := (n + p.BLen - 1) / p.BLen
		var mu sync.Mutex
		parallelFor(rows, p.BLen, func(lo, hi int) {
			part := make([]float64, p.BLen)
			for r := lo; r < hi; r++ {
				i0, i1 := r*p.BLen, min((r+1)*p.BLen, n)
				d := dys[i0:i1]
				if op == tensor.OpAdd {
					for i, v := range d {
						part[i] += float64(v)
					}
				} else {
					av := as[i0:i1]
					for i, v := range d {
						part[i] += float64(v * av[i])
					}
				}
			}
			mu.Lock()
			for i, v := range part {
				dbs[i] += float32(v)
			}
			mu.Unlock()
		})
		return
	}
	// Blocks of Inner: worker owns entries t of b and visits blocks t, t+BLen, ...
	blocks := (n + p.Inner - 1) / p.Inner
	parallelFor(p.BLen, n/p.BLen+1, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			var acc float64
			for j := t; j < blocks; j += p.BLen {
				i0, i1 := j*p.Inner, min((j+1)*p.Inner, n)
				if op == tensor.OpAdd {
					acc += sum(dys[i0:i1])
				} else {
					acc += dot(dys[i0:i1], as[i0:i1])
				}
			}
			dbs[t] += float32(acc)
		}
	})
}

// fma: y[i] += a[i]*b[i].
func fma[T float](y, a, b []T) {
	a, b = a[:len(y)], b[:len(y)]
	for i := range y {
		y[i] += a[i] * b[i]
	}
}

// axpy: y[i] += x[i]*alpha.
func axpy[T float](y, x []T, alpha T) {
	if d, ok := asF32(y); ok && len(d) >= 16 {
		xs, _ := asF32(x)
		axpy32(d, xs, float32(alpha))
		return
	}
	x = x[:len(y)]
	for i := range y {
		y[i] += x[i] * alpha
	}
}

// dot returns Σ a[i]·b[i] accumulated in float64.
func dot[T float](a, b []T) float64 {
	b = b[:len(a)]
	var acc float64
	for i, v := range a {
		acc += float64(v * b[i])
	}
	return acc
}

// Scale: y = alpha*x (y may alias x).
func (b *Backend) Scale(y, x tensor.Storage, alpha float32) {
	const op = "scale"
	ys, xs := f32(op, y), f32(op, x)
	checkLen(op, "y", len(ys), len(xs))
	if alpha == 1 { // the tape's gradient hand-over: a copy (memmove), not a loop
		parallelFor(len(xs), 1, func(lo, hi int) { copy(ys[lo:hi], xs[lo:hi]) })
		return
	}
	parallelFor(len(xs), 1, func(lo, hi int) { scale32(ys[lo:hi], xs[lo:hi], alpha) })
}

// Axpy: y += alpha*x.
func (b *Backend) Axpy(y, x tensor.Storage, alpha float32) {
	const op = "axpy"
	ys, xs := f32(op, y), f32(op, x)
	checkLen(op, "y", len(ys), len(xs))
	parallelFor(len(xs), 1, func(lo, hi int) { axpy(ys[lo:hi], xs[lo:hi], alpha) })
}
