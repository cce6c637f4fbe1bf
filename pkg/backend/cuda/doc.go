// Package cuda is the NVIDIA GPU implementation of tensor.Backend.
//
// It calls the CUDA driver API, cuBLAS and NVRTC through run-time loading
// of their shared libraries (github.com/ebitengine/purego): no cgo, no
// build tag, no CUDA headers. The same binary runs on machines without a
// GPU, where New returns an error naming the library it could not load and
// every folder it looked in. Libraries are searched in LOCO_CUDA_LIB_DIR
// (colon-separated), the loader's default path, /usr/local/cuda/lib64 and
// friends, and the nvidia/*/lib folders of Python installations (PyTorch's
// CUDA wheels); sonames newest first (libcublas.so.13, .12, .11, ...).
//
// Threading: New locks the calling goroutine to its OS thread and makes the
// device's primary context current there. Every method also pins the
// calling goroutine and makes the context current for the duration of its
// driver calls, so the backend may be called from another goroutine, but
// never from two at once.
//
// Errors: every driver, NVRTC and cuBLAS status is checked at once; a bad
// status panics with an *tensor.OpError naming the op and the call (the
// engine's convention; tensor.Catch turns it into an error). Kernels run
// asynchronously on one stream; Sync waits and reports a device error.
// LOCO_CUDA_SYNC=1 synchronises after every launch, so that a fault is
// reported by the op that caused it.
//
// Kernels are CUDA C sources in kernels/ (embedded), compiled by NVRTC for
// the device's architecture at first use (real code when the NVRTC knows
// the architecture, PTX for the newest it knows otherwise) and cached on
// disk under os.UserCacheDir()/loco/cuda (LOCO_CUDA_CACHE overrides), keyed
// by a hash of the source, the options, the target and the NVRTC version.
// F16 and BF16 are storage types only: every kernel loads into float,
// computes in float and rounds once on store (round to nearest even).
//
// Memory: a caching allocator keeps freed blocks in size classes (powers of
// two to 1 MiB, then eight classes per octave), so Alloc after Free costs
// no driver call. All work runs on one stream, which orders a freed block's
// last use before its next.
//
// Ops: GEMM through cublasGemmStridedBatchedEx (fp32 accumulation, tensor
// cores for fp16/bf16; row-major handled once by computing Cᵀ = Bᵀ·Aᵀ);
// convolution as im2col + GEMM (backward data as GEMM + col2im, backward
// filter as im2col + GEMM); attention as fused online-softmax kernels
// (forward, and a backward in two race-free passes: dq per query row,
// dk/dv per key row), never storing a score matrix; tensor-core flash
// kernels for F16/BF16 head dims up to 160. Backward halves add into their
// gradient outputs without atomics, or write them (ConvParams.Overwrite,
// AttnParams.Overwrite). GroupNorm splits large groups over several blocks
// (LOCO_CUDA_GROUPNORM=simple forces one block per group, as before).
//
// CUDA graphs: BeginCapture/EndCapture record the stream's work into a
// Graph that Launch replays (graph.go says which calls a capture refuses
// and which memory survives a replay).
package cuda
