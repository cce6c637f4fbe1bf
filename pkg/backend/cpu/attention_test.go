package cpu

import (
	"fmt"
	"math"
	"testing"

	"loco/pkg/tensor"
)

// attnNaive is attention with the full score matrix, in float64. It
// returns o and, if do is given, dq, dk, dv.
func attnNaive(q, k, v, do []float64, p tensor.AttnParams) (o, lse, dq, dk, dv []float64) {
	B, H, Tq, Tk, D := p.B, p.H, p.Tq, p.Tk, p.D
	o = make([]float64, B*Tq*H*D)
	lse = make([]float64, B*H*Tq)
	dq, dk, dv = make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	at := func(t, b, i, h, d, T int) int { return ((b*T+i)*H+h)*D + d }
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			P := make([][]float64, Tq)
			for i := 0; i < Tq; i++ {
				s := make([]float64, Tk)
				m := math.Inf(-1)
				for j := 0; j < Tk; j++ {
					if p.Causal && j > i {
						s[j] = math.Inf(-1)
						continue
					}
					for d := 0; d < D; d++ {
						s[j] += q[at(0, b, i, h, d, Tq)] * k[at(0, b, j, h, d, Tk)]
					}
					s[j] *= float64(p.Scale)
					m = math.Max(m, s[j])
				}
				var z float64
				for j := range s {
					s[j] = math.Exp(s[j] - m)
					z += s[j]
				}
				for j := range s {
					s[j] /= z
				}
				lse[(b*H+h)*Tq+i] = m + math.Log(z)
				P[i] = s
				for d := 0; d < D; d++ {
					var acc float64
					for j := 0; j < Tk; j++ {
						acc += s[j] * v[at(0, b, j, h, d, Tk)]
					}
					o[at(0, b, i, h, d, Tq)] = acc
				}
			}
			if do == nil {
				continue
			}
			for i := 0; i < Tq; i++ {
				dp := make([]float64, Tk)
				var rs float64
				for j := 0; j < Tk; j++ {
					for d := 0; d < D; d++ {
						dp[j] += do[at(0, b, i, h, d, Tq)] * v[at(0, b, j, h, d, Tk)]
						dv[at(0, b, j, h, d, Tk)] += P[i][j] * do[at(0, b, i, h, d, Tq)]
					}
					rs += dp[j] * P[i][j]
				}
				for j := 0; j < Tk; j++ {
					ds := P[i][j] * (dp[j] - rs) * float64(p.Scale)
					for d := 0; d < D; d++ {
						dq[at(0, b, i, h, d, Tq)] += ds * k[at(0, b, j, h, d, Tk)]
						dk[at(0, b, j, h, d, Tk)] += ds * q[at(0, b, i, h, d, Tq)]
					}
				}
			}
		}
	}
	return
}

// TestAttnNaiveBackward checks the float64 reference backward against
// finite differences, so that it can serve as the reference below.
func TestAttnNaiveBackward(t *testing.T) {
	for _, causal := range []bool{false, true} {
		p := tensor.AttnParams{B: 2, H: 2, Tq: 4, Tk: 5, D: 3, Scale: 0.7, Causal: causal}
		if causal {
			p.Tk = 4
		}
		r := newRand(3)
		q, k, v := randn64(r, p.B*p.Tq*p.H*p.D), randn64(r, p.B*p.Tk*p.H*p.D), randn64(r, p.B*p.Tk*p.H*p.D)
		g := randn64(r, len(q))
		loss := func() float64 { o, _, _, _, _ := attnNaive(q, k, v, nil, p); return dot64(o, g) }
		_, _, dq, dk, dv := attnNaive(q, k, v, g, p)
		closeF64(t, "dq", dq, fdGrad(q, loss), 1e-7)
		closeF64(t, "dk", dk, fdGrad(k, loss), 1e-7)
		closeF64(t, "dv", dv, fdGrad(v, loss), 1e-7)
	}
}

func TestAttention(t *testing.T) {
	cases := []tensor.AttnParams{
		{B: 1, H: 1, Tq: 1, Tk: 1, D: 4},
		{B: 2, H: 3, Tq: 5, Tk: 77, D: 8},                  // cross-attention shape, Tq ≠ Tk
		{B: 1, H: 2, Tq: 130, Tk: 300, D: 16},              // several query and key blocks, ragged
		{B: 1, H: 2, Tq: 150, Tk: 150, D: 8, Causal: true}, // causal over block edges
		{B: 2, H: 1, Tq: 70, Tk: 70, D: 40, Causal: true},
		{B: 1, H: 1, Tq: 65, Tk: 600, D: 160}, // narrow key blocks for wide heads
		{B: 1, H: 3, Tq: 33, Tk: 200, D: 5},   // odd head width: row remainders in the narrow path
		{B: 2, H: 1, Tq: 77, Tk: 77, D: 32, Causal: true},
		{B: 1, H: 2, Tq: 9, Tk: 3, D: 1},
	}
	for _, p := range cases {
		p.Scale = float32(1 / math.Sqrt(float64(p.D)))
		for _, narrow := range []bool{true, false} {
			if narrow && !attnSmall(p) {
				continue
			}
			name := fmt.Sprintf("%+v/narrow=%v", p, narrow)
			t.Run(name, func(t *testing.T) {
				if !narrow {
					old := attnSmallMaxD
					attnSmallMaxD = 0
					defer func() { attnSmallMaxD = old }()
				}
				testAttention(t, p)
			})
		}
	}
}

func testAttention(t *testing.T, p tensor.AttnParams) {
	b := New()
	r := newRand(uint64(p.Tq*7 + p.Tk))
	nq, nk := p.B*p.Tq*p.H*p.D, p.B*p.Tk*p.H*p.D
	q, k, v, do := randn(r, nq), randn(r, nk), randn(r, nk), randn(r, nq)
	// Scale q up so that the softmax is peaked, not flat.
	for i := range q {
		q[i] *= 3
	}
	qs, ks, vs, dos := up(b, q), up(b, k), up(b, v), up(b, do)
	o, lse := nanStorage(b, nq), nanStorage(b, p.B*p.H*p.Tq)
	b.Attention(o, lse, qs, ks, vs, p)
	wo, wlse, wdq, wdk, wdv := attnNaive(to64(q), to64(k), to64(v), to64(do), p)
	near(t, "o", Float32s(o), wo, 1e-5)
	near(t, "lse", Float32s(lse), wlse, 1e-6)

	dq0, dk0, dv0 := randn(r, nq), randn(r, nk), randn(r, nk)
	dq, dk, dv := up(b, dq0), up(b, dk0), up(b, dv0)
	b.AttentionBackward(dq, dk, dv, dos, qs, ks, vs, o, lse, p)
	for i := range wdq {
		wdq[i] += float64(dq0[i])
	}
	for i := range wdk {
		wdk[i] += float64(dk0[i])
		wdv[i] += float64(dv0[i])
	}
	near(t, "dq", Float32s(dq), wdq, 1e-5)
	near(t, "dk", Float32s(dk), wdk, 1e-5)
	near(t, "dv", Float32s(dv), wdv, 1e-5)
	// Inputs unchanged.
	near(t, "q after", Float32s(qs), to64(q), 0)
	near(t, "k after", Float32s(ks), to64(k), 0)
	near(t, "v after", Float32s(vs), to64(v), 0)
}

func TestAttentionBadShapes(t *testing.T) {
	b := New()
	p := tensor.AttnParams{B: 1, H: 2, Tq: 3, Tk: 4, D: 5, Scale: 1}
	q, k := b.Alloc(tensor.F32, 30), b.Alloc(tensor.F32, 40)
	o, lse := b.Alloc(tensor.F32, 30), b.Alloc(tensor.F32, 6)
	wantOpError(t, "attention", func() { b.Attention(o, lse, q, k, q, p) })
	p.Causal = true
	wantOpError(t, "attention", func() { b.Attention(o, lse, q, k, k, p) })
}
