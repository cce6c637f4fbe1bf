// Package profile wraps a tensor.Backend and accounts the time of every
// operation, by op and shape class, to find where a training step goes.
//
// With SyncEach on, the wrapper synchronises the device before and after each
// operation, so each op's time is its device time plus one launch; the
// whole step gets slower, but the ranking is honest. With SyncEach off, the
// times are host-side (launch and Go overhead only) for an asynchronous
// backend, and the real times for the CPU backend.
package profile

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"loco/pkg/tensor"
)

// Stat is the accumulated cost of one op class.
type Stat struct {
	Calls int
	Total time.Duration
}

// Backend is a timing wrapper; methods it does not override pass through.
type Backend struct {
	tensor.Backend
	SyncEach bool
	stats    map[string]*Stat
}

// New wraps b.
func New(b tensor.Backend, sync bool) *Backend {
	return &Backend{Backend: b, SyncEach: sync, stats: map[string]*Stat{}}
}

// Reset clears the statistics.
func (p *Backend) Reset() { p.stats = map[string]*Stat{} }

func (p *Backend) time(key string) func() {
	if p.SyncEach {
		p.Backend.Sync()
	}
	t0 := time.Now()
	return func() {
		if p.SyncEach {
			p.Backend.Sync()
		}
		s := p.stats[key]
		if s == nil {
			s = &Stat{}
			p.stats[key] = s
		}
		s.Calls++
		s.Total += time.Since(t0)
	}
}

// Report writes the op classes sorted by total time, at most top lines (0: all).
func (p *Backend) Report(w io.Writer, top int) {
	type row struct {
		key string
		*Stat
	}
	var rows []row
	var total time.Duration
	for k, s := range p.stats {
		rows = append(rows, row{k, s})
		total += s.Total
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Total > rows[j].Total })
	if top > 0 && len(rows) > top {
		rows = rows[:top]
	}
	fmt.Fprintf(w, "%-48s %7s %10s %10s %6s\n", "op", "calls", "total ms", "mean µs", "share")
	for _, r := range rows {
		fmt.Fprintf(w, "%-48s %7d %10.2f %10.1f %5.1f%%\n", r.key, r.Calls, r.Total.Seconds()*1e3,
			r.Total.Seconds()*1e6/float64(r.Calls), 100*r.Total.Seconds()/total.Seconds())
	}
	fmt.Fprintf(w, "%-48s %7s %10.2f\n", "all ops", "", total.Seconds()*1e3)
}

func convKey(op string, c tensor.ConvParams) string {
	return fmt.Sprintf("%s %dx%d/s%d C%d→K%d %dx%d", op, c.R, c.S, c.StrideH, c.C, c.K, c.H, c.W)
}

func attnKey(op string, a tensor.AttnParams) string {
	return fmt.Sprintf("%s Tq%d Tk%d D%d", op, a.Tq, a.Tk, a.D)
}

func (p *Backend) Copy(dst, src tensor.Storage) {
	defer p.time("Copy/cast")()
	p.Backend.Copy(dst, src)
}

func (p *Backend) Fill(dst tensor.Storage, v float32) {
	defer p.time("Fill")()
	p.Backend.Fill(dst, v)
}

func (p *Backend) CopyStrided(dst, src tensor.Storage, c tensor.StridedCopy) {
	defer p.time("CopyStrided")()
	p.Backend.CopyStrided(dst, src, c)
}

func (p *Backend) Gemm(c, a, b tensor.Storage, g tensor.GemmParams) {
	defer p.time(fmt.Sprintf("Gemm %dx%dx%d", g.M, g.N, g.K))()
	p.Backend.Gemm(c, a, b, g)
}

func (p *Backend) Conv2D(y, x, w, bias tensor.Storage, c tensor.ConvParams) {
	defer p.time(convKey("Conv2D", c))()
	p.Backend.Conv2D(y, x, w, bias, c)
}

func (p *Backend) Conv2DBackwardData(dx, dy, w tensor.Storage, c tensor.ConvParams) {
	defer p.time(convKey("Conv2DBackwardData", c))()
	p.Backend.Conv2DBackwardData(dx, dy, w, c)
}

func (p *Backend) Conv2DBackwardFilter(dw, dbias, dy, x tensor.Storage, c tensor.ConvParams) {
	defer p.time(convKey("Conv2DBackwardFilter", c))()
	p.Backend.Conv2DBackwardFilter(dw, dbias, dy, x, c)
}

func (p *Backend) GroupNorm(y, mean, rstd, x, gamma, beta tensor.Storage, n tensor.NormParams) {
	defer p.time("GroupNorm")()
	p.Backend.GroupNorm(y, mean, rstd, x, gamma, beta, n)
}

func (p *Backend) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta tensor.Storage, n tensor.NormParams) {
	defer p.time("GroupNormBackward")()
	p.Backend.GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, n)
}

func (p *Backend) LayerNorm(y, mean, rstd, x, gamma, beta tensor.Storage, n tensor.NormParams) {
	defer p.time("LayerNorm")()
	p.Backend.LayerNorm(y, mean, rstd, x, gamma, beta, n)
}

func (p *Backend) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma tensor.Storage, n tensor.NormParams) {
	defer p.time("LayerNormBackward")()
	p.Backend.LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n)
}

func (p *Backend) Unary(op tensor.UnaryOp, y, x tensor.Storage) {
	defer p.time("Unary " + op.String())()
	p.Backend.Unary(op, y, x)
}

func (p *Backend) UnaryBackward(op tensor.UnaryOp, dx, dy, x tensor.Storage) {
	defer p.time("UnaryBackward " + op.String())()
	p.Backend.UnaryBackward(op, dx, dy, x)
}

func (p *Backend) GEGLU(y, x tensor.Storage, rows, half int) {
	defer p.time("GEGLU")()
	p.Backend.GEGLU(y, x, rows, half)
}

func (p *Backend) GEGLUBackward(dx, dy, x tensor.Storage, rows, half int) {
	defer p.time("GEGLUBackward")()
	p.Backend.GEGLUBackward(dx, dy, x, rows, half)
}

func (p *Backend) Softmax(y, x tensor.Storage, rows, cols int) {
	defer p.time("Softmax")()
	p.Backend.Softmax(y, x, rows, cols)
}

func (p *Backend) SoftmaxBackward(dx, dy, y tensor.Storage, rows, cols int) {
	defer p.time("SoftmaxBackward")()
	p.Backend.SoftmaxBackward(dx, dy, y, rows, cols)
}

func (p *Backend) Attention(o, lse, q, k, v tensor.Storage, a tensor.AttnParams) {
	defer p.time(attnKey("Attention", a))()
	p.Backend.Attention(o, lse, q, k, v, a)
}

func (p *Backend) AttentionBackward(dq, dk, dv, do, q, k, v, o, lse tensor.Storage, a tensor.AttnParams) {
	defer p.time(attnKey("AttentionBackward", a))()
	p.Backend.AttentionBackward(dq, dk, dv, do, q, k, v, o, lse, a)
}

func (p *Backend) Binary(op tensor.BinaryOp, y, a, b tensor.Storage, c tensor.Broadcast) {
	defer p.time("Binary " + op.String())()
	p.Backend.Binary(op, y, a, b, c)
}

func (p *Backend) BinaryBackward(op tensor.BinaryOp, da, db, dy, a, b tensor.Storage, c tensor.Broadcast) {
	defer p.time("BinaryBackward " + op.String())()
	p.Backend.BinaryBackward(op, da, db, dy, a, b, c)
}

func (p *Backend) Scale(y, x tensor.Storage, alpha float32) {
	defer p.time("Scale")()
	p.Backend.Scale(y, x, alpha)
}

func (p *Backend) Axpy(y, x tensor.Storage, alpha float32) {
	defer p.time("Axpy")()
	p.Backend.Axpy(y, x, alpha)
}

func (p *Backend) Permute(y, x tensor.Storage, shape, perm []int, accumulate bool) {
	defer p.time("Permute")()
	p.Backend.Permute(y, x, shape, perm, accumulate)
}

func (p *Backend) Upsample2x(y, x tensor.Storage, nc, h, w int) {
	defer p.time("Upsample2x")()
	p.Backend.Upsample2x(y, x, nc, h, w)
}

func (p *Backend) Upsample2xBackward(dx, dy tensor.Storage, nc, h, w int) {
	defer p.time("Upsample2xBackward")()
	p.Backend.Upsample2xBackward(dx, dy, nc, h, w)
}

func (p *Backend) Embedding(y, table tensor.Storage, ids []int32, dim int) {
	defer p.time("Embedding")()
	p.Backend.Embedding(y, table, ids, dim)
}

func (p *Backend) EmbeddingBackward(dtable, dy tensor.Storage, ids []int32, dim int) {
	defer p.time("EmbeddingBackward")()
	p.Backend.EmbeddingBackward(dtable, dy, ids, dim)
}

func (p *Backend) MSE(loss, a, b tensor.Storage, rows, cols int) {
	defer p.time("MSE")()
	p.Backend.MSE(loss, a, b, rows, cols)
}

func (p *Backend) MSEBackward(da, db, g, a, b tensor.Storage, rows, cols int) {
	defer p.time("MSEBackward")()
	p.Backend.MSEBackward(da, db, g, a, b, rows, cols)
}

func (p *Backend) AdamW(param, grad, m, v tensor.Storage, a tensor.AdamWParams) {
	defer p.time("AdamW")()
	p.Backend.AdamW(param, grad, m, v, a)
}

func (p *Backend) SumSquares(x tensor.Storage) float64 {
	defer p.time("SumSquares")()
	return p.Backend.SumSquares(x)
}

var _ tensor.Backend = (*Backend)(nil)

// Ops is the number of operations recorded and their count per op name
// (the first word of each class: "Gemm", "Fill", "Copy/cast", ...).
func (p *Backend) Ops() (total int, byOp map[string]int) {
	byOp = map[string]int{}
	for k, s := range p.stats {
		name, _, _ := strings.Cut(k, " ")
		byOp[name] += s.Calls
		total += s.Calls
	}
	return total, byOp
}
