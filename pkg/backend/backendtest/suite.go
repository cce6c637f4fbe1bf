package backendtest

import (
	"fmt"
	"runtime/debug"
	"testing"

	"loco/pkg/tensor"
)

// Options selects what a backend is tested with.
type Options struct {
	DType tensor.DType // storage dtype of the inputs/outputs under test (F32, F16, BF16); saved values and MSE/AdamW stay F32
	Tol   float64      // relative L2 tolerance; 0 = the default for DType (F32 1e-5, F16 3e-3, BF16 2e-2)
}

func (o Options) withDefaults() Options {
	if o.DType == 0 {
		o.DType = tensor.F32
	}
	return o
}

// testCase is one op at one shape. op is the Backend method under test; name
// is op/shape and is also the seed of the case's random inputs.
type testCase struct {
	op   string
	name string
	run  func(e *env)
}

// cases lists every test case of the suite, grouped by op.
func cases() []testCase {
	var cs []testCase
	for _, group := range [][]testCase{
		memoryCases(),
		gemmCases(),
		convCases(),
		normCases(),
		elementwiseCases(),
		attentionCases(),
		layoutCases(),
		lossCases(),
		badInputCases(),
	} {
		cs = append(cs, group...)
	}
	return cs
}

// Run tests every method of b against the float64 reference: one subtest
// per op and shape (named op/shape), each on fresh random inputs in
// o.DType.
func Run(t *testing.T, b tensor.Backend, o Options) {
	o = o.withDefaults()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) { runCase(t, b, o, c) })
	}
}

// runCase runs one case, turning a panic into a failure so that one broken
// op does not hide the others. It reports whether the case passed.
func runCase(t tb, b tensor.Backend, o Options, c testCase) (ok bool) {
	e := newEnv(t, b, o, c.name)
	defer func() {
		if r := recover(); r != nil {
			e.errorf("%s panicked: %v\n%s", c.op, r, debug.Stack())
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					e.errorf("freeing the case's storage panicked: %v", r)
				}
			}()
			e.release()
		}()
		ok = !e.failed
	}()
	c.run(e)
	return
}

// dims formats integers as 2x3x4 for case names.
func dims(v ...int) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += "x"
		}
		s += fmt.Sprint(x)
	}
	return s
}
