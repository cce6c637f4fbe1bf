package tensor

import "fmt"

// DType is the element type of a Storage.
type DType uint8

// The element types a backend may store. The CPU backend computes and stores
// F32 only; the CUDA backend also stores F16 and BF16 (accumulating in F32).
const (
	F32 DType = iota + 1
	F16
	BF16
)

// Size is the number of bytes per element.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	panic(fmt.Sprintf("tensor: unknown dtype %d", d))
}

func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case BF16:
		return "BF16"
	}
	return fmt.Sprintf("DType(%d)", d)
}

// Storage is a contiguous run of elements owned by a backend. Its concrete
// type is private to the backend that made it; passing one backend's Storage
// to another backend is a programming error.
type Storage interface {
	DType() DType
	Len() int // elements
}

// Backend is the op-level compute interface. Every tensor operation of the
// engine is one method here (a forward half) plus the backward halves it
// needs. Conventions, for every method:
//
//   - Layout is row-major, PyTorch order (N,C,H,W; conv weights K,C,R,S).
//   - Argument order: outputs, saved values, inputs, parameters, dimensions.
//   - Forward halves overwrite their outputs. Backward halves ADD into their
//     gradient outputs (dx += ...), so gradient accumulation is free and the
//     caller zeroes gradient buffers once. A nil gradient output is skipped.
//   - Saved values (GroupNorm/LayerNorm mean and rstd, attention logsumexp)
//     are always F32.
//   - Inputs are never modified. An output may alias an input only where the
//     method says so.
//   - Backends check what is cheap to check (lengths against dimensions) and
//     panic with an *OpError naming the op; the tensor package validates
//     shapes before it calls a backend, so such a panic is a bug.
//   - Methods may run asynchronously on a device; Sync waits for all of them
//     and reports the first device error.
type Backend interface {
	Name() string

	// Alloc returns uninitialised storage of n elements. Backends cache freed
	// blocks, so Alloc after Free of a similar size is cheap.
	Alloc(dt DType, n int) Storage
	// Free returns storage made by Alloc to the backend. Freeing a view is a no-op.
	Free(s Storage)
	// View is elements [off, off+n) of s, sharing its memory.
	View(s Storage, off, n int) Storage
	// Upload converts host float32 values into dst (len(src) == dst.Len()).
	Upload(dst Storage, src []float32)
	// Download converts src into host float32 values (len(dst) == src.Len()).
	Download(dst []float32, src Storage)
	// Fill sets every element of dst to v.
	Fill(dst Storage, v float32)
	// Copy copies src into dst (same length), converting the dtype (cast).
	Copy(dst, src Storage)
	// CopyStrided copies p.Rows rows of p.Cols contiguous elements:
	// dst[DstOff + r*DstStride + c] (+)= src[SrcOff + r*SrcStride + c].
	// It implements concat, split and slicing. Same dtype only.
	CopyStrided(dst, src Storage, p StridedCopy)
	// Sync waits for queued work and returns the first device error.
	Sync() error

	// Gemm: for each batch item i,
	//   C_i = Alpha*op(A_i)*op(B_i) + Beta*C_i
	// with A_i at a[i*StrideA:], etc. Beta == 0 means C is not read.
	Gemm(c, a, b Storage, p GemmParams)

	// Conv2D: y[N,K,P,Q] = conv(x[N,C,H,W], w[K,C,R,S]) + bias[K] (bias may be nil).
	Conv2D(y, x, w, bias Storage, p ConvParams)
	// Conv2DBackwardData: dx[N,C,H,W] += conv_transpose(dy, w), or, with
	// p.Overwrite, dx = conv_transpose(dy, w) without reading dx (a fresh
	// gradient buffer needs no zero-fill).
	Conv2DBackwardData(dx, dy, w Storage, p ConvParams)
	// Conv2DBackwardFilter: dw[K,C,R,S] += corr(x, dy); dbias[K] += sum of dy
	// over N,P,Q (either may be nil).
	Conv2DBackwardFilter(dw, dbias, dy, x Storage, p ConvParams)

	// GroupNorm over x[N,C,HW] with G groups; gamma, beta [C] (may be nil:
	// no affine). Saves mean, rstd [N*G]. If SiLU is set, y = silu(norm(x)).
	GroupNorm(y, mean, rstd, x, gamma, beta Storage, p NormParams)
	// GroupNormBackward: dx += ..., dgamma += ..., dbeta += ... (nil to skip).
	// If p.SiLU is set the forward was fused with SiLU and dy is the
	// gradient of its output.
	GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta Storage, p NormParams)
	// LayerNorm over the last dim: x[Rows, Cols], gamma, beta [Cols].
	// Saves mean, rstd [Rows]. (p.Groups and p.SiLU are unused.)
	LayerNorm(y, mean, rstd, x, gamma, beta Storage, p NormParams)
	LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma Storage, p NormParams)

	// Unary: y = f(x) elementwise (y may alias x).
	Unary(op UnaryOp, y, x Storage)
	// UnaryBackward: dx += dy * f'(x).
	UnaryBackward(op UnaryOp, dx, dy, x Storage)
	// GEGLU: x[rows, 2*half] -> y[rows, half] = x[:, :half] * gelu(x[:, half:])
	// (value first, gate second, exact erf GELU).
	GEGLU(y, x Storage, rows, half int)
	GEGLUBackward(dx, dy, x Storage, rows, half int)
	// Softmax over the last dim of x[rows, cols].
	Softmax(y, x Storage, rows, cols int)
	// SoftmaxBackward: dx += y * (dy - sum(dy*y)).
	SoftmaxBackward(dx, dy, y Storage, rows, cols int)

	// Attention: q[B,Tq,H,D], k,v[B,Tk,H,D] -> o[B,Tq,H,D],
	// o = softmax(q k^T * Scale (+ causal mask)) v per (batch, head).
	// Saves lse[B,H,Tq] (F32), the log-sum-exp of each score row.
	// Implementations must not materialise more than a bounded block of scores.
	Attention(o, lse, q, k, v Storage, p AttnParams)
	// AttentionBackward: dq, dk, dv += ... (any may be nil); with
	// p.Overwrite, dq, dk, dv = ... without reading them.
	AttentionBackward(dq, dk, dv, do, q, k, v, o, lse Storage, p AttnParams)

	// Binary: y[i] = a[i] op b[(i/p.Inner) % p.BLen] for i < a.Len().
	// y may alias a. This is broadcasting of b over leading and trailing dims
	// of a: bias over the last dim (Inner 1), per-channel over NCHW
	// (Inner H*W), per (n,c) (Inner H*W, BLen N*C), same shape (Inner 1,
	// BLen a.Len()), scalar (BLen 1).
	Binary(op BinaryOp, y, a, b Storage, p Broadcast)
	// BinaryBackward: da += dy*∂/∂a, db[j] += Σ_{i→j} dy*∂/∂b (nil to skip).
	BinaryBackward(op BinaryOp, da, db, dy, a, b Storage, p Broadcast)
	// Scale: y = alpha*x (y may alias x).
	Scale(y, x Storage, alpha float32)
	// Axpy: y += alpha*x.
	Axpy(y, x Storage, alpha float32)

	// Permute: y = x.permute(perm) made contiguous, rank ≤ 6.
	// If accumulate, y += instead of y =.
	Permute(y, x Storage, shape, perm []int, accumulate bool)
	// Upsample2x: nearest-neighbour, x[NC,H,W] -> y[NC,2H,2W].
	Upsample2x(y, x Storage, nc, h, w int)
	// Upsample2xBackward: dx[NC,H,W] += sum of the 4 copies in dy.
	Upsample2xBackward(dx, dy Storage, nc, h, w int)
	// ResizeBilinear (forward only): x[NC,H,W] -> y[NC,OH,OW], PyTorch
	// F.interpolate(mode="bilinear", align_corners=false) semantics.
	ResizeBilinear(y, x Storage, nc, h, w, oh, ow int)
	// Embedding: y[len(ids), dim] = table[ids[i], :].
	Embedding(y, table Storage, ids []int32, dim int)
	// EmbeddingBackward: dtable[ids[i], :] += dy[i, :].
	EmbeddingBackward(dtable, dy Storage, ids []int32, dim int)

	// MSE per row: loss[r] = mean_c (a[r,c] - b[r,c])^2, loss F32 [rows].
	MSE(loss, a, b Storage, rows, cols int)
	// MSEBackward: da[r,c] += g[r] * 2*(a-b)/cols; db gets the negative
	// (nil to skip). g is F32 [rows].
	MSEBackward(da, db, g, a, b Storage, rows, cols int)
	// SumSquares returns Σ x² in float64 on the host (NaN/Inf propagate), for
	// gradient norms and finiteness checks. It synchronises.
	SumSquares(x Storage) float64

	// AdamW updates param, m, v (all F32, same length) from grad (F32) in
	// place, torch.optim.AdamW semantics (decoupled weight decay, bias
	// correction with the 1-based Step). grad is multiplied by GradScale
	// first (1/loss-scale, times a clipping factor).
	AdamW(param, grad, m, v Storage, p AdamWParams)
}

// StridedCopy describes Backend.CopyStrided.
type StridedCopy struct {
	Rows, Cols        int
	DstOff, DstStride int
	SrcOff, SrcStride int
	Accumulate        bool // dst += src instead of dst = src
}

// GemmParams describes Backend.Gemm. op(A) is M×K: A is M×K (row stride LDA ≥ K)
// or, with TransA, K×M (LDA ≥ M). op(B) is K×N: B is K×N (LDB ≥ N) or, with
// TransB, N×K (LDB ≥ K). C is M×N (LDC ≥ N). A zero LDx means tight.
// Batch 0 is treated as 1; a zero StrideA or StrideB broadcasts that operand.
type GemmParams struct {
	TransA, TransB            bool
	M, N, K                   int
	LDA, LDB, LDC             int
	Batch                     int
	StrideA, StrideB, StrideC int
	Alpha, Beta               float32
}

// Tight fills zero leading dimensions with their tight values.
func (p GemmParams) Tight() GemmParams {
	if p.LDA == 0 {
		p.LDA = p.K
		if p.TransA {
			p.LDA = p.M
		}
	}
	if p.LDB == 0 {
		p.LDB = p.N
		if p.TransB {
			p.LDB = p.K
		}
	}
	if p.LDC == 0 {
		p.LDC = p.N
	}
	if p.Batch == 0 {
		p.Batch = 1
	}
	return p
}

// ConvParams describes a 2-D convolution: input [N,C,H,W], weight [K,C,R,S],
// output [N,K,P,Q] with P = (H + 2*PadH - R)/StrideH + 1 (likewise Q).
// Padding is zero and symmetric; asymmetric padding (the VAE downsampler)
// is done by the caller with an explicit pad.
type ConvParams struct {
	N, C, H, W       int
	K, R, S          int
	StrideH, StrideW int
	PadH, PadW       int
	Overwrite        bool // Conv2DBackwardData only: write dx instead of adding into it
}

// P is the output height.
func (p ConvParams) P() int { return (p.H+2*p.PadH-p.R)/p.StrideH + 1 }

// Q is the output width.
func (p ConvParams) Q() int { return (p.W+2*p.PadW-p.S)/p.StrideW + 1 }

// NormParams describes GroupNorm (x viewed as [N, C, HW], Groups groups of
// C/Groups channels) and LayerNorm (x viewed as [Rows, Cols]).
type NormParams struct {
	N, C, HW, Groups int // GroupNorm
	Rows, Cols       int // LayerNorm
	Eps              float32
	SiLU             bool // GroupNorm only: y = silu(norm(x))
}

// AttnParams describes scaled-dot-product attention on [B,T,H,D] tensors.
type AttnParams struct {
	B, H, Tq, Tk, D int
	Scale           float32 // usually 1/sqrt(D)
	Causal          bool    // query i sees keys 0..i (requires Tq == Tk)
	Overwrite       bool    // AttentionBackward only: write dq, dk, dv instead of adding into them
}

// Broadcast describes how b is indexed in Backend.Binary: b[(i/Inner) % BLen].
type Broadcast struct {
	Inner, BLen int
}

// UnaryOp names an elementwise function. (The Op prefix keeps the names
// free for the tensor-level functions SiLU, GELU, Add, ...)
type UnaryOp uint8

const (
	OpSiLU      UnaryOp = iota + 1 // x * sigmoid(x)
	OpGELU                         // x * Φ(x), exact erf form
	OpQuickGELU                    // x * sigmoid(1.702 x)
)

func (op UnaryOp) String() string {
	switch op {
	case OpSiLU:
		return "silu"
	case OpGELU:
		return "gelu"
	case OpQuickGELU:
		return "quick_gelu"
	}
	return fmt.Sprintf("UnaryOp(%d)", op)
}

// BinaryOp names an elementwise binary function.
type BinaryOp uint8

const (
	OpAdd BinaryOp = iota + 1
	OpMul
)

func (op BinaryOp) String() string {
	switch op {
	case OpAdd:
		return "add"
	case OpMul:
		return "mul"
	}
	return fmt.Sprintf("BinaryOp(%d)", op)
}

// AdamWParams are the hyper-parameters of one AdamW step.
type AdamWParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	Step                               int     // 1-based
	GradScale                          float32 // grad is multiplied by this first; must be > 0 (1: none)
}

// OpError is the panic value of an operation given arguments it cannot
// accept, and the error Catch returns for it.
type OpError struct {
	Op  string
	Msg string
}

func (e *OpError) Error() string { return e.Op + ": " + e.Msg }

// Errorf panics with an *OpError for op.
func Errorf(op, format string, args ...any) {
	panic(&OpError{Op: op, Msg: fmt.Sprintf(format, args...)})
}

// Catch runs fn and returns the *OpError (or other error value) it panicked
// with, so that model code can use plain expressions while callers at the
// edge get an error. Runtime errors (bugs) are re-panicked.
func Catch(fn func()) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if e, ok := r.(error); ok {
			if _, isRuntime := r.(interface{ RuntimeError() }); !isRuntime {
				err = e
				return
			}
		}
		panic(r)
	}()
	fn()
	return nil
}
