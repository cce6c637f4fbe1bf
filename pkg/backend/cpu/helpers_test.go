package cpu

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"loco/pkg/tensor"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x10c0)) }

// randn returns n values uniform in [-1, 1) (never all zero).
func randn(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*r.Float64() - 1)
	}
	return s
}

func to64(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

// up makes backend storage holding a copy of s.
func up(b *Backend, s []float32) tensor.Storage {
	st := b.Alloc(tensor.F32, len(s))
	b.Upload(st, s)
	return st
}

// nanStorage is storage of n NaNs, so that unwritten outputs show.
func nanStorage(b *Backend, n int) tensor.Storage {
	st := b.Alloc(tensor.F32, n)
	b.Fill(st, float32(math.NaN()))
	return st
}

func relL2(got []float32, want []float64) (float64, int) {
	var num, den, worst float64
	wi := -1
	for i, w := range want {
		d := float64(got[i]) - w
		if math.IsNaN(d) {
			return math.Inf(1), i
		}
		num += d * d
		den += w * w
		if math.Abs(d) > worst {
			worst, wi = math.Abs(d), i
		}
	}
	if den == 0 {
		den = 1
	}
	return math.Sqrt(num / den), wi
}

// near fails t when got is farther than tol (relative L2) from want,
// printing the worst element.
func near(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	e, i := relL2(got, want)
	if !(e <= tol) {
		t.Fatalf("%s: relative L2 error %.3g > %.3g; worst [%d] got %v want %v; first got %v want %v",
			what, e, tol, i, got[i], want[i], got[:min(4, len(got))], want[:min(4, len(want))])
	}
}

// wantOpError runs fn and checks that it panics with an *tensor.OpError
// for op.
func wantOpError(t *testing.T, op string, fn func()) {
	t.Helper()
	err := tensor.Catch(fn)
	var oe *tensor.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: want *tensor.OpError, got %v", op, err)
	}
	if oe.Op != op {
		t.Fatalf("OpError names op %q, want %q (%v)", oe.Op, op, oe)
	}
}

// fdGrad returns the central finite-difference gradient of f at x.
func fdGrad(x []float64, f func() float64) []float64 {
	g := make([]float64, len(x))
	const h = 1e-6
	for i := range x {
		old := x[i]
		x[i] = old + h
		fp := f()
		x[i] = old - h
		fm := f()
		x[i] = old
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

// closeF64 fails when a and b differ by more than tol relative L2.
func closeF64(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	g := make([]float32, 0)
	_ = g
	var num, den float64
	for i := range want {
		d := got[i] - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den == 0 {
		den = 1
	}
	if e := math.Sqrt(num / den); !(e <= tol) {
		t.Fatalf("%s: relative L2 error %.3g > %.3g; got %v want %v", what, e, tol, got[:min(5, len(got))], want[:min(5, len(want))])
	}
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func randn64(r *rand.Rand, n int) []float64 { return to64(randn(r, n)) }
