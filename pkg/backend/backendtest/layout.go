package backendtest

import (
	"fmt"

	"loco/pkg/tensor"
)

func layoutCases() []testCase {
	var cs []testCase
	add := func(op, shape string, f func(e *env)) {
		cs = append(cs, testCase{op, op + "/" + shape, f})
	}
	type pc struct{ shape, perm []int }
	for _, c := range []pc{
		{[]int{3, 5}, []int{1, 0}},
		{[]int{1, 7}, []int{1, 0}},
		{[]int{2, 3, 4}, []int{1, 0, 2}},
		{[]int{2, 3, 4}, []int{2, 0, 1}},
		{[]int{2, 3, 5, 7}, []int{0, 2, 1, 3}}, // [B,T,H,D] → [B,H,T,D]
		{[]int{2, 3, 5, 7}, []int{0, 2, 3, 1}}, // NCHW → NHWC
		{[]int{2, 3, 5, 7}, []int{3, 2, 1, 0}},
		{[]int{2, 3, 1, 4, 5}, []int{4, 0, 3, 1, 2}},
		{[]int{2, 1, 3, 2, 1, 3}, []int{5, 3, 1, 0, 4, 2}},
		{[]int{2, 3, 4}, []int{0, 1, 2}},          // identity
		{[]int{2, 256, 8, 40}, []int{0, 2, 1, 3}}, // medium: split heads
	} {
		for _, acc := range []bool{false, true} {
			shape, perm := c.shape, c.perm
			name := fmt.Sprintf("%s_perm%s", dims(shape...), dims(perm...))
			if acc {
				name += "_accumulate"
			}
			add("Permute", name, func(e *env) { testPermute(e, shape, perm, acc) })
		}
	}
	for _, s := range [][3]int{{1, 1, 1}, {3, 5, 7}, {2, 1, 9}, {64, 32, 32}} {
		nc, h, w := s[0], s[1], s[2]
		shape := dims(nc, h, w)
		add("Upsample2x", shape, func(e *env) { testUpsample(e, nc, h, w) })
		add("Upsample2xBackward", shape, func(e *env) { testUpsampleBackward(e, nc, h, w) })
	}
	for _, s := range [][5]int{
		{2, 5, 7, 3, 4},     // down, non-integer ratios
		{2, 5, 7, 11, 13},   // up, non-integer ratios
		{1, 4, 4, 8, 8},     // exactly 2×
		{1, 8, 6, 4, 3},     // exactly ½
		{1, 1, 1, 3, 2},     // from one pixel
		{3, 2, 9, 5, 9},     // one axis unchanged
		{3, 64, 64, 37, 23}, // medium, down
		{1, 17, 19, 64, 64}, // medium, up
	} {
		nc, h, w, oh, ow := s[0], s[1], s[2], s[3], s[4]
		add("ResizeBilinear", fmt.Sprintf("%s_to_%s", dims(nc, h, w), dims(oh, ow)), func(e *env) { testResize(e, nc, h, w, oh, ow) })
	}
	for _, c := range []struct {
		vocab, dim int
		ids        []int32
	}{
		{1, 1, []int32{0}},
		{11, 7, []int32{3, 0, 10, 3, 3, 7}},                  // repeated ids: the backward must add each
		{5, 40, []int32{4, 4, 4, 4}},                         // one id only
		{1000, 768, []int32{49406, 320, 999, 0, 320, 49407}}, // ids rewritten below to fit the vocab
	} {
		vocab, dim := c.vocab, c.dim
		ids := make([]int32, len(c.ids))
		for i, id := range c.ids {
			ids[i] = id % int32(vocab)
		}
		shape := fmt.Sprintf("vocab%d_dim%d_ids%d", vocab, dim, len(ids))
		add("Embedding", shape, func(e *env) { testEmbedding(e, vocab, dim, ids) })
		add("EmbeddingBackward", shape, func(e *env) { testEmbeddingBackward(e, vocab, dim, ids) })
	}
	return cs
}

func prod(v []int) int {
	n := 1
	for _, x := range v {
		n *= x
	}
	return n
}

func testPermute(e *env, shape, perm []int, acc bool) {
	n := prod(shape)
	xv := e.data(n)
	x := e.in("x", e.dt, xv)
	var y tensor.Storage
	var want []float64
	if acc {
		yv := e.data(n)
		y, want = e.buf(e.dt, yv), f64(yv)
	} else {
		y, want = e.out(e.dt, n), make([]float64, n)
	}
	refPermute(want, f64(xv), shape, perm, acc)
	// The backend gets its own copies of shape and perm; they must not change.
	s2, p2 := append([]int(nil), shape...), append([]int(nil), perm...)
	e.b.Permute(y, x, s2, p2, acc)
	e.checkInputs("Permute")
	if fmt.Sprint(s2, p2) != fmt.Sprint(shape, perm) {
		e.errorf("Permute modified its shape or perm argument: %v %v, was %v %v", s2, p2, shape, perm)
	}
	tol := 0.0
	if acc {
		tol = e.tol
	}
	e.check("Permute", "y", e.get(y), want, tol)
}

func testUpsample(e *env, nc, h, w int) {
	xv := e.data(nc * h * w)
	want := make([]float64, 4*nc*h*w)
	refUpsample2x(want, f64(xv), nc, h, w)
	x, y := e.in("x", e.dt, xv), e.out(e.dt, 4*nc*h*w)
	e.b.Upsample2x(y, x, nc, h, w)
	e.checkInputs("Upsample2x")
	e.check("Upsample2x", "y", e.get(y), want, 0)
}

func testUpsampleBackward(e *env, nc, h, w int) {
	dyv := e.data(4 * nc * h * w)
	contrib := make([]float64, nc*h*w)
	refUpsample2xBackward(contrib, f64(dyv), nc, h, w)
	dy := e.in("dy", e.dt, dyv)
	dx, want := e.grad(e.dt, contrib)
	e.b.Upsample2xBackward(dx, dy, nc, h, w)
	e.checkInputs("Upsample2xBackward")
	e.check("Upsample2xBackward", "dx (prefilled, must be added to)", e.get(dx), want, e.tol)
}

func testResize(e *env, nc, h, w, oh, ow int) {
	xv := e.data(nc * h * w)
	want := make([]float64, nc*oh*ow)
	refResizeBilinear(want, f64(xv), nc, h, w, oh, ow)
	x, y := e.in("x", e.dt, xv), e.out(e.dt, nc*oh*ow)
	e.b.ResizeBilinear(y, x, nc, h, w, oh, ow)
	e.checkInputs("ResizeBilinear")
	e.check("ResizeBilinear", "y", e.get(y), want, e.tol)
}

func testEmbedding(e *env, vocab, dim int, ids []int32) {
	tv := e.data(vocab * dim)
	want := make([]float64, len(ids)*dim)
	refEmbedding(want, f64(tv), ids, dim)
	table, y := e.in("table", e.dt, tv), e.out(e.dt, len(ids)*dim)
	idsCopy := append([]int32(nil), ids...)
	e.b.Embedding(y, table, idsCopy, dim)
	e.checkInputs("Embedding")
	e.check("Embedding", "y", e.get(y), want, 0)
}

func testEmbeddingBackward(e *env, vocab, dim int, ids []int32) {
	dyv := e.data(len(ids) * dim)
	contrib := make([]float64, vocab*dim)
	refEmbeddingBackward(contrib, f64(dyv), ids, dim)
	dy := e.in("dy", e.dt, dyv)
	dt, want := e.grad(e.dt, contrib)
	e.b.EmbeddingBackward(dt, dy, append([]int32(nil), ids...), dim)
	e.checkInputs("EmbeddingBackward")
	e.check("EmbeddingBackward", "dtable (prefilled, must be added to)", e.get(dt), want, e.tol)
}
