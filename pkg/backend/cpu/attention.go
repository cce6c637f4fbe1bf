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
//
// Products whose natural output is T×D (P·V, and the gradients dQ, dK,
// dV) are computed transposed, as D×T, into per-worker accumulators: the
// SGEMM's micro-tile is 32 columns wide, so a 40-column output (SD's head
// size) would waste 3/8 of it, while D as the row count costs little
// (rows come in 14s). The accumulators are transposed into the outputs
// once per query block (forward) or per head (backward).

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
	checkShape(op, "q", len(q), p.B, p.Tq, p.H, p.D)
	checkShape(op, "k", len(k), p.B, p.Tk, p.H, p.D)
	checkShape(op, "v", len(v), p.B, p.Tk, p.H, p.D)
}

// Attention computes o = softmax(q kᵀ·scale (+ causal mask)) v and saves
// lse[B,H,Tq].
func (b *Backend) Attention(o, lse, q, k, v tensor.Storage, p tensor.AttnParams) {
	const op = "attention"
	os, ls, qs, ks, vs := f32(op, o), f32(op, lse), f32(op, q), f32(op, k), f32(op, v)
	attnCheck(op, p, qs, ks, vs)
	checkShape(op, "o", len(os), p.B, p.Tq, p.H, p.D)
	checkShape(op, "lse", len(ls), p.B, p.H, p.Tq)
	if attnSmall(p) {
		b.attentionSmall(os, ls, qs, ks, vs, p)
		return
	}

	const bq = attnBQ
	bk := attnBK(p.D)
	nqb := (p.Tq + bq - 1) / bq
	nt := Threads()
	scratch := make([][]float32, nt)
	for w := range scratch {
		scratch[w] = b.get(bq*bk + p.D*bq + 3*bq)
	}
	ld := p.H * p.D
	parallelDynamic(p.B*p.H*nqb, func(task, w int) {
		bh, qb := task/nqb, task%nqb
		bi, h := bh/p.H, bh%p.H
		q0 := qb * bq
		nq := min(bq, p.Tq-q0)
		sc := scratch[w]
		s := sc[:bq*bk]                     // scores, then probabilities [nq, nk]
		accT := sc[bq*bk:][:p.D*bq]         // Σ P·V, transposed [D, bq]
		m := sc[bq*bk+p.D*bq:][:bq]         // running max per query
		l := sc[bq*bk+p.D*bq+bq:][:bq]      // running sum per query
		corr := sc[bq*bk+p.D*bq+2*bq:][:bq] // rescale factor of this key block
		for i := 0; i < nq; i++ {
			m[i], l[i] = float32(math.Inf(-1)), 0
		}
		clear(accT)
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
			rescale := false
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
				corr[i] = 1
				mx := rowMax(row, m[i])
				if math.IsInf(float64(mx), -1) {
					clear(row) // every key masked so far: contributes nothing
					continue
				}
				c := expf(m[i] - mx)
				l[i] = l[i]*c + expShift(row, mx)
				m[i] = mx
				if c != 1 {
					corr[i], rescale = c, true
				}
			}
			if rescale {
				for d := 0; d < p.D; d++ {
					row := accT[d*bq : d*bq+nq]
					for i := range row {
						row[i] *= corr[i]
					}
				}
			}
			// accᵀ[D, nq] += Vᵀ[D, nk] · Pᵀ[nk, nq]
			gemm(true, true, p.D, nq, nk, 1, vBlk, ld, s, nk, 1, accT, bq)
		}
		oBlk := os[(bi*p.Tq+q0)*ld+h*p.D:]
		lseRow := ls[bh*p.Tq+q0:]
		for i := 0; i < nq; i++ {
			inv := 1 / l[i]
			dst := oBlk[i*ld : i*ld+p.D]
			for d := range dst {
				dst[d] = accT[d*bq+i] * inv
			}
			lseRow[i] = m[i] + float32(math.Log(float64(l[i])))
		}
	})
	for _, sc := range scratch {
		b.put(sc)
	}
}

// AttentionBackward adds the gradients of Attention into dq, dk, dv. Work
// is split over (batch, head) pairs, so every gradient row has one writer.
// For each key block the query blocks are visited and
//
//	P  = exp(Q·Kᵀ·scale − lse)          (recomputed)
//	dVᵀ += dOᵀ·P
//	dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dO ∘ O))
//	dQᵀ += scale·Kᵀ·dSᵀ,  dKᵀ += scale·Qᵀ·dS
//
// with dQᵀ, dKᵀ, dVᵀ [D, T] per-worker accumulators added into the
// outputs when the head is done.
func (b *Backend) AttentionBackward(dq, dk, dv, do, q, k, v, o, lse tensor.Storage, p tensor.AttnParams) {
	const op = "attention_backward"
	dqs, dks, dvs, dos := f32(op, dq), f32(op, dk), f32(op, dv), f32(op, do)
	qs, ks, vs, os, ls := f32(op, q), f32(op, k), f32(op, v), f32(op, o), f32(op, lse)
	attnCheck(op, p, qs, ks, vs)
	nq, nk := p.B*p.Tq*p.H*p.D, p.B*p.Tk*p.H*p.D
	checkLen(op, "o", len(os), nq)
	checkLen(op, "do", len(dos), nq)
	checkShape(op, "lse", len(ls), p.B, p.H, p.Tq)
	checkOpt(op, "dq", dqs, nq)
	checkOpt(op, "dk", dks, nk)
	checkOpt(op, "dv", dvs, nk)
	if dqs == nil && dks == nil && dvs == nil {
		return
	}
	if p.Overwrite { // the paths below add
		clear(dqs)
		clear(dks)
		clear(dvs)
	}
	if attnSmall(p) {
		b.attentionBackwardSmall(dqs, dks, dvs, dos, qs, ks, vs, os, ls, p)
		return
	}

	const bq = attnBQ
	bk := attnBK(p.D)
	nt := min(Threads(), p.B*p.H)
	scratch := make([][]float32, nt)
	for w := range scratch {
		scratch[w] = b.get(2*bq*bk + p.Tq + p.D*p.Tq + 2*p.D*p.Tk)
	}
	ld := p.H * p.D
	parallelDynamic(p.B*p.H, func(bh, w int) {
		bi, h := bh/p.H, bh%p.H
		sc := scratch[w]
		pm := sc[:bq*bk]             // P, then dS [qn, kn]
		dp := sc[bq*bk:][:bq*bk]     // dP [qn, kn]
		delta := sc[2*bq*bk:][:p.Tq] // rowsum(dO ∘ O)
		rest := sc[2*bq*bk+p.Tq:]
		dqT, dkT, dvT := rest[:p.D*p.Tq], rest[p.D*p.Tq:][:p.D*p.Tk], rest[p.D*p.Tq+p.D*p.Tk:][:p.D*p.Tk]
		clear(rest[:p.D*p.Tq+2*p.D*p.Tk])
		head := func(s []float32, t0, tlen int) []float32 { return s[(bi*tlen+t0)*ld+h*p.D:] }
		for i := 0; i < p.Tq; i++ {
			delta[i] = float32(dot(head(dos, i, p.Tq)[:p.D], head(os, i, p.Tq)[:p.D]))
		}
		lseRow := ls[bh*p.Tq:][:p.Tq]
		for k0 := 0; k0 < p.Tk; k0 += bk {
			kn := min(bk, p.Tk-k0)
			kBlk, vBlk := head(ks, k0, p.Tk), head(vs, k0, p.Tk)
			q0Start := 0
			if p.Causal {
				q0Start = k0 / bq * bq // earlier queries see none of these keys
			}
			for q0 := q0Start; q0 < p.Tq; q0 += bq {
				qn := min(bq, p.Tq-q0)
				qBlk, doBlk := head(qs, q0, p.Tq), head(dos, q0, p.Tq)
				gemm(false, true, qn, kn, p.D, p.Scale, qBlk, ld, kBlk, ld, 0, pm, kn)
				for i := 0; i < qn; i++ {
					row := pm[i*kn : (i+1)*kn]
					lim := kn
					if p.Causal {
						lim = min(kn, max(q0+i+1-k0, 0))
					}
					expShift(row[:lim], lseRow[q0+i])
					clear(row[lim:])
				}
				if dvs != nil {
					// dVᵀ[D, kn] += dOᵀ[D, qn] · P[qn, kn]
					gemm(true, false, p.D, kn, qn, 1, doBlk, ld, pm, kn, 1, dvT[k0:], p.Tk)
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
					// dQᵀ[D, qn] += scale · Kᵀ[D, kn] · dSᵀ[kn, qn]
					gemm(true, true, p.D, qn, kn, p.Scale, kBlk, ld, pm, kn, 1, dqT[q0:], p.Tq)
				}
				if dks != nil {
					// dKᵀ[D, kn] += scale · Qᵀ[D, qn] · dS[qn, kn]
					gemm(true, false, p.D, kn, qn, p.Scale, qBlk, ld, pm, kn, 1, dkT[k0:], p.Tk)
				}
			}
		}
		addTransposed := func(dst, srcT []float32, tlen int) {
			if dst == nil {
				return
			}
			// In bands of 64 rows, reading srcT along its rows: its rows
			// are tlen apart, often a power of two, and walking down
			// its columns would keep hitting one cache set.
			const band = 64
			for t0 := 0; t0 < tlen; t0 += band {
				t1 := min(t0+band, tlen)
				base := head(dst, t0, tlen)
				for d := 0; d < p.D; d++ {
					src := srcT[d*tlen+t0 : d*tlen+t1]
					for i, v := range src {
						base[i*ld+d] += v
					}
				}
			}
		}
		addTransposed(dqs, dqT, p.Tq)
		addTransposed(dks, dkT, p.Tk)
		addTransposed(dvs, dvT, p.Tk)
	})
	for _, sc := range scratch {
		b.put(sc)
	}
}
