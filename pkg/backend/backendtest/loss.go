package backendtest

import (
	"fmt"
	"math"

	"loco/pkg/tensor"
)

func lossCases() []testCase {
	var cs []testCase
	add := func(op, shape string, f func(e *env)) {
		cs = append(cs, testCase{op, op + "/" + shape, f})
	}
	for _, rc := range [][2]int{{1, 1}, {3, 7}, {2, 4 * 64 * 64}} {
		rows, cols := rc[0], rc[1]
		add("MSE", dims(rows, cols), func(e *env) { testMSE(e, rows, cols) })
		add("MSEBackward", dims(rows, cols), func(e *env) { testMSEBackward(e, rows, cols, true) })
	}
	add("MSEBackward", "3x7_da_only", func(e *env) { testMSEBackward(e, 3, 7, false) })
	for _, n := range []int{1, 7, 100003} {
		add("SumSquares", fmt.Sprintf("n%d", n), func(e *env) { testSumSquares(e, n, 0) })
	}
	add("SumSquares", "n1000_nan", func(e *env) { testSumSquares(e, 1000, math.NaN()) })
	add("SumSquares", "n1000_inf", func(e *env) { testSumSquares(e, 1000, math.Inf(-1)) })
	for _, n := range []int{1, 7, 1000, 65537} {
		add("AdamW", fmt.Sprintf("n%d_3steps", n), func(e *env) { testAdamW(e, n) })
	}
	return cs
}

// MSE and AdamW work on F32 buffers whatever the dtype under test.

func testMSE(e *env, rows, cols int) {
	av, bv := e.randn(tensor.F32, rows*cols, 0, 1), e.randn(tensor.F32, rows*cols, 0.2, 1)
	want := make([]float64, rows)
	refMSE(want, f64(av), f64(bv), rows, cols)
	a, b, loss := e.in("a", tensor.F32, av), e.in("b", tensor.F32, bv), e.out(tensor.F32, rows)
	e.b.MSE(loss, a, b, rows, cols)
	e.checkInputs("MSE")
	e.check("MSE", "loss", e.get(loss), want, e.tol32)
}

func testMSEBackward(e *env, rows, cols int, withDB bool) {
	av, bv, gv := e.randn(tensor.F32, rows*cols, 0, 1), e.randn(tensor.F32, rows*cols, 0.2, 1), e.randn(tensor.F32, rows, 0, 1)
	ca, cb := make([]float64, rows*cols), make([]float64, rows*cols)
	refMSEBackward(ca, cb, f64(gv), f64(av), f64(bv), rows, cols)
	a, b, g := e.in("a", tensor.F32, av), e.in("b", tensor.F32, bv), e.in("g", tensor.F32, gv)
	da, wa := e.grad(tensor.F32, ca)
	var db tensor.Storage
	var wb []float64
	if withDB {
		db, wb = e.grad(tensor.F32, cb)
	}
	e.b.MSEBackward(da, db, g, a, b, rows, cols)
	e.checkInputs("MSEBackward")
	e.check("MSEBackward", "da (prefilled, must be added to)", e.get(da), wa, e.tol32)
	if withDB {
		e.check("MSEBackward", "db (prefilled, must be added to)", e.get(db), wb, e.tol32)
	}
}

// testSumSquares: Σx² of values in the dtype under test; a NaN or Inf
// planted in the middle must propagate.
func testSumSquares(e *env, n int, plant float64) {
	xv := e.data(n)
	if plant != 0 {
		xv[n/2] = float32(plant)
	}
	want := refSumSquares(f64(xv))
	x := e.in("x", e.dt, xv)
	got := e.b.SumSquares(x)
	e.checkInputs("SumSquares")
	switch {
	case math.IsNaN(want):
		if !math.IsNaN(got) {
			e.errorf("SumSquares of data holding a NaN = %g, want NaN", got)
		}
	case math.IsInf(want, 0):
		if !math.IsInf(got, 1) {
			e.errorf("SumSquares of data holding -Inf = %g, want +Inf", got)
		}
	case !(math.Abs(got-want) <= e.tol*want):
		e.errorf("SumSquares = %.10g, want %.10g (relative error %.3g > %.3g)", got, want, math.Abs(got-want)/want, e.tol)
	}
}

// testAdamW runs three steps with fresh gradients and compares param, m
// and v with the reference after each. The learning rate is large so that
// the update, not the unchanged part of param, dominates the comparison.
func testAdamW(e *env, n int) {
	pv := e.randn(tensor.F32, n, 0, 1)
	param := e.buf(tensor.F32, pv)
	m, v := e.buf(tensor.F32, make([]float32, n)), e.buf(tensor.F32, make([]float32, n))
	wp, wm, wv := f64(pv), make([]float64, n), make([]float64, n)
	for step := 1; step <= 3; step++ {
		p := tensor.AdamWParams{LR: 0.05, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, Step: step, GradScale: 0.5}
		gv := e.randn(tensor.F32, n, 0.1, 2)
		if step == 2 {
			p.WeightDecay, p.GradScale = 0, 1
		}
		grad := e.in(fmt.Sprintf("grad(step %d)", step), tensor.F32, gv)
		refAdamW(wp, f64(gv), wm, wv, p)
		e.b.AdamW(param, grad, m, v, p)
		e.checkInputs("AdamW")
		op := fmt.Sprintf("AdamW step %d", step)
		if !e.check(op, "param", e.get(param), wp, e.tol32) ||
			!e.check(op, "m", e.get(m), wm, e.tol32) ||
			!e.check(op, "v", e.get(v), wv, e.tol32) {
			return
		}
	}
}
