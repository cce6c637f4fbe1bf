package backendtest

import (
	"fmt"
	"math"

	"loco/pkg/tensor"
)

func memoryCases() []testCase {
	var cs []testCase
	add := func(op, shape string, f func(e *env)) {
		cs = append(cs, testCase{op, op + "/" + shape, f})
	}
	for _, n := range []int{1, 7, 4099} {
		add("Upload", fmt.Sprintf("round_trip_n%d", n), func(e *env) { testRoundTrip(e, n) })
		add("Fill", fmt.Sprintf("n%d", n), func(e *env) { testFill(e, n) })
		add("Copy", fmt.Sprintf("n%d", n), func(e *env) { testCopy(e, e.dt, e.dt, n) })
	}
	add("Copy", "cast_F32_to_dtype_n1001", func(e *env) { testCopy(e, e.dt, tensor.F32, 1001) })
	add("Copy", "cast_dtype_to_F32_n1001", func(e *env) { testCopy(e, tensor.F32, e.dt, 1001) })
	add("View", "n23", testView)
	add("Free", "realloc", testFreeRealloc)
	type sc struct {
		what string
		p    tensor.StridedCopy
		nd   int // dst length
		ns   int // src length
	}
	for _, c := range []sc{
		{"gather_rows", tensor.StridedCopy{Rows: 3, Cols: 5, DstOff: 2, DstStride: 11, SrcOff: 1, SrcStride: 7}, 30, 22},
		{"one_element", tensor.StridedCopy{Rows: 1, Cols: 1, DstOff: 4, SrcOff: 2}, 5, 3},
		// concat of a [2,3,4,4] tensor into channels 3..5 of a [2,8,4,4] one
		{"concat_channels", tensor.StridedCopy{Rows: 2, Cols: 3 * 16, DstOff: 3 * 16, DstStride: 8 * 16, SrcOff: 0, SrcStride: 3 * 16}, 2 * 8 * 16, 2 * 3 * 16},
		// split: channels 5..7 of a [2,8,4,4] tensor out
		{"split_channels", tensor.StridedCopy{Rows: 2, Cols: 3 * 16, DstOff: 0, DstStride: 3 * 16, SrcOff: 5 * 16, SrcStride: 8 * 16}, 2 * 3 * 16, 2 * 8 * 16},
		{"contiguous_n1000", tensor.StridedCopy{Rows: 1, Cols: 1000}, 1000, 1000},
	} {
		for _, acc := range []bool{false, true} {
			p := c.p
			p.Accumulate = acc
			nd, ns := c.nd, c.ns
			name := c.what
			if acc {
				name += "_accumulate"
			}
			add("CopyStrided", name, func(e *env) { testCopyStrided(e, p, nd, ns) })
		}
	}
	return cs
}

// testRoundTrip: Upload rounds to the dtype (nearest, ties to even) and
// Download returns exactly the stored values.
func testRoundTrip(e *env, n int) {
	raw := e.randn(tensor.F32, n, 0, 3)
	raw[0] = 1 + 1.0/(1<<11) + 1.0/(1<<20) // just above a tie: rounds up in F16, down in BF16
	s := e.alloc(e.dt, n)
	e.b.Upload(s, raw)
	want := roundAll(e.dt, append([]float32(nil), raw...))
	got := e.get(s)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			e.errorf("Upload/Download %v: element [%d]: uploaded %g, downloaded %g, want %g (round to nearest even)",
				e.dt, i, raw[i], got[i], want[i])
			return
		}
	}
}

func testFill(e *env, n int) {
	s := e.buf(e.dt, e.data(n))
	const v = 0.3
	e.b.Fill(s, v)
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(roundTo(e.dt, v))
	}
	e.sync("Fill")
	e.check("Fill", "dst", e.get(s), want, 0)
}

// testCopy copies (and casts) a src of dtype from into a dst of dtype to:
// exact, rounding to nearest even when narrowing.
func testCopy(e *env, to, from tensor.DType, n int) {
	sv := e.randn(from, n, 0, 3)
	src, dst := e.in("src", from, sv), e.out(to, n)
	e.b.Copy(dst, src)
	e.checkInputs("Copy")
	want := make([]float64, n)
	for i, v := range sv {
		want[i] = float64(roundTo(to, v))
	}
	e.check(fmt.Sprintf("Copy(%v ← %v)", to, from), "dst", e.get(dst), want, 0)
}

// testView: a view reads and writes its window of the parent and nothing
// else; views of views compose; ops accept views.
func testView(e *env) {
	const n = 23
	pv := e.data(n)
	parent := e.buf(e.dt, pv)
	v := e.b.View(parent, 5, 11)
	if v.Len() != 11 || v.DType() != e.dt {
		e.errorf("View(parent, 5, 11) has %v × %d, want %v × 11", v.DType(), v.Len(), e.dt)
		return
	}
	want := f64(pv)
	got := e.get(v)
	e.check("View", "downloaded view", got, want[5:16], 0)

	nv := e.data(11)
	e.b.Upload(v, nv)
	for i := range nv {
		want[5+i] = float64(nv[i])
	}
	e.check("View", "parent after Upload into the view [5,16)", e.get(parent), want, 0)

	vv := e.b.View(v, 2, 3) // elements [7,10) of the parent
	e.b.Fill(vv, 2)
	for i := 7; i < 10; i++ {
		want[i] = 2
	}
	e.sync("Fill")
	e.check("View", "parent after Fill of a view of a view [7,10)", e.get(parent), want, 0)

	// An op writing through a view: Scale of the view [5,16) into [12,23).
	src := e.b.View(parent, 5, 11)
	dst := e.b.View(parent, 12, 11)
	tmp := e.out(e.dt, 11)
	e.b.Copy(tmp, src)
	e.b.Scale(dst, tmp, 2)
	window := append([]float64(nil), want[5:16]...)
	for i, v := range window {
		want[12+i] = 2 * v
	}
	e.sync("Scale")
	e.check("View", "parent after Scale into the view [12,23)", e.get(parent), want, e.tol)

	// Freeing a view is a no-op: the parent keeps its values.
	e.b.Free(vv)
	e.b.Free(v)
	e.check("View", "parent after freeing its views", e.get(parent), want, e.tol)
}

// testFreeRealloc: storage freed and allocated again (the backend's cache)
// is usable and independent of live storage.
func testFreeRealloc(e *env) {
	live := e.data(100)
	keep := e.buf(e.dt, live)
	for round := 0; round < 3; round++ {
		s := e.b.Alloc(e.dt, 100)
		vals := e.data(100)
		e.b.Upload(s, vals)
		e.check("Alloc after Free", fmt.Sprintf("new storage (round %d)", round), e.get(s), f64(vals), 0)
		e.b.Free(s)
	}
	e.check("Alloc after Free", "storage kept alive", e.get(keep), f64(live), 0)
}

func testCopyStrided(e *env, p tensor.StridedCopy, nd, ns int) {
	sv, dv := e.data(ns), e.data(nd)
	src, dst := e.in("src", e.dt, sv), e.buf(e.dt, dv)
	want := f64(dv)
	for r := 0; r < p.Rows; r++ {
		for c := 0; c < p.Cols; c++ {
			di, si := p.DstOff+r*p.DstStride+c, p.SrcOff+r*p.SrcStride+c
			if p.Accumulate {
				want[di] += float64(sv[si])
			} else {
				want[di] = float64(sv[si])
			}
		}
	}
	e.b.CopyStrided(dst, src, p)
	e.checkInputs("CopyStrided")
	tol := 0.0
	if p.Accumulate {
		tol = e.tol
	}
	e.check("CopyStrided", "dst (outside the rows must be untouched)", e.get(dst), want, tol)
}
