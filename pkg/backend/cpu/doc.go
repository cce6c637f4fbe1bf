// Package cpu is loco's reference compute backend: every operation of
// tensor.Backend as plain Go loops over float32 slices, with matrix
// products (and through them convolution and attention) handed to the
// blocked assembly SGEMM in package sgemm.
//
// Storage is float32 only; Alloc of F16 or BF16 panics with an
// *tensor.OpError. Float32s exposes the slice under a Storage for host
// code and tests. Freed blocks are kept on a free list keyed by length, so
// a training step that allocates the same sizes every step allocates
// nothing after the first; Trim drops the list.
//
// Conventions are those of tensor.Backend: row-major PyTorch layouts,
// forward halves overwrite their outputs, backward halves add into their
// gradients (nil gradients are skipped), saved statistics are float32.
// Every method checks its buffer lengths against its dimensions on entry
// and panics with an *tensor.OpError naming the op and the sizes.
//
// The element loops are generic over float32 and float64 (type float), so
// that the same code runs in float64 in the gradient checks. Work is split
// over at most Threads() goroutines by contiguous ranges of rows (one
// parallel-for helper); small ops run on the calling goroutine.
//
// Algorithms:
//   - Conv2D lowers to GEMM through im2col, built one band of output rows
//     at a time so that the scratch stays under 16 MiB (for stride-1
//     "same" convolutions each band row is one shifted copy of the image);
//     the input gradient is a GEMM followed by col2im; 1×1 stride-1
//     unpadded convolutions are plain GEMMs on the input.
//   - Attention is flash-style: query blocks of 64 rows against key blocks
//     of 128–256 with an online softmax, so at most one block of scores
//     per worker exists; it saves the log-sum-exp, and the backward pass
//     recomputes score blocks from it. Products with a head-sized output
//     are computed transposed (D×T) to suit the SGEMM's 14×32 micro-tile.
//   - Reductions (norm statistics, MSE, SumSquares) accumulate in float64.
//   - AdamW follows torch.optim.AdamW (decoupled weight decay, bias
//     correction), each element computed in float64 and rounded once.
//
// Transcendentals in float32: exp is a degree-6 polynomial after range
// reduction (relative error below 3e-7); GELU's Φ(x) = ½·erfc(−x/√2) uses
// the Chebyshev erfc fit of Numerical Recipes (relative error below 1e-6
// down to x = −6, so the negative tail keeps its relative accuracy). On
// amd64 with AVX-512 the hot loops (exp of a score row, row max, sigmoid
// for SiLU and QuickGELU, Φ, axpy) run in assembly (vec_amd64.s);
// LOCO_NOASM=1 or the build tag noasm selects the Go loops, which the
// tests also run. The float64 instances of the generic loops use package
// math throughout.
package cpu
