package backendtest

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"

	"loco/pkg/half"
	"loco/pkg/tensor"
)

// tb is the part of testing.TB the checks use, so that the self-test can run
// them against a recorder.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// env is one test case's world: the backend, the dtype under test, a
// generator seeded from the case name, the storages it allocated and the
// inputs that must come back unchanged.
type env struct {
	t      tb
	b      tensor.Backend
	dt     tensor.DType // storage dtype of the op's inputs and outputs
	tol    float64      // relative L2 tolerance for dt
	tol32  float64      // relative L2 tolerance for the F32-only ops
	name   string
	rng    *rand.Rand
	owned  []tensor.Storage
	inputs []input
	failed bool
}

type input struct {
	name string
	s    tensor.Storage
	vals []float32
}

func newEnv(t tb, b tensor.Backend, o Options, name string) *env {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte(o.DType.String()))
	seed := h.Sum64()
	e := &env{t: t, b: b, dt: o.DType, tol: o.Tol, tol32: o.Tol, name: name,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if e.tol == 0 {
		e.tol = defaultTol(o.DType)
	}
	if o.DType != tensor.F32 || e.tol32 == 0 {
		e.tol32 = defaultTol(tensor.F32)
	}
	return e
}

func defaultTol(dt tensor.DType) float64 {
	switch dt {
	case tensor.F16:
		return 3e-3
	case tensor.BF16:
		return 2e-2
	}
	return 1e-5
}

// errorf reports a failure of this case.
func (e *env) errorf(format string, args ...any) {
	e.t.Helper()
	e.failed = true
	e.t.Errorf("%s: "+format, append([]any{e.name}, args...)...)
}

// release frees everything the case allocated.
func (e *env) release() {
	for _, s := range e.owned {
		e.b.Free(s)
	}
	e.owned = nil
}

// roundTo returns v rounded to the nearest value of dt (ties to even).
func roundTo(dt tensor.DType, v float32) float32 {
	switch dt {
	case tensor.F16:
		return half.F16ToF32(half.F32ToF16(v))
	case tensor.BF16:
		return half.BF16ToF32(half.F32ToBF16(v))
	}
	return v
}

func roundAll(dt tensor.DType, v []float32) []float32 {
	for i := range v {
		v[i] = roundTo(dt, v[i])
	}
	return v
}

// randn returns n normal values with the given mean and deviation, rounded
// to dt. (A zero is possible but has probability ~0; tests never use all-zero
// data.)
func (e *env) randn(dt tensor.DType, n int, mean, dev float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + dev*e.rng.NormFloat64())
	}
	return roundAll(dt, v)
}

// data is the usual input: n standard normal values in the dtype under test.
func (e *env) data(n int) []float32 { return e.randn(e.dt, n, 0, 1) }

func (e *env) alloc(dt tensor.DType, n int) tensor.Storage {
	s := e.b.Alloc(dt, n)
	e.owned = append(e.owned, s)
	if s.Len() != n || s.DType() != dt {
		e.errorf("Alloc(%v, %d) returned storage of %v × %d", dt, n, s.DType(), s.Len())
	}
	return s
}

// buf allocates storage holding vals (already representable in dt).
func (e *env) buf(dt tensor.DType, vals []float32) tensor.Storage {
	s := e.alloc(dt, len(vals))
	e.b.Upload(s, vals)
	return s
}

// in allocates an input holding vals and registers it for the unchanged check.
func (e *env) in(name string, dt tensor.DType, vals []float32) tensor.Storage {
	s := e.buf(dt, vals)
	e.inputs = append(e.inputs, input{name, s, vals})
	return s
}

// out allocates an output of n elements pre-filled with NaN, so that
// elements the op does not write show up.
func (e *env) out(dt tensor.DType, n int) tensor.Storage {
	return e.buf(dt, nans(n))
}

func nans(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

// grad allocates a gradient output pre-filled with random values of the
// same RMS as contrib, and returns it with the expected result prefill +
// contrib (backward halves add).
func (e *env) grad(dt tensor.DType, contrib []float64) (tensor.Storage, []float64) {
	rms := math.Sqrt(sumSq(contrib) / float64(max(len(contrib), 1)))
	if rms == 0 || math.IsNaN(rms) {
		rms = 1
	}
	pre := e.randn(dt, len(contrib), 0, rms)
	want := f64(pre)
	for i := range want {
		want[i] += contrib[i]
	}
	return e.buf(dt, pre), want
}

func (e *env) get(s tensor.Storage) []float32 {
	v := make([]float32, s.Len())
	e.b.Download(v, s)
	return v
}

// sync waits for the op and reports a device error.
func (e *env) sync(op string) {
	e.t.Helper()
	if err := e.b.Sync(); err != nil {
		e.errorf("%s: Sync: %v", op, err)
	}
}

// checkInputs downloads every registered input and fails unless it is
// bit-for-bit what was uploaded.
func (e *env) checkInputs(op string) {
	e.t.Helper()
	e.sync(op)
	for _, in := range e.inputs {
		got := e.get(in.s)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(in.vals[i]) {
				e.errorf("%s modified its input %s: element [%d] was %g, is %g", op, in.name, i, in.vals[i], got[i])
				break
			}
		}
	}
}

// check compares an output of op with the reference by relative L2 error
// ‖got−want‖/‖want‖ (the RMS of got−want when want is all zero). Any NaN or
// Inf in got where want is finite fails. On failure it reports the metric,
// the worst element and the first values.
func (e *env) check(op, what string, got []float32, want []float64, tol float64) bool {
	e.t.Helper()
	if len(got) != len(want) {
		e.errorf("%s: %s has %d elements, want %d", op, what, len(got), len(want))
		return false
	}
	var num, den float64
	worst, worstErr := -1, -1.0
	bad, firstBad := 0, -1
	for i, g := range got {
		w := want[i]
		gf := float64(g)
		if math.IsNaN(gf) || math.IsInf(gf, 0) {
			if !(math.IsInf(w, 0) && gf == w) {
				bad++
				if firstBad < 0 {
					firstBad = i
				}
			}
			continue
		}
		d := gf - w
		num += d * d
		den += w * w
		if math.Abs(d) > worstErr {
			worst, worstErr = i, math.Abs(d)
		}
	}
	if bad > 0 {
		e.errorf("%s: %s has %d NaN/Inf elements (unwritten or invalid), first at [%d]: got %g, want %g; %s",
			op, what, bad, firstBad, got[firstBad], want[firstBad], firstValues(got, want))
		return false
	}
	metric := math.Sqrt(num / den)
	kind := "relative L2 error"
	if den == 0 {
		metric = math.Sqrt(num / float64(max(len(got), 1)))
		kind = "RMS error (want is zero)"
	}
	if !(metric <= tol) {
		limit := fmt.Sprintf("tolerance %.3g", tol)
		if tol == 0 {
			limit = "0 (must be exact)"
		}
		e.errorf("%s: %s %s %.3g > %s (%d elements); worst at [%d]: got %.7g, want %.7g; %s",
			op, what, kind, metric, limit, len(got), worst, got[worst], want[worst], firstValues(got, want))
		return false
	}
	return true
}

func firstValues(got []float32, want []float64) string {
	n := min(len(got), 6)
	var g, w strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&g, " %.6g", got[i])
		fmt.Fprintf(&w, " %.6g", want[i])
	}
	return fmt.Sprintf("first values: got [%s ] want [%s ]", g.String(), w.String())
}

func f64(v []float32) []float64 {
	r := make([]float64, len(v))
	for i, x := range v {
		r[i] = float64(x)
	}
	return r
}

// f32 rounds reference values to what dt can hold (used for saved values and
// forward outputs handed to a backward half).
func f32(dt tensor.DType, v []float64) []float32 {
	r := make([]float32, len(v))
	for i, x := range v {
		r[i] = roundTo(dt, float32(x))
	}
	return r
}

func sumSq(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return s
}
