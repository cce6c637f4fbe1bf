package cuda

import "loco/pkg/tensor"

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
	cfg := launchCfg{grid: [3]int{p.N * p.Groups, 1, 1}, block: [3]int{256, 1, 1}}
	b.launch(op, "norm", "groupnorm_"+sfx(xb.dt), cfg, yb, mb, rb, xb, gb, bb, p.C, p.HW, p.Groups, p.Eps, p.SiLU)
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
	if n == 0 {
		return
	}
	s := sfx(xb.dt)
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
