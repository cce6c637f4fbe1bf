// Package dry is a tensor.Backend that allocates nothing and computes
// nothing: every operation only checks its lengths and returns. Wrapped in
// pkg/backend/profile it counts the operations a model issues — at the real
// sizes and in any dtype, in milliseconds and without a device — which is
// what a launch-bound GPU step costs (see BENCHMARKS.md).
//
// Downloads read zeros and SumSquares returns 0, so only code whose control
// flow does not depend on tensor values can run on it.
package dry

import (
	"fmt"

	"loco/pkg/tensor"
)

// storage is a length and a dtype.
type storage struct {
	dt tensor.DType
	n  int
}

func (s *storage) DType() tensor.DType { return s.dt }
func (s *storage) Len() int            { return s.n }

// Backend is the dry backend. Its zero value is ready to use.
type Backend struct{}

// New returns a dry backend.
func New() *Backend { return &Backend{} }

var _ tensor.Backend = (*Backend)(nil)

func (*Backend) Name() string { return "dry" }

func (*Backend) Alloc(dt tensor.DType, n int) tensor.Storage {
	if n < 0 {
		panic(&tensor.OpError{Op: "Alloc", Msg: fmt.Sprintf("negative length %d", n)})
	}
	dt.Size() // panics on an unknown dtype
	return &storage{dt: dt, n: n}
}

func (*Backend) Free(tensor.Storage) {}

func (*Backend) View(s tensor.Storage, off, n int) tensor.Storage {
	if off < 0 || n < 0 || off+n > s.Len() {
		panic(&tensor.OpError{Op: "View", Msg: fmt.Sprintf("[%d, %d) of %d elements", off, off+n, s.Len())})
	}
	return &storage{dt: s.DType(), n: n}
}

func (*Backend) Upload(dst tensor.Storage, src []float32) { same("Upload", dst.Len(), len(src)) }

func (*Backend) Download(dst []float32, src tensor.Storage) {
	same("Download", len(dst), src.Len())
	clear(dst)
}

func (*Backend) Fill(tensor.Storage, float32) {}

func (*Backend) Copy(dst, src tensor.Storage) { same("Copy", dst.Len(), src.Len()) }

func (*Backend) CopyStrided(dst, src tensor.Storage, p tensor.StridedCopy) {}

func (*Backend) Sync() error { return nil }

func (*Backend) Gemm(c, a, b tensor.Storage, p tensor.GemmParams) {}

func (*Backend) Conv2D(y, x, w, bias tensor.Storage, p tensor.ConvParams) {
	same("Conv2D", y.Len(), p.N*p.K*p.P()*p.Q())
	same("Conv2D", x.Len(), p.N*p.C*p.H*p.W)
	same("Conv2D", w.Len(), p.K*p.C*p.R*p.S)
}

func (*Backend) Conv2DBackwardData(dx, dy, w tensor.Storage, p tensor.ConvParams)          {}
func (*Backend) Conv2DBackwardFilter(dw, dbias, dy, x tensor.Storage, p tensor.ConvParams) {}
func (*Backend) GroupNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
}
func (*Backend) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta tensor.Storage, p tensor.NormParams) {
}
func (*Backend) LayerNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {}
func (*Backend) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma tensor.Storage, p tensor.NormParams) {
}
func (*Backend) Unary(op tensor.UnaryOp, y, x tensor.Storage) { same("Unary", y.Len(), x.Len()) }
func (*Backend) UnaryBackward(op tensor.UnaryOp, dx, dy, x tensor.Storage) {
	same("UnaryBackward", dx.Len(), x.Len())
}
func (*Backend) GEGLU(y, x tensor.Storage, rows, half int)              {}
func (*Backend) GEGLUBackward(dx, dy, x tensor.Storage, rows, half int) {}
func (*Backend) Softmax(y, x tensor.Storage, rows, cols int)            {}
func (*Backend) SoftmaxBackward(dx, dy, y tensor.Storage, rows, cols int) {
}
func (*Backend) Attention(o, lse, q, k, v tensor.Storage, p tensor.AttnParams) {}
func (*Backend) AttentionBackward(dq, dk, dv, do, q, k, v, o, lse tensor.Storage, p tensor.AttnParams) {
}
func (*Backend) Binary(op tensor.BinaryOp, y, a, b tensor.Storage, p tensor.Broadcast) {
	same("Binary", y.Len(), a.Len())
}
func (*Backend) BinaryBackward(op tensor.BinaryOp, da, db, dy, a, b tensor.Storage, p tensor.Broadcast) {
}
func (*Backend) Scale(y, x tensor.Storage, alpha float32) { same("Scale", y.Len(), x.Len()) }
func (*Backend) Axpy(y, x tensor.Storage, alpha float32)  { same("Axpy", y.Len(), x.Len()) }
func (*Backend) Permute(y, x tensor.Storage, shape, perm []int, accumulate bool) {
	same("Permute", y.Len(), x.Len())
}
func (*Backend) Upsample2x(y, x tensor.Storage, nc, h, w int)                  {}
func (*Backend) Upsample2xBackward(dx, dy tensor.Storage, nc, h, w int)        {}
func (*Backend) ResizeBilinear(y, x tensor.Storage, nc, h, w, oh, ow int)      {}
func (*Backend) Embedding(y, table tensor.Storage, ids []int32, dim int)       {}
func (*Backend) EmbeddingBackward(dt, dy tensor.Storage, ids []int32, dim int) {}
func (*Backend) MSE(loss, a, b tensor.Storage, rows, cols int)                 {}
func (*Backend) MSEBackward(da, db, g, a, b tensor.Storage, rows, cols int)    {}
func (*Backend) SumSquares(x tensor.Storage) float64                           { return 0 }
func (*Backend) AdamW(param, grad, m, v tensor.Storage, p tensor.AdamWParams) {
	same("AdamW", param.Len(), grad.Len())
}

// same panics with an *OpError when two lengths that must agree do not.
func same(op string, a, b int) {
	if a != b {
		panic(&tensor.OpError{Op: op, Msg: fmt.Sprintf("lengths %d and %d differ", a, b)})
	}
}
