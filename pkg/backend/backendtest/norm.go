package backendtest

import (
	"fmt"

	"loco/pkg/tensor"
)

func normCases() []testCase {
	type gc struct {
		p      tensor.NormParams
		affine bool
	}
	gn := func(n, c, hw, g int, eps float32, silu bool) tensor.NormParams {
		return tensor.NormParams{N: n, C: c, HW: hw, Groups: g, Eps: eps, SiLU: silu}
	}
	groups := []gc{
		{gn(2, 6, 5, 3, 1e-5, false), true},
		{gn(2, 6, 5, 3, 1e-5, true), true},
		{gn(2, 6, 5, 3, 1e-5, false), false},
		{gn(2, 6, 5, 3, 1e-6, true), false},
		{gn(1, 4, 1, 4, 1e-5, false), true},     // one element per group: the output is beta
		{gn(3, 8, 7, 1, 1e-6, true), true},      // one group
		{gn(1, 7, 3, 7, 1e-5, false), true},     // one channel per group (instance norm)
		{gn(1, 320, 256, 32, 1e-5, true), true}, // medium, SD-like (16×16, fused SiLU)
		// Groups of 8k+ elements: the CUDA backend's split kernels (several
		// blocks per group), with chunks that end inside channels.
		{gn(2, 4, 4500, 2, 1e-5, false), true},
		{gn(2, 4, 4500, 2, 1e-5, true), true},
		{gn(1, 6, 4133, 3, 1e-6, true), false},  // N 1, no affine, fused SiLU
		{gn(1, 2, 8200, 1, 1e-5, false), false}, // one group, no affine
		{gn(2, 16384, 1, 2, 1e-5, true), true},  // HW 1: a channel per element
	}
	var cs []testCase
	for _, g := range groups {
		p, affine := g.p, g.affine
		shape := fmt.Sprintf("x%s_g%d_eps%g", dims(p.N, p.C, p.HW), p.Groups, p.Eps)
		if affine {
			shape += "_affine"
		}
		if p.SiLU {
			shape += "_silu"
		}
		cs = append(cs,
			testCase{"GroupNorm", "GroupNorm/" + shape, func(e *env) { testGroupNorm(e, p, affine) }},
			testCase{"GroupNormBackward", "GroupNormBackward/" + shape, func(e *env) { testGroupNormBackward(e, p, affine, true) }},
		)
		if affine {
			cs = append(cs, testCase{"GroupNormBackward", "GroupNormBackward/" + shape + "_dx_only",
				func(e *env) { testGroupNormBackward(e, p, affine, false) }})
		}
	}
	for _, rc := range [][2]int{{1, 3}, {7, 40}, {3, 13}, {77, 768}} {
		p := tensor.NormParams{Rows: rc[0], Cols: rc[1], Eps: 1e-5}
		shape := dims(p.Rows, p.Cols)
		cs = append(cs,
			testCase{"LayerNorm", "LayerNorm/" + shape, func(e *env) { testLayerNorm(e, p) }},
			testCase{"LayerNormBackward", "LayerNormBackward/" + shape, func(e *env) { testLayerNormBackward(e, p, true) }},
			testCase{"LayerNormBackward", "LayerNormBackward/" + shape + "_dx_only", func(e *env) { testLayerNormBackward(e, p, false) }},
		)
	}
	return cs
}

// normInput is x with a non-zero mean per row, so that a variance computed
// without subtracting the mean shows.
func (e *env) normInput(n int) []float32 { return e.randn(e.dt, n, 0.7, 1.3) }

// affineParams returns gamma (around 1) and beta in dt, or nils.
func (e *env) affineParams(affine bool, n int) (gv, bv []float32, gamma, beta tensor.Storage, gRef, bRef []float64) {
	if !affine {
		return
	}
	gv, bv = e.randn(e.dt, n, 1, 0.5), e.data(n)
	gamma, beta = e.in("gamma", e.dt, gv), e.in("beta", e.dt, bv)
	return gv, bv, gamma, beta, f64(gv), f64(bv)
}

func testGroupNorm(e *env, p tensor.NormParams, affine bool) {
	n := p.N * p.C * p.HW
	xv := e.normInput(n)
	x := e.in("x", e.dt, xv)
	_, _, gamma, beta, gRef, bRef := e.affineParams(affine, p.C)
	want, wMean, wRstd := make([]float64, n), make([]float64, p.N*p.Groups), make([]float64, p.N*p.Groups)
	refGroupNorm(want, wMean, wRstd, f64(xv), gRef, bRef, p)
	y, mean, rstd := e.out(e.dt, n), e.out(tensor.F32, p.N*p.Groups), e.out(tensor.F32, p.N*p.Groups)
	e.b.GroupNorm(y, mean, rstd, x, gamma, beta, p)
	e.checkInputs("GroupNorm")
	e.check("GroupNorm", "y", e.get(y), want, e.tol)
	e.check("GroupNorm", "saved mean", e.get(mean), wMean, e.tol)
	e.check("GroupNorm", "saved rstd", e.get(rstd), wRstd, e.tol)
}

func testGroupNormBackward(e *env, p tensor.NormParams, affine, paramGrads bool) {
	n := p.N * p.C * p.HW
	xv, dyv := e.normInput(n), e.data(n)
	_, _, gamma, beta, gRef, bRef := e.affineParams(affine, p.C)
	// The saved values are the reference's, rounded to F32.
	yRef, mRef, rRef := make([]float64, n), make([]float64, p.N*p.Groups), make([]float64, p.N*p.Groups)
	refGroupNorm(yRef, mRef, rRef, f64(xv), gRef, bRef, p)
	x, dy := e.in("x", e.dt, xv), e.in("dy", e.dt, dyv)
	mean, rstd := e.in("mean", tensor.F32, f32(tensor.F32, mRef)), e.in("rstd", tensor.F32, f32(tensor.F32, rRef))

	cx, cg, cb := make([]float64, n), make([]float64, p.C), make([]float64, p.C)
	refGroupNormBackward(cx, cg, cb, f64(dyv), f64(xv), gRef, bRef, p)
	dx, wantX := e.grad(e.dt, cx)
	var dgamma, dbeta tensor.Storage
	var wantG, wantB []float64
	if affine && paramGrads {
		dgamma, wantG = e.grad(e.dt, cg)
		dbeta, wantB = e.grad(e.dt, cb)
	}
	e.b.GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, p)
	e.checkInputs("GroupNormBackward")
	e.check("GroupNormBackward", "dx (prefilled, must be added to)", e.get(dx), wantX, e.tol)
	if dgamma != nil {
		e.check("GroupNormBackward", "dgamma (prefilled, must be added to)", e.get(dgamma), wantG, e.tol)
		e.check("GroupNormBackward", "dbeta (prefilled, must be added to)", e.get(dbeta), wantB, e.tol)
	}
}

func testLayerNorm(e *env, p tensor.NormParams) {
	n := p.Rows * p.Cols
	xv := e.normInput(n)
	x := e.in("x", e.dt, xv)
	_, _, gamma, beta, gRef, bRef := e.affineParams(true, p.Cols)
	want, wMean, wRstd := make([]float64, n), make([]float64, p.Rows), make([]float64, p.Rows)
	refLayerNorm(want, wMean, wRstd, f64(xv), gRef, bRef, p)
	y, mean, rstd := e.out(e.dt, n), e.out(tensor.F32, p.Rows), e.out(tensor.F32, p.Rows)
	e.b.LayerNorm(y, mean, rstd, x, gamma, beta, p)
	e.checkInputs("LayerNorm")
	e.check("LayerNorm", "y", e.get(y), want, e.tol)
	e.check("LayerNorm", "saved mean", e.get(mean), wMean, e.tol)
	e.check("LayerNorm", "saved rstd", e.get(rstd), wRstd, e.tol)
}

func testLayerNormBackward(e *env, p tensor.NormParams, paramGrads bool) {
	n := p.Rows * p.Cols
	xv, dyv := e.normInput(n), e.data(n)
	gv := e.randn(e.dt, p.Cols, 1, 0.5)
	gamma := e.in("gamma", e.dt, gv)
	yRef, mRef, rRef := make([]float64, n), make([]float64, p.Rows), make([]float64, p.Rows)
	refLayerNorm(yRef, mRef, rRef, f64(xv), f64(gv), make([]float64, p.Cols), p)
	x, dy := e.in("x", e.dt, xv), e.in("dy", e.dt, dyv)
	mean, rstd := e.in("mean", tensor.F32, f32(tensor.F32, mRef)), e.in("rstd", tensor.F32, f32(tensor.F32, rRef))

	cx, cg, cb := make([]float64, n), make([]float64, p.Cols), make([]float64, p.Cols)
	refLayerNormBackward(cx, cg, cb, f64(dyv), f64(xv), f64(gv), p)
	dx, wantX := e.grad(e.dt, cx)
	var dgamma, dbeta tensor.Storage
	var wantG, wantB []float64
	if paramGrads {
		dgamma, wantG = e.grad(e.dt, cg)
		dbeta, wantB = e.grad(e.dt, cb)
	}
	e.b.LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, p)
	e.checkInputs("LayerNormBackward")
	e.check("LayerNormBackward", "dx (prefilled, must be added to)", e.get(dx), wantX, e.tol)
	if paramGrads {
		e.check("LayerNormBackward", "dgamma (prefilled, must be added to)", e.get(dgamma), wantG, e.tol)
		e.check("LayerNormBackward", "dbeta (prefilled, must be added to)", e.get(dbeta), wantB, e.tol)
	}
}
