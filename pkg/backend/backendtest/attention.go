package backendtest

import (
	"fmt"
	"math"

	"loco/pkg/tensor"
)

func attentionCases() []testCase {
	ap := func(b, h, tq, tk, d int, causal bool) tensor.AttnParams {
		return tensor.AttnParams{B: b, H: h, Tq: tq, Tk: tk, D: d, Scale: float32(1 / math.Sqrt(float64(d))), Causal: causal}
	}
	shapes := []tensor.AttnParams{
		ap(1, 1, 1, 1, 8, false),
		ap(2, 3, 5, 7, 40, false),  // Tq ≠ Tk, the SD 1.5 head size
		ap(1, 2, 9, 9, 64, true),   // causal (CLIP), the SD 2 / CLIP head size
		ap(2, 1, 13, 13, 13, true), // causal, D not a multiple of 8
		ap(1, 2, 33, 17, 20, false),
		ap(1, 8, 16, 77, 40, false),   // cross-attention to 77 text tokens
		ap(1, 8, 256, 256, 40, false), // medium, SD-like self-attention at 16×16
	}
	odd := ap(1, 2, 6, 11, 24, false)
	odd.Scale = 0.3 // a scale that is not 1/sqrt(D)
	shapes = append(shapes, odd)
	var cs []testCase
	for _, p := range shapes {
		shape := fmt.Sprintf("b%d_h%d_tq%d_tk%d_d%d_scale%.4g", p.B, p.H, p.Tq, p.Tk, p.D, p.Scale)
		if p.Causal {
			shape += "_causal"
		}
		cs = append(cs,
			testCase{"Attention", "Attention/" + shape, func(e *env) { testAttention(e, p) }},
			testCase{"AttentionBackward", "AttentionBackward/" + shape, func(e *env) { testAttentionBackward(e, p, [3]bool{true, true, true}) }},
			testCase{"AttentionBackward", "AttentionBackward/" + shape + "_overwrite", func(e *env) {
				po := p
				po.Overwrite = true
				testAttentionBackward(e, po, [3]bool{true, true, true})
			}},
		)
		if p.Tq == 5 || p.Causal && p.D == 13 {
			cs = append(cs,
				testCase{"AttentionBackward", "AttentionBackward/" + shape + "_dq_only", func(e *env) { testAttentionBackward(e, p, [3]bool{true, false, false}) }},
				testCase{"AttentionBackward", "AttentionBackward/" + shape + "_dk_dv_only", func(e *env) { testAttentionBackward(e, p, [3]bool{false, true, true}) }},
			)
		}
	}
	return cs
}

func attnLens(p tensor.AttnParams) (nq, nk, nlse int) {
	return p.B * p.Tq * p.H * p.D, p.B * p.Tk * p.H * p.D, p.B * p.H * p.Tq
}

func testAttention(e *env, p tensor.AttnParams) {
	nq, nk, nl := attnLens(p)
	qv, kv, vv := e.data(nq), e.data(nk), e.data(nk)
	want, wantL := make([]float64, nq), make([]float64, nl)
	refAttention(want, wantL, f64(qv), f64(kv), f64(vv), p)
	q, k, v := e.in("q", e.dt, qv), e.in("k", e.dt, kv), e.in("v", e.dt, vv)
	o, lse := e.out(e.dt, nq), e.out(tensor.F32, nl)
	e.b.Attention(o, lse, q, k, v, p)
	e.checkInputs("Attention")
	e.check("Attention", "o", e.get(o), want, e.tol)
	e.check("Attention", "saved lse", e.get(lse), wantL, e.tol)
}

func testAttentionBackward(e *env, p tensor.AttnParams, which [3]bool) {
	nq, nk, nl := attnLens(p)
	qv, kv, vv, dov := e.data(nq), e.data(nk), e.data(nk), e.data(nq)
	oRef, lRef := make([]float64, nq), make([]float64, nl)
	refAttention(oRef, lRef, f64(qv), f64(kv), f64(vv), p)
	cq, ck, cv := make([]float64, nq), make([]float64, nk), make([]float64, nk)
	refAttentionBackward(cq, ck, cv, f64(dov), f64(qv), f64(kv), f64(vv), p)
	q, k, v := e.in("q", e.dt, qv), e.in("k", e.dt, kv), e.in("v", e.dt, vv)
	do := e.in("do", e.dt, dov)
	o, lse := e.in("o", e.dt, f32(e.dt, oRef)), e.in("lse", tensor.F32, f32(tensor.F32, lRef))
	var g [3]tensor.Storage
	var want [3][]float64
	what := " (prefilled, must be added to)"
	for i, c := range [][]float64{cq, ck, cv} {
		switch {
		case which[i] && p.Overwrite: // NaN-filled: must be written, not read
			g[i], want[i] = e.out(e.dt, len(c)), c
			what = " (NaN-filled, Overwrite: must be written, not read)"
		case which[i]:
			g[i], want[i] = e.grad(e.dt, c)
		}
	}
	e.b.AttentionBackward(g[0], g[1], g[2], do, q, k, v, o, lse, p)
	e.checkInputs("AttentionBackward")
	for i, name := range []string{"dq", "dk", "dv"} {
		if which[i] {
			e.check("AttentionBackward", name+what, e.get(g[i]), want[i], e.tol)
		}
	}
}
