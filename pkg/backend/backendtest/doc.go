// Package backendtest is the conformance suite that every tensor.Backend
// runs: the CPU backend in its own tests, the CUDA backend on a GPU machine.
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, cpu.New(), backendtest.Options{DType: tensor.F32})
//	}
//
// Run tests every Backend method, forward and backward halves, at several
// shapes each (tiny and odd sizes, the awkward cases of each op, and one
// medium SD-like shape) against an independent float64 reference kept in
// this package (ref.go): plain loops over the definitions, deliberately not
// the CPU backend's code. Every backward half of the reference is itself
// checked against central finite differences of its forward half (the
// package's own tests), so the chain is: finite differences → float64
// reference → backend.
//
// The rules each case enforces:
//
//   - Inputs are fresh normal random values (never zeros), seeded from the
//     case name and dtype, so a failure reproduces. For F16/BF16 the values
//     are rounded to the dtype on the host first and the reference is
//     computed from exactly those values.
//   - Forward outputs are pre-filled with NaN, so an element the op does not
//     write shows up. Any NaN or Inf in an output fails.
//   - Gradient outputs are pre-filled with random values of the size of the
//     expected contribution, and the expected result is prefill +
//     contribution: backward halves add. Nil gradient outputs are tested
//     where the interface allows them.
//   - Every input is downloaded after the call and must be bit-for-bit
//     unchanged.
//   - Outputs are compared by relative L2 error ‖got−want‖/‖want‖ against
//     Options.Tol (default 1e-5 for F32, 3e-3 for F16, 2e-2 for BF16; the
//     F32-only ops MSE and AdamW always use the F32 default unless the dtype
//     under test is F32 and Tol is set). Copies, casts, fills, views,
//     permutes without accumulation, upsampling and embedding lookups must
//     be exact, and so must Upload/Download (round to nearest, ties to even).
//   - Arguments whose lengths do not match their dimensions (a short C, a
//     wrong-sized conv output, an embedding id past the table, ...) must make
//     the backend panic with an *tensor.OpError naming the op.
//   - A failure names the case and the output and prints the metric, the
//     worst element (index, got, want) and the first values.
//
// Saved values (norm mean and rstd, attention log-sum-exp) are F32, and so
// are MSE and AdamW buffers, whatever the dtype under test. Backward cases
// are given the reference's saved values, so a backward half is tested on
// its own.
//
// Benchmark runs each op at Stable Diffusion 1.5 sizes and reports GFLOP/s
// (GEMM, convolution, attention) or GB/s (the memory-bound ops), with the
// backend synchronised inside the timed loop.
package backendtest
