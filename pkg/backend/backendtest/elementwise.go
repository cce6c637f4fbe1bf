package backendtest

import (
	"fmt"

	"loco/pkg/tensor"
)

func elementwiseCases() []testCase {
	var cs []testCase
	add := func(op, shape string, f func(e *env)) {
		cs = append(cs, testCase{op, op + "/" + shape, f})
	}
	for _, op := range []tensor.UnaryOp{tensor.OpSiLU, tensor.OpGELU, tensor.OpQuickGELU} {
		for _, n := range []int{1, 7, 1031, 320 * 256} {
			shape := fmt.Sprintf("%v_n%d", op, n)
			add("Unary", shape, func(e *env) { testUnary(e, op, n, false) })
			add("UnaryBackward", shape, func(e *env) { testUnaryBackward(e, op, n) })
		}
		add("Unary", fmt.Sprintf("%v_n%d_in_place", op, 13), func(e *env) { testUnary(e, op, 13, true) })
	}
	for _, rh := range [][2]int{{1, 1}, {7, 13}, {77, 40}, {256, 1280}} {
		rows, half := rh[0], rh[1]
		shape := fmt.Sprintf("rows%d_half%d", rows, half)
		add("GEGLU", shape, func(e *env) { testGEGLU(e, rows, half) })
		add("GEGLUBackward", shape, func(e *env) { testGEGLUBackward(e, rows, half) })
	}
	for _, rc := range [][2]int{{1, 1}, {3, 7}, {5, 77}, {64, 1024}} {
		rows, cols := rc[0], rc[1]
		shape := dims(rows, cols)
		add("Softmax", shape, func(e *env) { testSoftmax(e, rows, cols) })
		add("SoftmaxBackward", shape, func(e *env) { testSoftmaxBackward(e, rows, cols) })
	}
	// Every broadcast pattern of the Binary interface comment.
	type bc struct {
		what string
		n    int
		p    tensor.Broadcast
	}
	for _, c := range []bc{
		{"bias_last_dim_5x7", 35, tensor.Broadcast{Inner: 1, BLen: 7}},
		{"per_channel_2x3x5", 30, tensor.Broadcast{Inner: 5, BLen: 3}},
		{"per_nc_2x3x5", 30, tensor.Broadcast{Inner: 5, BLen: 6}},
		{"same_shape_29", 29, tensor.Broadcast{Inner: 1, BLen: 29}},
		{"scalar_11", 11, tensor.Broadcast{Inner: 1, BLen: 1}},
		{"one_1", 1, tensor.Broadcast{Inner: 1, BLen: 1}},
		{"per_channel_1x320x256", 320 * 256, tensor.Broadcast{Inner: 256, BLen: 320}},
	} {
		for _, op := range []tensor.BinaryOp{tensor.OpAdd, tensor.OpMul} {
			n, p := c.n, c.p
			shape := fmt.Sprintf("%v_%s", op, c.what)
			add("Binary", shape, func(e *env) { testBinary(e, op, n, p, false) })
			add("BinaryBackward", shape, func(e *env) { testBinaryBackward(e, op, n, p, true, true) })
			if c.n == 30 && c.p.BLen == 3 {
				add("Binary", shape+"_in_place", func(e *env) { testBinary(e, op, n, p, true) })
				add("BinaryBackward", shape+"_da_only", func(e *env) { testBinaryBackward(e, op, n, p, true, false) })
				add("BinaryBackward", shape+"_db_only", func(e *env) { testBinaryBackward(e, op, n, p, false, true) })
			}
		}
	}
	for _, n := range []int{1, 13, 100003} {
		add("Scale", fmt.Sprintf("n%d", n), func(e *env) { testScale(e, n, false) })
		add("Axpy", fmt.Sprintf("n%d", n), func(e *env) { testAxpy(e, n) })
	}
	add("Scale", "n17_in_place", func(e *env) { testScale(e, 17, true) })
	return cs
}

func testUnary(e *env, op tensor.UnaryOp, n int, inPlace bool) {
	xv := e.randn(e.dt, n, 0, 2.5) // reaches the tails of the activations
	want := make([]float64, n)
	refUnary(op, want, f64(xv))
	if inPlace {
		y := e.buf(e.dt, xv)
		e.b.Unary(op, y, y)
		e.sync("Unary")
		e.check("Unary(y aliases x)", "y", e.get(y), want, e.tol)
		return
	}
	x, y := e.in("x", e.dt, xv), e.out(e.dt, n)
	e.b.Unary(op, y, x)
	e.checkInputs("Unary")
	e.check("Unary", "y", e.get(y), want, e.tol)
}

func testUnaryBackward(e *env, op tensor.UnaryOp, n int) {
	xv, dyv := e.randn(e.dt, n, 0, 2.5), e.data(n)
	contrib := make([]float64, n)
	refUnaryBackward(op, contrib, f64(dyv), f64(xv))
	x, dy := e.in("x", e.dt, xv), e.in("dy", e.dt, dyv)
	dx, want := e.grad(e.dt, contrib)
	e.b.UnaryBackward(op, dx, dy, x)
	e.checkInputs("UnaryBackward")
	e.check("UnaryBackward", "dx (prefilled, must be added to)", e.get(dx), want, e.tol)
}

func testGEGLU(e *env, rows, half int) {
	xv := e.randn(e.dt, rows*2*half, 0, 2)
	want := make([]float64, rows*half)
	refGEGLU(want, f64(xv), rows, half)
	x, y := e.in("x", e.dt, xv), e.out(e.dt, rows*half)
	e.b.GEGLU(y, x, rows, half)
	e.checkInputs("GEGLU")
	e.check("GEGLU", "y", e.get(y), want, e.tol)
}

func testGEGLUBackward(e *env, rows, half int) {
	xv, dyv := e.randn(e.dt, rows*2*half, 0, 2), e.data(rows*half)
	contrib := make([]float64, rows*2*half)
	refGEGLUBackward(contrib, f64(dyv), f64(xv), rows, half)
	x, dy := e.in("x", e.dt, xv), e.in("dy", e.dt, dyv)
	dx, want := e.grad(e.dt, contrib)
	e.b.GEGLUBackward(dx, dy, x, rows, half)
	e.checkInputs("GEGLUBackward")
	e.check("GEGLUBackward", "dx (prefilled, must be added to)", e.get(dx), want, e.tol)
}

func testSoftmax(e *env, rows, cols int) {
	xv := e.randn(e.dt, rows*cols, 2, 3) // large, offset logits: needs the max subtracted
	want := make([]float64, rows*cols)
	refSoftmax(want, f64(xv), rows, cols)
	x, y := e.in("x", e.dt, xv), e.out(e.dt, rows*cols)
	e.b.Softmax(y, x, rows, cols)
	e.checkInputs("Softmax")
	e.check("Softmax", "y", e.get(y), want, e.tol)
}

func testSoftmaxBackward(e *env, rows, cols int) {
	xv, dyv := e.randn(e.dt, rows*cols, 0, 2), e.data(rows*cols)
	yRef := make([]float64, rows*cols)
	refSoftmax(yRef, f64(xv), rows, cols)
	yv := f32(e.dt, yRef)
	contrib := make([]float64, rows*cols)
	refSoftmaxBackward(contrib, f64(dyv), f64(yv), rows, cols)
	y, dy := e.in("y", e.dt, yv), e.in("dy", e.dt, dyv)
	dx, want := e.grad(e.dt, contrib)
	e.b.SoftmaxBackward(dx, dy, y, rows, cols)
	e.checkInputs("SoftmaxBackward")
	e.check("SoftmaxBackward", "dx (prefilled, must be added to)", e.get(dx), want, e.tol)
}

func testBinary(e *env, op tensor.BinaryOp, n int, p tensor.Broadcast, inPlace bool) {
	av, bv := e.data(n), e.data(p.BLen)
	want := make([]float64, n)
	refBinary(op, want, f64(av), f64(bv), p)
	b := e.in("b", e.dt, bv)
	if inPlace {
		y := e.buf(e.dt, av)
		e.b.Binary(op, y, y, b, p)
		e.checkInputs("Binary")
		e.check("Binary(y aliases a)", "y", e.get(y), want, e.tol)
		return
	}
	a, y := e.in("a", e.dt, av), e.out(e.dt, n)
	e.b.Binary(op, y, a, b, p)
	e.checkInputs("Binary")
	e.check("Binary", "y", e.get(y), want, e.tol)
}

func testBinaryBackward(e *env, op tensor.BinaryOp, n int, p tensor.Broadcast, wantDA, wantDB bool) {
	av, bv, dyv := e.data(n), e.data(p.BLen), e.data(n)
	ca, cb := make([]float64, n), make([]float64, p.BLen)
	refBinaryBackward(op, ca, cb, f64(dyv), f64(av), f64(bv), p)
	a, b, dy := e.in("a", e.dt, av), e.in("b", e.dt, bv), e.in("dy", e.dt, dyv)
	var da, db tensor.Storage
	var wa, wb []float64
	if wantDA {
		da, wa = e.grad(e.dt, ca)
	}
	if wantDB {
		db, wb = e.grad(e.dt, cb)
	}
	e.b.BinaryBackward(op, da, db, dy, a, b, p)
	e.checkInputs("BinaryBackward")
	if wantDA {
		e.check("BinaryBackward", "da (prefilled, must be added to)", e.get(da), wa, e.tol)
	}
	if wantDB {
		e.check("BinaryBackward", "db (prefilled, must be added to)", e.get(db), wb, e.tol)
	}
}

func testScale(e *env, n int, inPlace bool) {
	xv := e.data(n)
	const alpha = -0.37
	want := make([]float64, n)
	for i, v := range xv {
		want[i] = float64(float32(alpha)) * float64(v)
	}
	if inPlace {
		y := e.buf(e.dt, xv)
		e.b.Scale(y, y, alpha)
		e.sync("Scale")
		e.check("Scale(y aliases x)", "y", e.get(y), want, e.tol)
		return
	}
	x, y := e.in("x", e.dt, xv), e.out(e.dt, n)
	e.b.Scale(y, x, alpha)
	e.checkInputs("Scale")
	e.check("Scale", "y", e.get(y), want, e.tol)
}

func testAxpy(e *env, n int) {
	xv, yv := e.data(n), e.data(n)
	const alpha = 1.7
	want := f64(yv)
	for i, v := range xv {
		want[i] += float64(float32(alpha)) * float64(v)
	}
	x, y := e.in("x", e.dt, xv), e.buf(e.dt, yv)
	e.b.Axpy(y, x, alpha)
	e.checkInputs("Axpy")
	e.check("Axpy", "y", e.get(y), want, e.tol)
}
