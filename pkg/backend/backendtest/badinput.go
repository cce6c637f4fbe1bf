package backendtest

import (
	"fmt"

	"loco/pkg/tensor"
)

// Backends check lengths against dimensions and panic with an
// *tensor.OpError naming the op (not an index error deep in a loop, and not
// a silent write past a buffer).
func badInputCases() []testCase {
	var cs []testCase
	add := func(op, what string, call func(e *env)) {
		cs = append(cs, testCase{"BadInput", "BadInput/" + op + "_" + what, func(e *env) { expectOpError(e, op, what, call) }})
	}
	add("Upload", "src_longer_than_dst", func(e *env) { e.b.Upload(e.alloc(e.dt, 3), e.data(4)) })
	add("Copy", "lengths_differ", func(e *env) { e.b.Copy(e.alloc(e.dt, 5), e.buf(e.dt, e.data(6))) })
	add("Gemm", "c_too_short", func(e *env) {
		p := tensor.GemmParams{M: 4, N: 5, K: 3, Alpha: 1}
		e.b.Gemm(e.alloc(e.dt, 19), e.buf(e.dt, e.data(12)), e.buf(e.dt, e.data(15)), p)
	})
	add("Gemm", "a_too_short_for_batch", func(e *env) {
		p := tensor.GemmParams{M: 4, N: 5, K: 3, Batch: 2, StrideA: 12, StrideC: 20, Alpha: 1}
		e.b.Gemm(e.alloc(e.dt, 40), e.buf(e.dt, e.data(12)), e.buf(e.dt, e.data(15)), p)
	})
	add("Conv2D", "y_wrong_length", func(e *env) {
		p := tensor.ConvParams{N: 1, C: 2, H: 5, W: 5, K: 3, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
		e.b.Conv2D(e.alloc(e.dt, 3*5*5-1), e.buf(e.dt, e.data(50)), e.buf(e.dt, e.data(54)), nil, p)
	})
	add("GroupNorm", "x_wrong_length", func(e *env) {
		p := tensor.NormParams{N: 1, C: 4, HW: 3, Groups: 2, Eps: 1e-5}
		e.b.GroupNorm(e.alloc(e.dt, 13), e.alloc(tensor.F32, 2), e.alloc(tensor.F32, 2), e.buf(e.dt, e.data(13)), nil, nil, p)
	})
	add("Attention", "o_wrong_length", func(e *env) {
		p := tensor.AttnParams{B: 1, H: 2, Tq: 3, Tk: 3, D: 4, Scale: 0.5}
		e.b.Attention(e.alloc(e.dt, 23), e.alloc(tensor.F32, 6), e.buf(e.dt, e.data(24)), e.buf(e.dt, e.data(24)), e.buf(e.dt, e.data(24)), p)
	})
	add("Binary", "b_shorter_than_BLen", func(e *env) {
		e.b.Binary(tensor.OpAdd, e.alloc(e.dt, 12), e.buf(e.dt, e.data(12)), e.buf(e.dt, e.data(3)), tensor.Broadcast{Inner: 3, BLen: 4})
	})
	add("Permute", "perm_not_a_permutation", func(e *env) {
		e.b.Permute(e.alloc(e.dt, 6), e.buf(e.dt, e.data(6)), []int{2, 3}, []int{1, 1}, false)
	})
	// A zero GradScale (the field left unset) would zero every gradient.
	add("AdamW", "grad_scale_zero", func(e *env) {
		e.b.AdamW(e.alloc(tensor.F32, 4), e.buf(tensor.F32, e.data(4)), e.alloc(tensor.F32, 4), e.alloc(tensor.F32, 4),
			tensor.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1})
	})
	add("Embedding", "id_out_of_range", func(e *env) {
		e.b.Embedding(e.alloc(e.dt, 8), e.buf(e.dt, e.data(12)), []int32{0, 3}, 4)
	})
	return cs
}

// expectOpError runs call and fails unless it panics with an *tensor.OpError
// that names an op.
func expectOpError(e *env, op, what string, call func(e *env)) {
	e.t.Helper()
	var r any
	func() {
		defer func() { r = recover() }()
		call(e)
		e.b.Sync()
	}()
	switch err := r.(type) {
	case nil:
		e.errorf("%s with %s: no panic; want an *tensor.OpError naming the op", op, what)
	case *tensor.OpError:
		if err.Op == "" || err.Msg == "" {
			e.errorf("%s with %s: OpError %q names no op or says nothing", op, what, err.Error())
		}
	default:
		e.errorf("%s with %s: panicked with %T (%v); want an *tensor.OpError naming the op", op, what, r, fmt.Sprint(r))
	}
}
