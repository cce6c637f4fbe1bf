package cpu

import (
	"math"

	"loco/pkg/tensor"
)

// Attention for narrow heads (D ≤ attnSmallMaxD) never calls the SGEMM:
// with 4–16 dims per head the products are too thin for its tiles, and
// the time went into packing and edge handling. Instead, per (batch,
// head), K and V are transposed once into [D, Tk16] panels (Tk16 = Tk
// rounded up to 16, zero-padded), and every query row is handled with
// four vector loops over keys:
//
//	s = Σ_d (scale·q[d])·Kᵀ[d, :]   (smallMV: D broadcast FMAs per 16 keys)
//	p = exp(s − max s)               (expShift)
//	o[d] = Σ_j p[j]·Vᵀ[d, j] / Σ p   (smallMTV: dot products)
//
// The whole key row is one block (Tk ≤ attnSmallMaxT), so no running
// max is needed. Padding keys get score −Inf (probability 0); a causal
// row i stops at key i the same way.
//
// The backward pass recomputes p from the saved log-sum-exp per row and
// accumulates dKᵀ, dVᵀ [D, Tk16] per head by rank-1 updates (smallGER):
//
//	dVᵀ += dO_i ⊗ p,  dp = Σ_d dO_i[d]·Vᵀ[d, :],  ds = scale·p∘(dp − δ_i)
//	dQ_i += Σ_j ds[j]·Kᵀ[:, j],  dKᵀ += q_i ⊗ ds

// attnSmallMaxD and attnSmallMaxT bound the narrow-head path (variables
// so that tests can send a shape down either path).
var (
	attnSmallMaxD = 32
	attnSmallMaxT = 1024
)

func attnSmall(p tensor.AttnParams) bool {
	return p.D <= attnSmallMaxD && p.Tk <= attnSmallMaxT
}

// attnSmallQB is the number of query rows per forward task.
const attnSmallQB = 64

// transposeHead writes the head h of x[b] (rows ld apart, D wide, t rows)
// into dst [D, t16] and zeroes the padding columns.
func transposeHead(dst, x []float32, ld, d, t, t16 int) {
	for di := 0; di < d; di++ {
		row := dst[di*t16 : (di+1)*t16]
		for j := 0; j < t; j++ {
			row[j] = x[j*ld+di]
		}
		clear(row[t:])
	}
}

// roundUp16 rounds n up to a multiple of 16.
func roundUp16(n int) int { return (n + 15) &^ 15 }

func (b *Backend) attentionSmall(os, ls, qs, ks, vs []float32, p tensor.AttnParams) {
	const bq = attnSmallQB
	d := p.D
	tk16 := roundUp16(p.Tk)
	nqb := (p.Tq + bq - 1) / bq
	ntask := p.B * p.H * nqb
	nt := min(Threads(), ntask)
	if ntask*p.Tk*p.Tq/nqb*d < minParallelWork {
		nt = 1
	}
	scratch := make([][]float32, nt)
	for w := range scratch {
		scratch[w] = b.get(2*d*tk16 + tk16 + 2*d)
	}
	bias := b.maskRow(tk16)
	ld := p.H * d
	parallelDynamicN(ntask, nt, func(task, w int) {
		bh, qb := task/nqb, task%nqb
		bi, h := bh/p.H, bh%p.H
		q0 := qb * bq
		nq := min(bq, p.Tq-q0)
		sc := scratch[w]
		kT, vT := sc[:d*tk16], sc[d*tk16:2*d*tk16]
		s := sc[2*d*tk16 : 2*d*tk16+tk16]
		qa := sc[2*d*tk16+tk16:][:d]
		acc := sc[2*d*tk16+tk16+d:][:d]
		tk := p.Tk
		if p.Causal {
			tk = q0 + nq // this block's last query sees keys up to it
		}
		transposeHead(kT, ks[bi*p.Tk*ld+h*d:], ld, d, tk, tk16)
		transposeHead(vT, vs[bi*p.Tk*ld+h*d:], ld, d, tk, tk16)
		for i := q0; i < q0+nq; i++ {
			lim := tk
			if p.Causal {
				lim = i + 1
			}
			n16 := roundUp16(lim)
			qi := qs[(bi*p.Tq+i)*ld+h*d:][:d]
			for di, v := range qi {
				qa[di] = v * p.Scale
			}
			row := s[:n16]
			mx := smallMV(row, kT, tk16, qa, bias[tk16-lim:])
			l := expShift(row, mx)
			clear(acc)
			smallMTV(acc, vT, tk16, row)
			dst := os[(bi*p.Tq+i)*ld+h*d:][:d]
			inv := 1 / l
			for di := range dst {
				dst[di] = acc[di] * inv
			}
			ls[bh*p.Tq+i] = mx + logPos(l)
		}
	})
	for _, sc := range scratch {
		b.put(sc)
	}
	b.put(bias)
}

func (b *Backend) attentionBackwardSmall(dqs, dks, dvs, dos, qs, ks, vs, os, ls []float32, p tensor.AttnParams) {
	d := p.D
	tk16 := roundUp16(p.Tk)
	ntask := p.B * p.H
	nt := min(Threads(), ntask)
	if ntask*p.Tk*p.Tq*d < minParallelWork {
		nt = 1
	}
	scratch := make([][]float32, nt)
	for w := range scratch {
		scratch[w] = b.get(4*d*tk16 + 2*tk16 + 3*d)
	}
	bias := b.maskRow(tk16)
	ld := p.H * d
	parallelDynamicN(ntask, nt, func(bh, w int) {
		bi, h := bh/p.H, bh%p.H
		sc := scratch[w]
		kT, vT := sc[:d*tk16], sc[d*tk16:][:d*tk16]
		dkT, dvT := sc[2*d*tk16:][:d*tk16], sc[3*d*tk16:][:d*tk16]
		pr, dp := sc[4*d*tk16:][:tk16], sc[4*d*tk16+tk16:][:tk16]
		qa := sc[4*d*tk16+2*tk16:][:d]
		doi := sc[4*d*tk16+2*tk16+d:][:d]
		dqi := sc[4*d*tk16+2*tk16+2*d:][:d]
		transposeHead(kT, ks[bi*p.Tk*ld+h*d:], ld, d, p.Tk, tk16)
		transposeHead(vT, vs[bi*p.Tk*ld+h*d:], ld, d, p.Tk, tk16)
		clear(dkT)
		clear(dvT)
		for i := 0; i < p.Tq; i++ {
			lim := p.Tk
			if p.Causal {
				lim = i + 1
			}
			n16 := roundUp16(lim)
			off := (bi*p.Tq+i)*ld + h*d
			qi, oi := qs[off:][:d], os[off:][:d]
			copy(doi, dos[off:][:d])
			var delta float32
			for di, v := range doi {
				delta += v * oi[di]
			}
			for di, v := range qi {
				qa[di] = v * p.Scale
			}
			row := pr[:n16]
			smallMV(row, kT, tk16, qa, bias[tk16-lim:])
			expShift(row, ls[bh*p.Tq+i])
			if dvs != nil {
				smallGER(dvT, tk16, doi, row)
			}
			if dqs == nil && dks == nil {
				continue
			}
			dpr := dp[:n16]
			smallMV(dpr, vT, tk16, doi, bias) // bias[:tk16] is 0
			smallDS(row, dpr, delta, p.Scale)
			if dqs != nil {
				clear(dqi)
				smallMTV(dqi, kT, tk16, row)
				dq := dqs[off:][:d]
				for di, v := range dqi {
					dq[di] += v
				}
			}
			if dks != nil {
				smallGER(dkT, tk16, qi, row)
			}
		}
		addHead := func(dst, srcT []float32) {
			if dst == nil {
				return
			}
			base := dst[bi*p.Tk*ld+h*d:]
			for j := 0; j < p.Tk; j++ {
				r := base[j*ld : j*ld+d]
				for di := range r {
					r[di] += srcT[di*tk16+j]
				}
			}
		}
		addHead(dks, dkT)
		addHead(dvs, dvT)
	})
	for _, sc := range scratch {
		b.put(sc)
	}
	b.put(bias)
}

// maskRow returns [0]*t16 followed by [−Inf]*t16: its slice from t16−n
// is the score bias of a row with n valid keys (take it back with put).
func (b *Backend) maskRow(t16 int) []float32 {
	m := b.get(2 * t16)
	clear(m[:t16])
	negInf := float32(math.Inf(-1))
	for j := t16; j < 2*t16; j++ {
		m[j] = negInf
	}
	return m
}

// logPos returns ln x for a finite x > 0 (here a softmax denominator,
// ≥ 1) to float32 precision: x = 2^e·m with m in [√½, √2), ln m =
// 2·atanh(f/(2+f)), f = m−1, by its series to the 11th power (error
// below 1e-10).
func logPos(x float32) float32 {
	bits := math.Float32bits(x)
	e := int(bits>>23) - 127
	m := float64(math.Float32frombits(bits&0x7fffff | 0x3f800000))
	if m > math.Sqrt2 {
		m /= 2
		e++
	}
	if bits>>23 == 0 || bits>>23 >= 0xff {
		return float32(math.Log(float64(x))) // subnormal, Inf, NaN or negative
	}
	f := m - 1
	t := f / (2 + f)
	z := t * t
	r := 2 * t * (1 + z*(1.0/3+z*(1.0/5+z*(1.0/7+z*(1.0/9+z*(1.0/11))))))
	return float32(float64(e)*math.Ln2 + r)
}

// smallMVGo sets s[j] = bias[j] + Σ_d a[d]·m[d·ld+j] for j < len(s) and
// returns max(s) (−Inf if empty; NaNs are skipped).
func smallMVGo(s, m []float32, ld int, a, bias []float32) float32 {
	copy(s, bias[:len(s)])
	for di, ad := range a {
		md := m[di*ld:][:len(s)]
		for j, v := range md {
			s[j] += ad * v
		}
	}
	return rowMaxGo(s, float32(math.Inf(-1)))
}

// smallMTVGo adds Σ_j p[j]·m[d·ld+j] to out[d] for d < len(out).
func smallMTVGo(out, m []float32, ld int, p []float32) {
	for di := range out {
		md := m[di*ld:][:len(p)]
		var acc float32
		for j, v := range p {
			acc += v * md[j]
		}
		out[di] += acc
	}
}

// smallGERGo adds a[d]·p[j] to m[d·ld+j] for d < len(a), j < len(p).
func smallGERGo(m []float32, ld int, a, p []float32) {
	for di, ad := range a {
		md := m[di*ld:][:len(p)]
		for j, v := range p {
			md[j] += ad * v
		}
	}
}

// smallDSGo sets p[j] = scale·p[j]·(dp[j] − delta).
func smallDSGo(p, dp []float32, delta, scale float32) {
	dp = dp[:len(p)]
	for j, v := range p {
		p[j] = scale * v * (dp[j] - delta)
	}
}
