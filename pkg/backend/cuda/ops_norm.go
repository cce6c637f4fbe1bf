package cuda

import (
	"fmt"
	"math"
	"os"
	"sync/atomic"

	"loco/pkg/tensor"
)

// GroupNorm has two kernel sets (kernels/norm.cu): the simple one, one
// block per (n, group), and the split one, several blocks per group with
// partial statistics in a small F32 workspace. One block per group leaves
// most of a large GPU idle when N*Groups is small (SD 1.5 at batch 3: 96
// groups of up to 80k elements on 132 SMs), so groups large enough to cut
// into two or more chunks take the split kernels.
const (
	gnChunk       = 4096 // target elements per block of the split kernels
	gnMinChunk    = 1024 // fewest elements per block when splitting further to fill the GPU
	gnBlocksPerSM = 4    // blocks per SM the split is sized to reach
	gnPiece       = 1024 // target elements per warp in the backward partial sums
)

// GroupNorm kernel choice (SetGroupNormPath, LOCO_CUDA_GROUPNORM).
const (
	gnAuto      int32 = iota // split kernels for groups of two or more chunks
	gnSimple                 // always one block per group
	gnSplit                  // always the split kernels, chunks sized as in gnAuto
	gnSplitTiny              // always split, into chunks of 37 and pieces of 7 elements (tests)
)

var gnPathNames = []string{gnAuto: "auto", gnSimple: "simple", gnSplit: "split", gnSplitTiny: "split-tiny"}

var gnPath atomic.Int32

// LOCO_CUDA_GROUPNORM=simple forces the one-block-per-group kernels (an
// unknown value is reported on stderr and ignored).
func init() {
	if v := os.Getenv("LOCO_CUDA_GROUPNORM"); v != "" {
		if _, err := SetGroupNormPath(v); err != nil {
			fmt.Fprintf(os.Stderr, "cuda: LOCO_CUDA_GROUPNORM: %v; using auto\n", err)
		}
	}
}

// SetGroupNormPath chooses the GroupNorm kernels for every backend of the
// process and returns the previous choice: "auto" (the default: split
// kernels for large groups), "simple" (one block per group, as before the
// split kernels), "split" (always split, also small groups) or
// "split-tiny" (always split into chunks of a few dozen elements, so that
// small test shapes cross chunk boundaries). LOCO_CUDA_GROUPNORM sets the
// starting value.
func SetGroupNormPath(path string) (prev string, err error) {
	for i, name := range gnPathNames {
		if name == path {
			return gnPathNames[gnPath.Swap(int32(i))], nil
		}
	}
	return gnPathNames[gnPath.Load()], fmt.Errorf("unknown GroupNorm path %q (want auto, simple, split or split-tiny)", path)
}

// gnPlan is how the split kernels cut a GroupNorm: each group's cpg*HW
// elements into chunks blocks of chunk consecutive elements (the last one
// shorter, none empty), and each channel's HW elements into pieces warps
// of piece elements (backward partial sums).
type gnPlan struct{ chunk, chunks, piece, pieces int }

// groupNormPlan reports whether the split kernels take GroupNorm p, and how.
func (b *Backend) groupNormPlan(p tensor.NormParams) (gnPlan, bool) {
	path := gnPath.Load()
	cnt := p.C / p.Groups * p.HW
	if path == gnSimple || cnt < 1 || cnt > math.MaxInt32 {
		return gnPlan{}, false
	}
	chunk, piece := 37, 7
	if path != gnSplitTiny {
		s := ceilDiv(cnt, gnChunk)
		if ng, want := p.N*p.Groups, gnBlocksPerSM*b.sms; ng*s < want {
			s = max(s, min(ceilDiv(want, ng), cnt/gnMinChunk))
		}
		if s < 2 && path == gnAuto {
			return gnPlan{}, false
		}
		chunk = ceilDiv(cnt, s)
		piece = ceilDiv(p.HW, ceilDiv(p.HW, gnPiece))
	}
	return gnPlan{chunk: chunk, chunks: ceilDiv(cnt, chunk), piece: piece, pieces: ceilDiv(p.HW, piece)}, true
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func (b *Backend) GroupNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	const op = "cuda.GroupNorm"
	yb, mb, rb, xb, gb, bb := buf(op, y), buf(op, mean), buf(op, rstd), buf(op, x), buf(op, gamma), buf(op, beta)
	n := p.N * p.C * p.HW
	if p.Groups <= 0 || p.C%p.Groups != 0 {
		tensor.Errorf(op, "%d channels in %d groups", p.C, p.Groups)
	}
	same(op, n, yb, xb)
	if xb.n != n || yb.n != n {
		tensor.Errorf(op, "x has %d and y %d elements, want %d (N %d, C %d, HW %d)", xb.n, yb.n, n, p.N, p.C, p.HW)
	}
	same(op, p.C, xb, gb, bb)
	requireF32(op, mb, rb)
	same(op, p.N*p.Groups, mb, rb)
	if p.N*p.Groups == 0 {
		return
	}
	s := sfx(xb.dt)
	if pl, ok := b.groupNormPlan(p); ok {
		part := b.scratch(op, 8*p.N*p.Groups*pl.chunks) // mean and M2 per chunk
		defer b.unscratch(part)
		cfg := launchCfg{grid: [3]int{p.N * p.Groups * pl.chunks, 1, 1}, block: [3]int{256, 1, 1}}
		b.launch(op, "norm", "groupnorm_split_stats_"+s, cfg, devPtr(part), xb, p.C, p.HW, p.Groups, pl.chunk, pl.chunks)
		b.launch(op, "norm", "groupnorm_split_apply_"+s, cfg, yb, mb, rb, devPtr(part), xb, gb, bb,
			p.C, p.HW, p.Groups, pl.chunk, pl.chunks, p.Eps, p.SiLU)
		return
	}
	cfg := launchCfg{grid: [3]int{p.N * p.Groups, 1, 1}, block: [3]int{256, 1, 1}}
	b.launch(op, "norm", "groupnorm_"+s, cfg, yb, mb, rb, xb, gb, bb, p.C, p.HW, p.Groups, p.Eps, p.SiLU)
}

func (b *Backend) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta tensor.Storage, p tensor.NormParams) {
	const op = "cuda.GroupNormBackward"
	dxb, dgb, dbb, dyb, xb := buf(op, dx), buf(op, dgamma), buf(op, dbeta), buf(op, dy), buf(op, x)
	mb, rb, gb, bb := buf(op, mean), buf(op, rstd), buf(op, gamma), buf(op, beta)
	n := p.N * p.C * p.HW
	if p.Groups <= 0 || p.C%p.Groups != 0 {
		tensor.Errorf(op, "%d channels in %d groups", p.C, p.Groups)
	}
	same(op, n, dxb, dyb, xb)
	same(op, p.C, xb, dgb, dbb, gb, bb)
	requireF32(op, mb, rb)
	same(op, p.N*p.Groups, mb, rb)
	if n == 0 || (dxb == nil && dgb == nil && dbb == nil) {
		return
	}
	s := sfx(xb.dt)
	if pl, ok := b.groupNormPlan(p); ok {
		rows := p.N * p.C * pl.pieces
		ws := b.scratch(op, 8*rows) // pg then pb, rows floats each
		defer b.unscratch(ws)
		pg, pb := devPtr(ws), devPtr(ws+uintptr(4*rows))
		cfg := launchCfg{grid: [3]int{(rows + 7) / 8, 1, 1}, block: [3]int{256, 1, 1}} // a warp per row
		b.launch(op, "norm", "groupnorm_split_bwd_part_"+s, cfg, pg, pb, dyb, xb, mb, rb, gb, bb,
			p.C, p.HW, p.Groups, pl.piece, pl.pieces, rows, p.SiLU)
		cfg.grid[0] = (p.C + 255) / 256 // parameter gradients only: a thread per channel
		if dxb != nil {
			cfg.grid[0] = p.N * p.Groups * pl.chunks
		}
		b.launch(op, "norm", "groupnorm_split_bwd_"+s, cfg, dxb, dgb, dbb, pg, pb, dyb, xb, mb, rb, gb, bb,
			p.N, p.C, p.HW, p.Groups, pl.chunk, pl.chunks, pl.pieces, p.SiLU)
		return
	}
	if dxb != nil {
		cfg := launchCfg{grid: [3]int{p.N * p.Groups, 1, 1}, block: [3]int{256, 1, 1}}
		b.launch(op, "norm", "groupnorm_bwd_dx_"+s, cfg, dxb, dyb, xb, mb, rb, gb, bb, p.C, p.HW, p.Groups, p.SiLU)
	}
	if dgb != nil || dbb != nil {
		cfg := launchCfg{grid: [3]int{p.C, 1, 1}, block: [3]int{256, 1, 1}}
		b.launch(op, "norm", "groupnorm_bwd_param_"+s, cfg, dgb, dbb, dyb, xb, mb, rb, gb, bb, p.N, p.C, p.HW, p.Groups, p.SiLU)
	}
}

func (b *Backend) LayerNorm(y, mean, rstd, x, gamma, beta tensor.Storage, p tensor.NormParams) {
	const op = "cuda.LayerNorm"
	yb, mb, rb, xb, gb, bb := buf(op, y), buf(op, mean), buf(op, rstd), buf(op, x), buf(op, gamma), buf(op, beta)
	same(op, p.Rows*p.Cols, yb, xb)
	same(op, p.Cols, xb, gb, bb)
	requireF32(op, mb, rb)
	same(op, p.Rows, mb, rb)
	if p.Rows == 0 {
		return
	}
	cfg := launchCfg{grid: [3]int{p.Rows, 1, 1}, block: [3]int{256, 1, 1}}
	b.launch(op, "norm", "layernorm_"+sfx(xb.dt), cfg, yb, mb, rb, xb, gb, bb, p.Cols, p.Eps)
}

func (b *Backend) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma tensor.Storage, p tensor.NormParams) {
	const op = "cuda.LayerNormBackward"
	dxb, dgb, dbb, dyb, xb := buf(op, dx), buf(op, dgamma), buf(op, dbeta), buf(op, dy), buf(op, x)
	mb, rb, gb := buf(op, mean), buf(op, rstd), buf(op, gamma)
	same(op, p.Rows*p.Cols, dxb, dyb, xb)
	same(op, p.Cols, xb, dgb, dbb, gb)
	requireF32(op, mb, rb)
	same(op, p.Rows, mb, rb)
	if p.Rows == 0 {
		return
	}
	s := sfx(xb.dt)
	if dxb != nil {
		cfg := launchCfg{grid: [3]int{p.Rows, 1, 1}, block: [3]int{256, 1, 1}}
		b.launch(op, "norm", "layernorm_bwd_dx_"+s, cfg, dxb, dyb, xb, mb, rb, gb, p.Cols)
	}
	if dgb != nil || dbb != nil {
		cfg := launchCfg{grid: [3]int{(p.Cols + 31) / 32, 1, 1}, block: [3]int{32, 8, 1}}
		b.launch(op, "norm", "layernorm_bwd_param_"+s, cfg, dgb, dbb, dyb, xb, mb, rb, p.Rows, p.Cols)
	}
}

func (b *Backend) Softmax(y, x tensor.Storage, rows, cols int) {
	const op = "cuda.Softmax"
	yb, xb := buf(op, y), buf(op, x)
	same(op, rows*cols, yb, xb)
	if rows == 0 {
		return
	}
	cfg := launchCfg{grid: [3]int{rows, 1, 1}, block: [3]int{min(256, max(32, (cols+31)/32*32)), 1, 1}}
	b.launch(op, "norm", "softmax_"+sfx(xb.dt), cfg, yb, xb, cols)
}

func (b *Backend) SoftmaxBackward(dx, dy, y tensor.Storage, rows, cols int) {
	const op = "cuda.SoftmaxBackward"
	dxb, dyb, yb := buf(op, dx), buf(op, dy), buf(op, y)
	if dxb == nil {
		return
	}
	same(op, rows*cols, dxb, dyb, yb)
	if rows == 0 {
		return
	}
	cfg := launchCfg{grid: [3]int{rows, 1, 1}, block: [3]int{min(256, max(32, (cols+31)/32*32)), 1, 1}}
	b.launch(op, "norm", "softmax_bwd_"+sfx(yb.dt), cfg, dxb, dyb, yb, cols)
}
