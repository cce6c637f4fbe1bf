package cpu

import (
	"math"
	"sync"

	"loco/pkg/tensor"
)

// GroupNorm normalises x[N, C, HW] over groups of C/G channels.
func (b *Backend) GroupNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	const op = "group_norm"
	ys, ms, rs, xs, gs, bs := f32(op, y), f32(op, mean), f32(op, rstd), f32(op, x), f32(op, gamma), f32(op, beta)
	groupNormCheck(op, p, xs, gs, bs)
	checkShape(op, "y", len(ys), p.N, p.C, p.HW)
	checkLen(op, "mean", len(ms), p.N*p.Groups)
	checkLen(op, "rstd", len(rs), p.N*p.Groups)
	cpg := p.C / p.Groups
	parallelFor(p.N*p.Groups, 3*cpg*p.HW, func(lo, hi int) {
		groupNormForward(ys, ms, rs, xs, gs, bs, p.HW, cpg, p.Groups, float64(p.Eps), p.SiLU, lo, hi)
	})
}

func groupNormCheck(op string, p tensor.NormParams, x, gamma, beta []float32) {
	checkDims(op, p.N, p.C, p.HW, p.Groups)
	if p.C%p.Groups != 0 {
		tensor.Errorf(op, "%d channels do not split into %d groups", p.C, p.Groups)
	}
	checkShape(op, "x", len(x), p.N, p.C, p.HW)
	checkOpt(op, "gamma", gamma, p.C)
	checkOpt(op, "beta", beta, p.C)
}

// groupNormForward normalises groups [lo, hi) of the N*G (image, group)
// pairs; group ng covers channels g*cpg..(g+1)*cpg of image n, a
// contiguous run of cpg*hw elements.
func groupNormForward[T float](y, mean, rstd, x, gamma, beta []T, hw, cpg, groups int, eps float64, silu bool, lo, hi int) {
	for ng := lo; ng < hi; ng++ {
		seg := x[ng*cpg*hw:][:cpg*hw]
		mu, rs := meanRstd(seg, eps)
		mean[ng], rstd[ng] = T(mu), T(rs)
		c0 := (ng % groups) * cpg
		for ci := 0; ci < cpg; ci++ {
			c := c0 + ci
			// (x − mean)·scale + shift, not x·scale + (shift − mean·scale):
			// the latter cancels badly when the variance is tiny.
			scale, shift, m := T(rs), T(0), T(mu)
			if gamma != nil {
				scale *= gamma[c]
			}
			if beta != nil {
				shift = beta[c]
			}
			xr := seg[ci*hw:][:hw]
			yr := y[ng*cpg*hw+ci*hw:][:hw]
			for i, v := range xr {
				yr[i] = (v-m)*scale + shift
			}
			if silu {
				siluInPlace(yr)
			}
		}
	}
}

// meanRstd returns the mean and 1/sqrt(var+eps) of s (biased variance),
// with two passes in float64. Four partial sums break the add-latency
// chain (the loop is otherwise bound by it, not by memory).
func meanRstd[T float](s []T, eps float64) (float64, float64) {
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(s); i += 4 {
		q := s[i : i+4 : i+4]
		a0 += float64(q[0])
		a1 += float64(q[1])
		a2 += float64(q[2])
		a3 += float64(q[3])
	}
	for ; i < len(s); i++ {
		a0 += float64(s[i])
	}
	mu := (a0 + a1 + a2 + a3) / float64(len(s))
	a0, a1, a2, a3 = 0, 0, 0, 0
	i = 0
	for ; i+4 <= len(s); i += 4 {
		q := s[i : i+4 : i+4]
		d0, d1, d2, d3 := float64(q[0])-mu, float64(q[1])-mu, float64(q[2])-mu, float64(q[3])-mu
		a0 += d0 * d0
		a1 += d1 * d1
		a2 += d2 * d2
		a3 += d3 * d3
	}
	for ; i < len(s); i++ {
		d := float64(s[i]) - mu
		a0 += d * d
	}
	return mu, 1 / math.Sqrt((a0+a1+a2+a3)/float64(len(s))+eps)
}

// GroupNormBackward adds the gradients of GroupNorm (optionally fused
// with SiLU) into dx, dgamma and dbeta.
func (b *Backend) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta tensor.Storage, p tensor.NormParams) {
	const op = "group_norm_backward"
	dxs, dgs, dbs, dys := f32(op, dx), f32(op, dgamma), f32(op, dbeta), f32(op, dy)
	xs, ms, rs, gs, bs := f32(op, x), f32(op, mean), f32(op, rstd), f32(op, gamma), f32(op, beta)
	groupNormCheck(op, p, xs, gs, bs)
	n := p.N * p.C * p.HW
	checkLen(op, "dy", len(dys), n)
	checkOpt(op, "dx", dxs, n)
	checkOpt(op, "dgamma", dgs, p.C)
	checkOpt(op, "dbeta", dbs, p.C)
	checkLen(op, "mean", len(ms), p.N*p.Groups)
	checkLen(op, "rstd", len(rs), p.N*p.Groups)
	cpg := p.C / p.Groups
	// Parallel over groups: dgamma and dbeta of a group's channels are
	// written by one worker only.
	parallelFor(p.Groups, 6*p.N*cpg*p.HW, func(lo, hi int) {
		groupNormBackward(dxs, dgs, dbs, dys, xs, ms, rs, gs, bs, p.N, p.HW, cpg, p.Groups, p.SiLU, lo, hi)
	})
}

func groupNormBackward[T float](dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta []T, n, hw, cpg, groups int, silu bool, g0, g1 int) {
	m := cpg * hw
	dz := make([]T, m) // gradient at the normalised-and-scaled output
	for g := g0; g < g1; g++ {
		for img := 0; img < n; img++ {
			ng := img*groups + g
			off := ng * m
			xs, dys := x[off:][:m], dy[off:][:m]
			mu, rs := mean[ng], rstd[ng]
			// dz = dy (times silu'(z) when fused); sums for dx.
			var sumDxhat, sumDxhatXhat float64
			for ci := 0; ci < cpg; ci++ {
				c := g*cpg + ci
				ga := T(1)
				if gamma != nil {
					ga = gamma[c]
				}
				be := T(0)
				if beta != nil {
					be = beta[c]
				}
				var sDz, sDzXhat float64
				row := dz[ci*hw : (ci+1)*hw]
				if silu {
					// dz = dy·silu'(z) with z = xhat·gamma + beta
					for i := range row {
						row[i] = (xs[ci*hw+i]-mu)*rs*ga + be
					}
					siluGradInPlace(row, dys[ci*hw:(ci+1)*hw])
				} else {
					copy(row, dys[ci*hw:(ci+1)*hw])
				}
				for i, d := range row {
					xhat := (xs[ci*hw+i] - mu) * rs
					sDz += float64(d)
					sDzXhat += float64(d * xhat)
				}
				if dgamma != nil {
					dgamma[c] += T(sDzXhat)
				}
				if dbeta != nil {
					dbeta[c] += T(sDz)
				}
				sumDxhat += float64(ga) * sDz
				sumDxhatXhat += float64(ga) * sDzXhat
			}
			if dx == nil {
				continue
			}
			a := T(sumDxhat / float64(m))
			bb := T(sumDxhatXhat / float64(m))
			dxs := dx[off:][:m]
			for ci := 0; ci < cpg; ci++ {
				ga := T(1)
				if gamma != nil {
					ga = gamma[g*cpg+ci]
				}
				for i := ci * hw; i < (ci+1)*hw; i++ {
					xhat := (xs[i] - mu) * rs
					dxs[i] += rs * (dz[i]*ga - a - xhat*bb)
				}
			}
		}
	}
}

// LayerNorm normalises each row of x[Rows, Cols].
func (b *Backend) LayerNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	const op = "layer_norm"
	ys, ms, rs, xs, gs, bs := f32(op, y), f32(op, mean), f32(op, rstd), f32(op, x), f32(op, gamma), f32(op, beta)
	checkDims(op, p.Rows, p.Cols)
	checkShape(op, "x", len(xs), p.Rows, p.Cols)
	checkShape(op, "y", len(ys), p.Rows, p.Cols)
	checkLen(op, "mean", len(ms), p.Rows)
	checkLen(op, "rstd", len(rs), p.Rows)
	checkOpt(op, "gamma", gs, p.Cols)
	checkOpt(op, "beta", bs, p.Cols)
	parallelFor(p.Rows, 3*p.Cols, func(lo, hi int) {
		layerNormForward(ys, ms, rs, xs, gs, bs, p.Cols, float64(p.Eps), lo, hi)
	})
}

func layerNormForward[T float](y, mean, rstd, x, gamma, beta []T, cols int, eps float64, lo, hi int) {
	for r := lo; r < hi; r++ {
		xr, yr := x[r*cols:][:cols], y[r*cols:][:cols]
		mu, rs := meanRstd(xr, eps)
		mean[r], rstd[r] = T(mu), T(rs)
		m, s := T(mu), T(rs)
		for i, v := range xr {
			z := (v - m) * s
			if gamma != nil {
				z *= gamma[i]
			}
			if beta != nil {
				z += beta[i]
			}
			yr[i] = z
		}
	}
}

// LayerNormBackward adds the gradients of LayerNorm into dx, dgamma, dbeta.
func (b *Backend) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma tensor.Storage, p tensor.NormParams) {
	const op = "layer_norm_backward"
	dxs, dgs, dbs, dys := f32(op, dx), f32(op, dgamma), f32(op, dbeta), f32(op, dy)
	xs, ms, rs, gs := f32(op, x), f32(op, mean), f32(op, rstd), f32(op, gamma)
	checkDims(op, p.Rows, p.Cols)
	n := p.Rows * p.Cols
	checkShape(op, "x", len(xs), p.Rows, p.Cols)
	checkLen(op, "dy", len(dys), n)
	checkOpt(op, "dx", dxs, n)
	checkLen(op, "mean", len(ms), p.Rows)
	checkLen(op, "rstd", len(rs), p.Rows)
	checkOpt(op, "gamma", gs, p.Cols)
	checkOpt(op, "dgamma", dgs, p.Cols)
	checkOpt(op, "dbeta", dbs, p.Cols)
	var mu sync.Mutex
	parallelFor(p.Rows, 6*p.Cols, func(lo, hi int) {
		var pg, pb []float32
		if dgs != nil {
			pg = make([]float32, p.Cols)
		}
		if dbs != nil {
			pb = make([]float32, p.Cols)
		}
		layerNormBackward(dxs, pg, pb, dys, xs, ms, rs, gs, p.Cols, lo, hi)
		mu.Lock()
		if pg != nil {
			addTo(dgs, pg)
		}
		if pb != nil {
			addTo(dbs, pb)
		}
		mu.Unlock()
	})
}

func layerNormBackward[T float](dx, dgamma, dbeta, dy, x, mean, rstd, gamma []T, cols int, lo, hi int) {
	for r := lo; r < hi; r++ {
		xr, dyr := x[r*cols:][:cols], dy[r*cols:][:cols]
		mu, rs := mean[r], rstd[r]
		var sD, sDX float64
		for i, v := range xr {
			xhat := (v - mu) * rs
			d := dyr[i]
			if dgamma != nil {
				dgamma[i] += d * xhat
			}
			if dbeta != nil {
				dbeta[i] += d
			}
			if gamma != nil {
				d *= gamma[i]
			}
			sD += float64(d)
			sDX += float64(d * xhat)
		}
		if dx == nil {
			continue
		}
		a, bb := T(sD/float64(cols)), T(sDX/float64(cols))
		dxr := dx[r*cols:][:cols]
		for i, v := range xr {
			xhat := (v - mu) * rs
			d := dyr[i]
			if gamma != nil {
				d *= gamma[i]
			}
			dxr[i] += rs * (d - a - xhat*bb)
		}
	}
}

// siluInPlace sets z[i] = z[i]·σ(z[i]).
func siluInPlace[T float](z []T) {
	var buf [chunk]T
	for off := 0; off < len(z); off += chunk {
		zs := z[off:min(off+chunk, len(z))]
		s := buf[:len(zs)]
		sigmoidRow(s, zs, 1)
		for i := range zs {
			zs[i] *= s[i]
		}
	}
}

// siluGradInPlace replaces z[i] by dy[i]·silu'(z[i]).
func siluGradInPlace[T float](z, dy []T) {
	var buf [chunk]T
	for off := 0; off < len(z); off += chunk {
		zs := z[off:min(off+chunk, len(z))]
		s := buf[:len(zs)]
		sigmoidRow(s, zs, 1)
		d := dy[off:][:len(zs)]
		for i, v := range zs {
			zs[i] = d[i] * s[i] * (1 + v*(1-s[i]))
		}
	}
}
