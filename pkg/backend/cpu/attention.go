package cpu

import (
	"math"

	"loco/pkg/tensor"
)

// Attention is computed flash-style: for each (batch, head) and block of
// attnBQ queries, key blocks of up to attnBK keys are visited in order; the
// block of scores S = Q·Kᵀ·scale is turned into probabilities with an
// online (running-max) softmax, and P·V is accumulated. A worker holds one
// block of scores at a time. The backward pass recomputes each score block
// from the saved log-sum-exp instead of storing probabilities.
//
// Tensors are [B, T, H, D]: the rows of one head are H*D elements apart,
// which is the leading dimension handed to the GEMM.

// attnBQ is the query block height.
const attnBQ = 64

// attnBK returns the key block width for head dimension d: 256 where a
// block product stays below the size at which the SGEMM would start its
// own workers (the attention already runs one block per worker), and
// never under 128, where wide heads make the products big enough that
// the SGEMM's own split costs little.
func attnBK(d int) int {
	const serialFlops = 2 * 96 * 96 * 96 // sgemm's parallel threshold
	bk := serialFlops / (2 * attnBQ * d)
	return min(256, max(128, bk&^15))
}

func attnCheck(op string, p tensor.AttnParams, q, k, v []float32) {
	checkDims(op, p.B, p.H, p.Tq, p.Tk, p.D)
	if p.Causal && p.Tq != p.Tk {
		tensor.Errorf(op, "causal attention needs Tq == Tk, have %d and %d", p.Tq, p.Tk)
	}
	checkLen(op, "q"+fmtShape(p.B, p.Tq, p.H, p.D), len(q), p.B*p.Tq*p.H*p.D)
	checkLen(op, "k"+fmtShape(p.B, p.Tk, p.H, p.D), len(k), p.B*p.Tk*p.H*p.D)
	checkLen(op, "v"+fmtShape(p.B, p.Tk, p.H, p.D), len(v), p.B*p.Tk*p.H*p.D)
}

// Attention computes o = softmax(q kᵀ·scale (+ causal mask)) v and saves
// lse[B,H,Tq].
func (b *Backend) Attention(o, lse, q, k, v tensor.Storage, p tensor.AttnParams) {
	const op = "attention"
	os, ls, qs, ks, vs := f32(op, o), f32(op, lse), f32(op, q), f32(op, k), f32(op, v)
	attnCheck(op, p, qs, ks, vs)
	checkLen(op, "o"+fmtShape(p.B, p.Tq, p.H, p.D), len(os), p.B*p.Tq*p.H*p.D)
	checkLen(op, "lse"+fmtShape(p.B, p.H, p.Tq), len(ls), p.B*p.H*p.Tq)

	bk := attnBK(p.D)
	nqb := (p.Tq + attnBQ - 1) / attnBQ
	nt := Threads()
	scratch := make([][]float32, nt)
	for w := range scratch {
		scratch[w] = b.get(attnBQ*bk + attnBQ*p.D + 2*attnBQ)
	}
	ld := p.H * p.D
	parallelDynamic(p.B*p.H*nqb, func(task, w int) {
		bh, qb := task/nqb, task%nqb
		bi, h := bh/p.H, bh%p.H
		q0 := qb * attnBQ
		nq := min(attnBQ, p.Tq-q0)
		sc := scratch[w]
		s := sc[:attnBQ*bk]
		acc := sc[attnBQ*bk:][:attnBQ*p.D]
		m := sc[attnBQ*bk+attnBQ*p.D:][:attnBQ]
		l := sc[attnBQ*bk+attnBQ*p.D+attnBQ:][:attnBQ]
		for i := 0; i < nq; i++ {
			m[i], l[i] = float32(math.Inf(-1)), 0
		}
		clear(acc[:nq*p.D])
		qBlk := qs[(bi*p.Tq+q0)*ld+h*p.D:]
		tk := p.Tk
		if p.Causal {
			tk = q0 + nq
		}
		for k0 := 0; k0 < tk; k0 += bk {
			nk := min(bk, tk-k0)
			kBlk := ks[(bi*p.Tk+k0)*ld+h*p.D:]
			vBlk := vs[(bi*p.Tk+k0)*ld+h*p.D:]
			gemm(false, true, nq, nk, p.D, p.Scale, qBlk, ld, kBlk, ld, 0, s, nk)
			for i := 0; i < nq; i++ {
				row := s[i*nk : (i+1)*nk]
				if p.Causal {
					// Query q0+i sees keys up to q0+i.
					if lim := q0 + i + 1 - k0; lim < nk {
						for j := max(lim, 0); j < nk; j++ {
							row[j] = float32(math.Inf(-1))
						}
					}
				}
				mx := rowMax(row, m[i])
				if math.IsInf(float64(mx), -1) {
					clear(row) // every key masked so far: contributes nothing
					continue
				}
				corr := expf(m[i] - mx)
				sum := expShift(row, mx)
				l[i] = l[i]*corr + sum
				m[i] = mx
				if corr != 1 {
					a := acc[i*p.D : (i+1)*p.D]
					for d := range a {
						a[d] *= corr
					}
				}
			}
			gemm(false, false, nq, p.D, nk, 1, s, nk, vBlk, ld, 1, acc, p.D)
		}
		oBlk := os[(bi*p.Tq+q0)*ld+h*p.D:]
		lseRow := ls[bh*p.Tq+q0:]
		for i := 0; i < nq; i++ {
			inv := 1 / l[i]
			a, dst := acc[i*p.D:(i+1)*p.D], oBlk[i*ld:i*ld+p.D]
			for d := range dst {
				dst[d] = a[d] * inv
			}
			lseRow[i] = m[i] + float32(math.Log(float64(l[i])))
		}
	})
	for _, sc := range scratch {
		b.put(sc)
	}
}

// AttentionBackward adds the gradients of Attention into dq, dk, dv. Work
// is split over (batch, head) pairs, so every gradient row has one writer:
// for each key block, the query blocks are visited and
//
//	P  = exp(Q·Kᵀ·scale − lse)          (recomputed)
//	dV += Pᵀ·dO
//	dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dO ∘ O))
//	dQ += scale·dS·K,  dK += scale·dSᵀ·Q
func (b *Backend) AttentionBackward(dq, dk, dv, do, q, k, v, o, lse tensor.Storage, p tensor.AttnParams) {
	const op = "attention_backward"
	dqs, dks, dvs, dos := f32(op, dq), f32(op, dk), f32(op, dv), f32(op, do)
	qs, ks, vs, os, ls := f32(op, q), f32(op, k), f32(op, v), f32(op, o), f32(op, lse)
	attnCheck(op, p, qs, ks, vs)
	nq, nk := p.B*p.Tq*p.H*p.D, p.B*p.Tk*p.H*p.D
	checkLen(op, "o", len(os), nq)
	checkLen(op, "do", len(dos), nq)
	checkLen(op, "lse"+fmtShape(p.B, p.H, p.Tq), len(ls), p.B*p.H*p.Tq)
	checkOpt(op, "dq", dqs, nq)
	checkOpt(op, "dk", dks, nk)
	checkOpt(op, "dv", dvs, nk)
	if dqs == nil && dks == nil && dvs == nil {
		return
	}

	bk := attnBK(p.D)
	nt := Threads()
	scratch := make([][]float32, nt)
	for w := range scratch {
		scratch[w] = b.get(2*attnBQ*bk + p.Tq)
	}
	ld := p.H * p.D
	parallelDynamic(p.B*p.H, func(bh, w int) {
		bi, h := bh/p.H, bh%p.H
		sc := scratch[w]
		pm := sc[:attnBQ*bk]             // P, then dS
		dp := sc[attnBQ*bk:][:attnBQ*bk] // dP
		delta := sc[2*attnBQ*bk:][:p.Tq]
		head := func(s []float32, t0, tlen int) []float32 { return s[(bi*tlen+t0)*ld+h*p.D:] }
		// delta[i] = Σ_d dO[i,d]·O[i,d]
		for i := 0; i < p.Tq; i++ {
			delta[i] = float32(dot(head(dos, i, p.Tq)[:p.D], head(os, i, p.Tq)[:p.D]))
		}
		lseRow := ls[bh*p.Tq:][:p.Tq]
		for k0 := 0; k0 < p.Tk; k0 += bk {
			kn := min(bk, p.Tk-k0)
			kBlk, vBlk := head(ks, k0, p.Tk), head(vs, k0, p.Tk)
			q0Start := 0
			if p.Causal {
				q0Start = k0 / attnBQ * attnBQ // earlier queries see none of these keys
			}
			for q0 := q0Start; q0 < p.Tq; q0 += attnBQ {
				qn := min(attnBQ, p.Tq-q0)
				qBlk, doBlk := head(qs, q0, p.Tq), head(dos, q0, p.Tq)
				gemm(false, true, qn, kn, p.D, p.Scale, qBlk, ld, kBlk, ld, 0, pm, kn)
				for i := 0; i < qn; i++ {
					row := pm[i*kn : (i+1)*kn]
					li := lseRow[q0+i]
					lim := kn
					if p.Causal {
						lim = min(kn, max(q0+i+1-k0, 0))
					}
					expShift(row[:lim], li)
					clear(row[lim:])
				}
				if dvs != nil {
					gemm(true, false, kn, p.D, qn, 1, pm, kn, doBlk, ld, 1, head(dvs, k0, p.Tk), ld)
				}
				if dqs == nil && dks == nil {
					continue
				}
				gemm(false, true, qn, kn, p.D, 1, doBlk, ld, vBlk, ld, 0, dp, kn)
				for i := 0; i < qn; i++ {
					row, dpr := pm[i*kn:(i+1)*kn], dp[i*kn:(i+1)*kn]
					di := delta[q0+i]
					for j, pv := range row {
						row[j] = pv * (dpr[j] - di)
					}
				}
				if dqs != nil {
					gemm(false, false, qn, p.D, kn, p.Scale, pm, kn, kBlk, ld, 1, head(dqs, q0, p.Tq), ld)
				}
				if dks != nil {
					gemm(true, false, kn, p.D, qn, p.Scale, pm, kn, qBlk, ld, 1, head(dks, k0, p.Tk), ld)
				}
			}
		}
	})
	for _, sc := range scratch {
		b.put(sc)
	}
}
