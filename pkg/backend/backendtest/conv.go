package backendtest

import (
	"fmt"

	"loco/pkg/tensor"
)

func convCases() []testCase {
	type cc struct {
		p    tensor.ConvParams
		bias bool
	}
	cp := func(n, c, h, w, k, r, s, stride, pad int) tensor.ConvParams {
		return tensor.ConvParams{N: n, C: c, H: h, W: w, K: k, R: r, S: s,
			StrideH: stride, StrideW: stride, PadH: pad, PadW: pad}
	}
	shapes := []cc{
		{cp(1, 1, 1, 1, 1, 1, 1, 1, 0), true},
		{cp(2, 3, 7, 5, 4, 3, 3, 1, 1), true},  // 3×3, padding 1, odd non-square image
		{cp(1, 5, 6, 6, 7, 1, 1, 1, 0), true},  // 1×1 (the conv_shortcut / proj_in)
		{cp(2, 4, 9, 8, 3, 3, 3, 2, 1), false}, // stride 2, padding 1 (the UNet downsampler), no bias
		{cp(1, 3, 9, 9, 2, 3, 3, 2, 0), true},  // stride 2, padding 0 (the VAE downsampler after its explicit pad)
		{cp(1, 2, 3, 3, 3, 3, 3, 1, 1), true},  // kernel as large as the image
		{tensor.ConvParams{N: 1, C: 2, H: 5, W: 7, K: 3, R: 1, S: 3, StrideH: 1, StrideW: 2, PadH: 0, PadW: 1}, true}, // R≠S, unequal strides and padding
		{cp(1, 64, 32, 32, 64, 3, 3, 1, 1), true}, // medium, SD-like
	}
	var cs []testCase
	for _, s := range shapes {
		p := s.p
		shape := fmt.Sprintf("x%s_w%s_s%d,%d_p%d,%d", dims(p.N, p.C, p.H, p.W), dims(p.K, p.C, p.R, p.S),
			p.StrideH, p.StrideW, p.PadH, p.PadW)
		bias := s.bias
		if bias {
			shape += "_bias"
		}
		cs = append(cs,
			testCase{"Conv2D", "Conv2D/" + shape, func(e *env) { testConv2D(e, p, bias) }},
			testCase{"Conv2DBackwardData", "Conv2DBackwardData/" + shape, func(e *env) { testConv2DBackwardData(e, p, false) }},
			testCase{"Conv2DBackwardData", "Conv2DBackwardData/" + shape + "_overwrite", func(e *env) { testConv2DBackwardData(e, p, true) }},
			testCase{"Conv2DBackwardFilter", "Conv2DBackwardFilter/" + shape, func(e *env) { testConv2DBackwardFilter(e, p, bias) }},
		)
	}
	return cs
}

func convLens(p tensor.ConvParams) (nx, nw, ny int) {
	return p.N * p.C * p.H * p.W, p.K * p.C * p.R * p.S, p.N * p.K * p.P() * p.Q()
}

func testConv2D(e *env, p tensor.ConvParams, withBias bool) {
	nx, nw, ny := convLens(p)
	xv, wv := e.data(nx), e.data(nw)
	x, w := e.in("x", e.dt, xv), e.in("w", e.dt, wv)
	var bias tensor.Storage
	var biasRef []float64
	if withBias {
		bv := e.data(p.K)
		bias, biasRef = e.in("bias", e.dt, bv), f64(bv)
	}
	want := make([]float64, ny)
	refConv2D(want, f64(xv), f64(wv), biasRef, p)
	y := e.out(e.dt, ny)
	e.b.Conv2D(y, x, w, bias, p)
	e.checkInputs("Conv2D")
	e.check("Conv2D", "y", e.get(y), want, e.tol)
}

// testConv2DBackwardData checks dx += conv_transpose(dy, w) into a
// prefilled dx, or, with overwrite (p.Overwrite), dx = ... into a
// NaN-filled dx that must not be read.
func testConv2DBackwardData(e *env, p tensor.ConvParams, overwrite bool) {
	nx, nw, ny := convLens(p)
	dyv, wv := e.data(ny), e.data(nw)
	dy, w := e.in("dy", e.dt, dyv), e.in("w", e.dt, wv)
	contrib := make([]float64, nx)
	refConv2DBackwardData(contrib, f64(dyv), f64(wv), p)
	if overwrite {
		dx := e.out(e.dt, nx)
		p.Overwrite = true
		e.b.Conv2DBackwardData(dx, dy, w, p)
		e.checkInputs("Conv2DBackwardData")
		e.check("Conv2DBackwardData", "dx (NaN-filled, Overwrite: must be written, not read)", e.get(dx), contrib, e.tol)
		return
	}
	dx, want := e.grad(e.dt, contrib)
	e.b.Conv2DBackwardData(dx, dy, w, p)
	e.checkInputs("Conv2DBackwardData")
	e.check("Conv2DBackwardData", "dx (prefilled, must be added to)", e.get(dx), want, e.tol)
}

func testConv2DBackwardFilter(e *env, p tensor.ConvParams, withBias bool) {
	nx, nw, ny := convLens(p)
	dyv, xv := e.data(ny), e.data(nx)
	dy, x := e.in("dy", e.dt, dyv), e.in("x", e.dt, xv)
	cw, cb := make([]float64, nw), make([]float64, p.K)
	refConv2DBackwardFilter(cw, cb, f64(dyv), f64(xv), p)
	dw, wantW := e.grad(e.dt, cw)
	var dbias tensor.Storage
	var wantB []float64
	if withBias {
		dbias, wantB = e.grad(e.dt, cb)
	}
	e.b.Conv2DBackwardFilter(dw, dbias, dy, x, p)
	e.checkInputs("Conv2DBackwardFilter")
	e.check("Conv2DBackwardFilter", "dw (prefilled, must be added to)", e.get(dw), wantW, e.tol)
	if withBias {
		e.check("Conv2DBackwardFilter", "dbias (prefilled, must be added to)", e.get(dbias), wantB, e.tol)
	}
	// The bias gradient alone (dw nil is allowed too).
	if withBias {
		db2, want2 := e.grad(e.dt, cb)
		e.b.Conv2DBackwardFilter(nil, db2, dy, x, p)
		e.checkInputs("Conv2DBackwardFilter")
		e.check("Conv2DBackwardFilter(dw nil)", "dbias", e.get(db2), want2, e.tol)
	}
}
