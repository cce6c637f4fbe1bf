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
//     at a time so that the scratch stays under 16 MiB; the input gradient
//     is a GEMM followed by col2im; 1×1 stride-1 unpadded convolutions are
//     plain GEMMs on the input.
//   - Attention is flash-style: query blocks of 64 rows against key blocks
//     with an online softmax, so at most one block of scores per worker
//     exists; it saves the log-sum-exp, and the backward pass recomputes
//     score blocks from it.
//   - Reductions (norm statistics, MSE, SumSquares) accumulate in float64.
//   - AdamW follows torch.optim.AdamW (decoupled weight decay, bias
//     correction), each element computed in float64 and rounded once.
//   - exp in float32 is a polynomial (about 1 ulp); erf goes through
//     math.Erf.
package cpu
