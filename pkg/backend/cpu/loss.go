package cpu

import (
	"math"
	"sync"

	"loco/pkg/tensor"
)

// MSE per row: loss[r] = mean_c (a[r,c] − b[r,c])².
func (b *Backend) MSE(loss, a, bb tensor.Storage, rows, cols int) {
	const op = "mse"
	ls, as, bs := f32(op, loss), f32(op, a), f32(op, bb)
	checkDims(op, rows, cols)
	checkShape(op, "a", len(as), rows, cols)
	checkShape(op, "b", len(bs), rows, cols)
	checkLen(op, "loss", len(ls), rows)
	parallelFor(rows, 3*cols, func(lo, hi int) { mseForward(ls, as, bs, cols, lo, hi) })
}

func mseForward[T float](loss, a, b []T, cols, lo, hi int) {
	for r := lo; r < hi; r++ {
		ar, br := a[r*cols:][:cols], b[r*cols:][:cols]
		var acc float64
		for i, v := range ar {
			d := float64(v) - float64(br[i])
			acc += d * d
		}
		loss[r] = T(acc / float64(cols))
	}
}

// MSEBackward: da += g[r]·2(a−b)/cols, db −= the same.
func (b *Backend) MSEBackward(da, db, g, a, bb tensor.Storage, rows, cols int) {
	const op = "mse_backward"
	das, dbs, gs, as, bs := f32(op, da), f32(op, db), f32(op, g), f32(op, a), f32(op, bb)
	checkDims(op, rows, cols)
	checkShape(op, "a", len(as), rows, cols)
	checkShape(op, "b", len(bs), rows, cols)
	checkLen(op, "g", len(gs), rows)
	checkOpt(op, "da", das, rows*cols)
	checkOpt(op, "db", dbs, rows*cols)
	parallelFor(rows, 4*cols, func(lo, hi int) { mseBackward(das, dbs, gs, as, bs, cols, lo, hi) })
}

func mseBackward[T float](da, db, g, a, b []T, cols, lo, hi int) {
	for r := lo; r < hi; r++ {
		s := g[r] * 2 / T(cols)
		ar, br := a[r*cols:][:cols], b[r*cols:][:cols]
		for i, v := range ar {
			d := s * (v - br[i])
			if da != nil {
				da[r*cols+i] += d
			}
			if db != nil {
				db[r*cols+i] -= d
			}
		}
	}
}

// SumSquares returns Σ x² accumulated in float64.
func (b *Backend) SumSquares(x tensor.Storage) float64 {
	xs := f32("sum_squares", x)
	var mu sync.Mutex
	var total float64
	parallelFor(len(xs), 1, func(lo, hi int) {
		acc := sumSquares(xs[lo:hi])
		mu.Lock()
		total += acc
		mu.Unlock()
	})
	return total
}

// sumSquares is Σ x² in float64 over four independent accumulators (the
// single-accumulator loop waits on each add's latency).
func sumSquares(x []float32) float64 {
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		f0, f1, f2, f3 := float64(v[0]), float64(v[1]), float64(v[2]), float64(v[3])
		a0 += f0 * f0
		a1 += f1 * f1
		a2 += f2 * f2
		a3 += f3 * f3
	}
	for ; i < len(x); i++ {
		a0 += float64(x[i]) * float64(x[i])
	}
	return (a0 + a1) + (a2 + a3)
}

// AdamW takes one torch.optim.AdamW step in place. The per-element
// arithmetic is done in float64 and rounded once when stored.
func (b *Backend) AdamW(param, grad, m, v tensor.Storage, p tensor.AdamWParams) {
	const op = "adamw"
	ps, gs, ms, vs := f32(op, param), f32(op, grad), f32(op, m), f32(op, v)
	checkLen(op, "grad", len(gs), len(ps))
	checkLen(op, "m", len(ms), len(ps))
	checkLen(op, "v", len(vs), len(ps))
	if p.Step < 1 {
		tensor.Errorf(op, "step %d, want ≥ 1 (1-based)", p.Step)
	}
	if !(p.GradScale > 0) {
		tensor.Errorf(op, "GradScale %g would scale every gradient to zero or NaN (1 means no scaling)", p.GradScale)
	}
	parallelFor(len(ps), 8, func(lo, hi int) { adamw(ps[lo:hi], gs[lo:hi], ms[lo:hi], vs[lo:hi], p) })
}

func adamw[T float](param, grad, m, v []T, p tensor.AdamWParams) {
	lr, b1, b2 := float64(p.LR), float64(p.Beta1), float64(p.Beta2)
	eps, wd, gscale := float64(p.Eps), float64(p.WeightDecay), float64(p.GradScale)
	decay := 1 - lr*wd
	bc1 := 1 - math.Pow(b1, float64(p.Step))
	bc2sqrt := math.Sqrt(1 - math.Pow(b2, float64(p.Step)))
	stepSize := lr / bc1
	for i := range param {
		g := float64(grad[i]) * gscale
		mi := b1*float64(m[i]) + (1-b1)*g
		vi := b2*float64(v[i]) + (1-b2)*g*g
		pi := float64(param[i]) * decay
		pi -= stepSize * mi / (math.Sqrt(vi)/bc2sqrt + eps)
		m[i], v[i], param[i] = T(mi), T(vi), T(pi)
	}
}
