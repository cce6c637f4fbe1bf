package cpu

import (
	"fmt"
	"testing"

	"loco/pkg/tensor"
)

// convDirect is the textbook loop nest in float64.
func convDirect(x, w, bias []float64, p tensor.ConvParams) []float64 {
	P, Q := p.P(), p.Q()
	y := make([]float64, p.N*p.K*P*Q)
	for n := 0; n < p.N; n++ {
		for k := 0; k < p.K; k++ {
			for i := 0; i < P; i++ {
				for j := 0; j < Q; j++ {
					var s float64
					if bias != nil {
						s = bias[k]
					}
					for c := 0; c < p.C; c++ {
						for r := 0; r < p.R; r++ {
							for q := 0; q < p.S; q++ {
								ih, iw := i*p.StrideH-p.PadH+r, j*p.StrideW-p.PadW+q
								if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
									continue
								}
								s += x[((n*p.C+c)*p.H+ih)*p.W+iw] * w[((k*p.C+c)*p.R+r)*p.S+q]
							}
						}
					}
					y[((n*p.K+k)*P+i)*Q+j] = s
				}
			}
		}
	}
	return y
}

var convCases = []tensor.ConvParams{
	{N: 2, C: 3, H: 9, W: 7, K: 5, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
	{N: 1, C: 4, H: 9, W: 8, K: 6, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
	{N: 2, C: 3, H: 8, W: 9, K: 4, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 0, PadW: 0},
	{N: 2, C: 5, H: 6, W: 7, K: 3, R: 1, S: 1, StrideH: 1, StrideW: 1},
	{N: 1, C: 5, H: 6, W: 7, K: 3, R: 1, S: 1, StrideH: 2, StrideW: 2},
	{N: 1, C: 2, H: 5, W: 11, K: 3, R: 4, S: 3, StrideH: 1, StrideW: 3, PadH: 2, PadW: 0},
	{N: 1, C: 3, H: 3, W: 3, K: 2, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 0, PadW: 0},
	{N: 2, C: 2, H: 6, W: 5, K: 3, R: 5, S: 5, StrideH: 1, StrideW: 1, PadH: 2, PadW: 2}, // "same", pad 2
	{N: 1, C: 3, H: 4, W: 6, K: 2, R: 3, S: 1, StrideH: 1, StrideW: 1, PadH: 1, PadW: 0}, // "same", R ≠ S
	{N: 1, C: 2, H: 2, W: 3, K: 2, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}, // image smaller than a band edge
	{N: 2, C: 3, H: 7, W: 6, K: 4, R: 4, S: 2, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}, // even kernel: output 6×7, flipped padding 2×0
}

func TestConv(t *testing.T) {
	for _, cap := range []int{1 << 22, 40} { // 40 forces one-row bands
		for ci, p := range convCases {
			t.Run(fmt.Sprintf("cap%d/case%d", cap, ci), func(t *testing.T) {
				old := colCap
				colCap = cap
				defer func() { colCap = old }()
				testConv(t, p)
			})
		}
	}
}

func testConv(t *testing.T, p tensor.ConvParams) {
	b := New()
	r := newRand(uint64(p.C*1000 + p.H*10 + p.StrideH))
	P, Q := p.P(), p.Q()
	nx, nw, ny := p.N*p.C*p.H*p.W, p.K*p.C*p.R*p.S, p.N*p.K*P*Q
	x, w, bias, dy := randn(r, nx), randn(r, nw), randn(r, p.K), randn(r, ny)
	xs, ws, bs, dys := up(b, x), up(b, w), up(b, bias), up(b, dy)

	y := nanStorage(b, ny)
	b.Conv2D(y, xs, ws, bs, p)
	want := convDirect(to64(x), to64(w), to64(bias), p)
	near(t, "conv2d", Float32s(y), want, 1e-6)

	// Backward halves add: start from random values and subtract them.
	dx0, dw0, db0 := randn(r, nx), randn(r, nw), randn(r, p.K)
	dx, dw, db := up(b, dx0), up(b, dw0), up(b, db0)
	b.Conv2DBackwardData(dx, dys, ws, p)
	b.Conv2DBackwardFilter(dw, db, dys, xs, p)
	diff := func(s tensor.Storage, s0 []float32) []float64 {
		d := to64(Float32s(s))
		for i := range d {
			d[i] -= float64(s0[i])
		}
		return d
	}
	gx, gw, gb := diff(dx, dx0), diff(dw, dw0), diff(db, db0)
	// Adjoint identities: <conv(x,w), dy> = <x, dx> = <w, dw>.
	yNoBias := convDirect(to64(x), to64(w), nil, p)
	lhs := dot64(yNoBias, to64(dy))
	if e := abs(dot64(to64(x), gx)-lhs) / abs(lhs); e > 1e-5 {
		t.Errorf("<x, dx> = %v, <conv(x), dy> = %v (rel %.2g)", dot64(to64(x), gx), lhs, e)
	}
	if e := abs(dot64(to64(w), gw)-lhs) / abs(lhs); e > 1e-5 {
		t.Errorf("<w, dw> = %v, <conv(x), dy> = %v (rel %.2g)", dot64(to64(w), gw), lhs, e)
	}
	// And element by element: dx[i] = <conv(e_i, w), dy> for a few i.
	for _, i := range []int{0, nx / 2, nx - 1} {
		e := make([]float64, nx)
		e[i] = 1
		want := dot64(convDirect(e, to64(w), nil, p), to64(dy))
		if abs(gx[i]-want) > 1e-5*(1+abs(want)) {
			t.Errorf("dx[%d] = %v, want %v", i, gx[i], want)
		}
	}
	for _, i := range []int{0, nw / 3, nw - 1} {
		e := make([]float64, nw)
		e[i] = 1
		want := dot64(convDirect(to64(x), e, nil, p), to64(dy))
		if abs(gw[i]-want) > 1e-5*(1+abs(want)) {
			t.Errorf("dw[%d] = %v, want %v", i, gw[i], want)
		}
	}
	for k := 0; k < p.K; k++ {
		var s float64
		for n := 0; n < p.N; n++ {
			for i := 0; i < P*Q; i++ {
				s += float64(dy[(n*p.K+k)*P*Q+i])
			}
		}
		if abs(gb[k]-s) > 1e-5*(1+abs(s)) {
			t.Errorf("dbias[%d] = %v, want %v", k, gb[k], s)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestConvBadShapes(t *testing.T) {
	b := New()
	p := convCases[0]
	x := b.Alloc(tensor.F32, p.N*p.C*p.H*p.W)
	w := b.Alloc(tensor.F32, p.K*p.C*p.R*p.S+1)
	y := b.Alloc(tensor.F32, p.N*p.K*p.P()*p.Q())
	wantOpError(t, "conv2d", func() { b.Conv2D(y, x, w, nil, p) })
	w = b.Alloc(tensor.F32, p.K*p.C*p.R*p.S)
	q := p
	q.StrideH = 0
	wantOpError(t, "conv2d", func() { b.Conv2D(y, x, w, nil, q) })
	wantOpError(t, "conv2d_backward_data", func() { b.Conv2DBackwardData(y, x, w, p) })
}
