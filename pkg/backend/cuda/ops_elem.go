package cuda

import (
	"loco/pkg/tensor"
)

// same checks that every storage has the dtype of the first and at least
// n elements (nil storages are skipped).
func same(op string, n int, ss ...*buffer) {
	var dt tensor.DType
	for _, s := range ss {
		if s == nil {
			continue
		}
		if dt == 0 {
			dt = s.dt
		} else if s.dt != dt {
			tensor.Errorf(op, "mixed dtypes %v and %v", dt, s.dt)
		}
		if s.n < n {
			tensor.Errorf(op, "storage of %d elements, need %d", s.n, n)
		}
	}
}

func requireF32(op string, ss ...*buffer) {
	for _, s := range ss {
		if s != nil && s.dt != tensor.F32 {
			tensor.Errorf(op, "saved/optimizer storage must be F32, got %v", s.dt)
		}
	}
}

// ew launches a grid-stride kernel over n elements.
func (b *Backend) ew(op, mod, kernel string, n int, args ...any) {
	if n == 0 {
		return
	}
	b.launch(op, mod, kernel, b.grid1(n), args...)
}

func (b *Backend) Fill(dst tensor.Storage, v float32) {
	x := buf("cuda.Fill", dst)
	b.ew("cuda.Fill", "elementwise", "fill_"+sfx(x.dt), x.n, x, x.n, v)
}

func (b *Backend) Copy(dst, src tensor.Storage) {
	const op = "cuda.Copy"
	d, s := buf(op, dst), buf(op, src)
	if d.n != s.n {
		tensor.Errorf(op, "lengths %d and %d differ", d.n, s.n)
	}
	if d.n == 0 {
		return
	}
	if d.dt == s.dt {
		b.enter()
		defer b.leave()
		b.drv.check(op, "cuMemcpyDtoDAsync", call(b.drv.cuMemcpyDtoDAsync, d.ptr, s.ptr, uintptr(d.n*d.dt.Size()), b.stream))
		return
	}
	b.ew(op, "elementwise", "cast_"+sfx(d.dt)+"_"+sfx(s.dt), d.n, d, s, d.n)
}

func (b *Backend) CopyStrided(dst, src tensor.Storage, p tensor.StridedCopy) {
	const op = "cuda.CopyStrided"
	d, s := buf(op, dst), buf(op, src)
	same(op, 0, d, s)
	if p.Rows == 0 || p.Cols == 0 {
		return
	}
	if p.Rows < 0 || p.Cols < 0 || p.DstOff < 0 || p.SrcOff < 0 {
		tensor.Errorf(op, "negative size or offset in %+v", p)
	}
	if need := p.DstOff + (p.Rows-1)*p.DstStride + p.Cols; need > d.n {
		tensor.Errorf(op, "destination needs %d elements, has %d", need, d.n)
	}
	if need := p.SrcOff + (p.Rows-1)*p.SrcStride + p.Cols; need > s.n {
		tensor.Errorf(op, "source needs %d elements, has %d", need, s.n)
	}
	b.ew(op, "elementwise", "copy2d_"+sfx(d.dt), p.Rows*p.Cols, d, s, p.Rows, p.Cols, p.DstOff, p.DstStride,
		p.SrcOff, p.SrcStride, p.Accumulate)
}

func (b *Backend) Unary(op tensor.UnaryOp, y, x tensor.Storage) {
	const name = "cuda.Unary"
	yb, xb := buf(name, y), buf(name, x)
	same(name, xb.n, yb, xb)
	b.ew(name, "elementwise", "unary_"+sfx(xb.dt), xb.n, yb, xb, xb.n, int32(op))
}

func (b *Backend) UnaryBackward(op tensor.UnaryOp, dx, dy, x tensor.Storage) {
	const name = "cuda.UnaryBackward"
	dxb, dyb, xb := buf(name, dx), buf(name, dy), buf(name, x)
	if dxb == nil {
		return
	}
	same(name, xb.n, dxb, dyb, xb)
	b.ew(name, "elementwise", "unary_bwd_"+sfx(xb.dt), xb.n, dxb, dyb, xb, xb.n, int32(op))
}

func (b *Backend) GEGLU(y, x tensor.Storage, rows, half int) {
	const op = "cuda.GEGLU"
	yb, xb := buf(op, y), buf(op, x)
	same(op, rows*half, yb, xb)
	if xb.n < 2*rows*half {
		tensor.Errorf(op, "x has %d elements, need %d", xb.n, 2*rows*half)
	}
	b.ew(op, "elementwise", "geglu_"+sfx(xb.dt), rows*half, yb, xb, rows, half)
}

func (b *Backend) GEGLUBackward(dx, dy, x tensor.Storage, rows, half int) {
	const op = "cuda.GEGLUBackward"
	dxb, dyb, xb := buf(op, dx), buf(op, dy), buf(op, x)
	if dxb == nil {
		return
	}
	same(op, rows*half, dxb, dyb, xb)
	if xb.n < 2*rows*half || dxb.n < 2*rows*half {
		tensor.Errorf(op, "x/dx have %d/%d elements, need %d", xb.n, dxb.n, 2*rows*half)
	}
	b.ew(op, "elementwise", "geglu_bwd_"+sfx(xb.dt), rows*half, dxb, dyb, xb, rows, half)
}

func (b *Backend) Binary(op tensor.BinaryOp, y, a, bs tensor.Storage, p tensor.Broadcast) {
	const name = "cuda.Binary"
	yb, ab, bb := buf(name, y), buf(name, a), buf(name, bs)
	b.binary(name, op, yb, ab, bb, p)
}

func (b *Backend) binary(name string, op tensor.BinaryOp, yb, ab, bb *buffer, p tensor.Broadcast) {
	same(name, ab.n, yb, ab)
	same(name, 0, ab, bb)
	if p.Inner <= 0 || p.BLen <= 0 || bb.n < p.BLen {
		tensor.Errorf(name, "broadcast %+v over b of %d elements", p, bb.n)
	}
	b.ew(name, "elementwise", "binary_"+sfx(ab.dt), ab.n, yb, ab, bb, ab.n, p.Inner, p.BLen, int32(op))
}

func (b *Backend) BinaryBackward(op tensor.BinaryOp, da, db, dy, a, bs tensor.Storage, p tensor.Broadcast) {
	const name = "cuda.BinaryBackward"
	dab, dbb, dyb, ab, bb := buf(name, da), buf(name, db), buf(name, dy), buf(name, a), buf(name, bs)
	n := dyb.n
	if p.Inner <= 0 || p.BLen <= 0 {
		tensor.Errorf(name, "broadcast %+v", p)
	}
	if dab != nil {
		same(name, n, dab, dyb)
		if op == tensor.OpMul {
			same(name, p.BLen, bb)
		}
		b.ew(name, "elementwise", "binary_da_"+sfx(dyb.dt), n, dab, dyb, bb, n, p.Inner, p.BLen, int32(op))
	}
	if dbb != nil {
		same(name, p.BLen, dbb, dyb)
		if op == tensor.OpMul {
			same(name, n, ab, dyb)
		}
		b.reduceBroadcast(name, dbb, dyb, ab, n, p, op)
	}
}

// reduceBroadcast: db[j] += Σ_{i→j} dy[i]·(1 or a[i]).
func (b *Backend) reduceBroadcast(name string, dbb, dyb, ab *buffer, n int, p tensor.Broadcast, op tensor.BinaryOp) {
	if n == 0 {
		return
	}
	if n%(p.Inner*p.BLen) != 0 {
		tensor.Errorf(name, "%d elements are not a whole number of %d x %d broadcast blocks", n, p.BLen, p.Inner)
	}
	outer := n / (p.Inner * p.BLen)
	if p.Inner == 1 {
		cfg := launchCfg{grid: [3]int{(p.BLen + 31) / 32, 1, 1}, block: [3]int{32, 8, 1}}
		b.launch(name, "elementwise", "binary_db_cols_"+sfx(dyb.dt), cfg, dbb, dyb, ab, outer, p.BLen, int32(op))
		return
	}
	cfg := launchCfg{grid: [3]int{p.BLen, 1, 1}, block: [3]int{256, 1, 1}}
	b.launch(name, "elementwise", "binary_db_inner_"+sfx(dyb.dt), cfg, dbb, dyb, ab, outer, p.Inner, p.BLen, int32(op))
}

func (b *Backend) Scale(y, x tensor.Storage, alpha float32) {
	const op = "cuda.Scale"
	yb, xb := buf(op, y), buf(op, x)
	same(op, xb.n, yb, xb)
	b.ew(op, "elementwise", "scale_"+sfx(xb.dt), xb.n, yb, xb, xb.n, alpha)
}

func (b *Backend) Axpy(y, x tensor.Storage, alpha float32) {
	const op = "cuda.Axpy"
	yb, xb := buf(op, y), buf(op, x)
	same(op, xb.n, yb, xb)
	b.ew(op, "elementwise", "axpy_"+sfx(xb.dt), xb.n, yb, xb, xb.n, alpha)
}

// permuteDims computes the Permute kernel's output dims and input strides,
// padded at the front to six dimensions.
func permuteDims(shape, perm []int) (odims, istr dims6, n int, err error) {
	r := len(shape)
	if r == 0 || r > 6 || len(perm) != r {
		return odims, istr, 0, errorf("rank %d shape with %d-element perm (rank 1..6)", r, len(perm))
	}
	strides := make([]int, r)
	n = 1
	for i := r - 1; i >= 0; i-- {
		strides[i] = n
		n *= shape[i]
	}
	seen := make([]bool, r)
	for i := range odims {
		odims[i], istr[i] = 1, 0
	}
	for k, pk := range perm {
		if pk < 0 || pk >= r || seen[pk] {
			return odims, istr, 0, errorf("perm %v is not a permutation of 0..%d", perm, r-1)
		}
		seen[pk] = true
		odims[6-r+k] = int64(shape[pk])
		istr[6-r+k] = int64(strides[pk])
	}
	return odims, istr, n, nil
}

func (b *Backend) Permute(y, x tensor.Storage, shape, perm []int, accumulate bool) {
	const op = "cuda.Permute"
	yb, xb := buf(op, y), buf(op, x)
	odims, istr, n, err := permuteDims(shape, perm)
	if err != nil {
		tensor.Errorf(op, "%v", err)
	}
	same(op, n, yb, xb)
	b.ew(op, "elementwise", "permute_"+sfx(xb.dt), n, yb, xb, n, odims, istr, accumulate)
}
