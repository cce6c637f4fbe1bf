package cuda

import "loco/pkg/tensor"

// Tile shape of attention.cu (ATT_ROWS rows per block, ATT_KT per tile,
// at most 8 registers of 32 lanes per row: D <= 256).
const (
	attRows    = 8
	attTile    = 32
	attThreads = 128
	attMaxD    = 256
)

func checkAttn(op string, p tensor.AttnParams, q, k, v *buffer) {
	if p.D <= 0 {
		tensor.Errorf(op, "head dim %d", p.D)
	}
	if p.Causal && p.Tq != p.Tk {
		tensor.Errorf(op, "causal attention needs Tq == Tk, got %d and %d", p.Tq, p.Tk)
	}
	same(op, p.B*p.Tq*p.H*p.D, q)
	same(op, p.B*p.Tk*p.H*p.D, k, v)
	same(op, 0, q, k, v)
}

func (b *Backend) Attention(o, lse, q, k, v tensor.Storage, p tensor.AttnParams) {
	const op = "cuda.Attention"
	ob, lb, qb, kb, vb := buf(op, o), buf(op, lse), buf(op, q), buf(op, k), buf(op, v)
	checkAttn(op, p, qb, kb, vb)
	same(op, p.B*p.Tq*p.H*p.D, ob, qb)
	requireF32(op, lb)
	same(op, p.B*p.H*p.Tq, lb)
	if p.B*p.H*p.Tq == 0 {
		return
	}
	if b.flashForward(op, ob, lb, qb, kb, vb, p) { // tensor cores: F16/BF16, D%8 == 0, D <= 160
		return
	}
	if p.D > attMaxD {
		b.attentionGEMM(op, ob, lb, qb, kb, vb, p)
		return
	}
	D := p.D
	cfg := launchCfg{grid: [3]int{(p.Tq + attRows - 1) / attRows, p.B * p.H, 1}, block: [3]int{attThreads, 1, 1},
		shmem: 4 * (attRows*D + attTile*(D+1) + attTile*D)}
	b.launch(op, "attention", "attn_fwd_"+sfx(qb.dt), cfg, ob, lb, qb, kb, vb, p.H, p.Tq, p.Tk, int32(D), p.Scale, p.Causal)
}

func (b *Backend) AttentionBackward(dq, dk, dv, do, q, k, v, o, lse tensor.Storage, p tensor.AttnParams) {
	const op = "cuda.AttentionBackward"
	dqb, dkb, dvb, dob := buf(op, dq), buf(op, dk), buf(op, dv), buf(op, do)
	qb, kb, vb, ob, lb := buf(op, q), buf(op, k), buf(op, v), buf(op, o), buf(op, lse)
	checkAttn(op, p, qb, kb, vb)
	same(op, p.B*p.Tq*p.H*p.D, dqb, dob, ob, qb)
	same(op, p.B*p.Tk*p.H*p.D, dkb, dvb, kb)
	requireF32(op, lb)
	same(op, p.B*p.H*p.Tq, lb)
	if (dqb == nil && dkb == nil && dvb == nil) || p.B*p.H*p.Tq == 0 {
		return
	}
	if b.flashBackward(op, dqb, dkb, dvb, dob, qb, kb, vb, ob, lb, p) {
		return
	}
	if p.D > attMaxD {
		tensor.Errorf(op, "head dim %d: the backward pass supports at most %d (only the forward has a GEMM path)", p.D, attMaxD)
	}
	if p.Overwrite { // the kernels below add
		for _, g := range []*buffer{dqb, dkb, dvb} {
			if g != nil {
				b.Fill(g, 0)
			}
		}
	}
	D, s := p.D, sfx(qb.dt)
	rows := p.B * p.Tq * p.H
	delta := b.scratch(op, 4*rows)
	b.launch(op, "attention", "attn_delta_"+s, launchCfg{grid: [3]int{(rows + 3) / 4, 1, 1}, block: [3]int{attThreads, 1, 1}},
		devPtr(delta), dob, ob, rows, p.H, p.Tq, int32(D))
	if dqb != nil {
		cfg := launchCfg{grid: [3]int{(p.Tq + attRows - 1) / attRows, p.B * p.H, 1}, block: [3]int{attThreads, 1, 1},
			shmem: 4 * (2*attRows*D + 2*attTile*(D+1))}
		b.launch(op, "attention", "attn_bwd_dq_"+s, cfg, dqb, qb, kb, vb, dob, lb, devPtr(delta), p.H, p.Tq, p.Tk,
			int32(D), p.Scale, p.Causal)
	}
	if dkb != nil || dvb != nil {
		cfg := launchCfg{grid: [3]int{(p.Tk + attRows - 1) / attRows, p.B * p.H, 1}, block: [3]int{attThreads, 1, 1},
			shmem: 4 * (2*attRows*D + 2*attTile*(D+1) + 2*attTile)}
		b.launch(op, "attention", "attn_bwd_dkdv_"+s, cfg, dkb, dvb, qb, kb, vb, dob, lb, devPtr(delta), p.H, p.Tq, p.Tk,
			int32(D), p.Scale, p.Causal)
	}
	b.unscratch(delta)
}

// attentionGEMM is the forward for head dims above attMaxD (the SD VAE's
// single 512-wide head), inference only: per head, S = scale·Q·Kᵀ in F32
// through cuBLAS, lse and softmax of S's rows, then O = P·V. It
// materialises B·Tq·Tk scores per head (64 MiB for 4096² at batch 1).
func (b *Backend) attentionGEMM(op string, ob, lb, qb, kb, vb *buffer, p tensor.AttnParams) {
	if p.Causal {
		tensor.Errorf(op, "causal attention with head dim %d > %d is not supported", p.D, attMaxD)
	}
	HD := p.H * p.D
	rows, cols := p.B*p.Tq, p.Tk
	sp := b.scratch(op, 4*rows*cols)
	defer b.unscratch(sp)
	s := &buffer{ptr: sp, dt: tensor.F32, n: rows * cols}
	var pt *buffer // P in the storage dtype, when that is not F32
	if qb.dt != tensor.F32 {
		pp := b.scratch(op, qb.dt.Size()*rows*cols)
		defer b.unscratch(pp)
		pt = &buffer{ptr: pp, dt: qb.dt, n: rows * cols}
	}
	block := min(256, max(32, (cols+31)/32*32))
	for h := 0; h < p.H; h++ {
		off := h * p.D
		qh := b.View(qb, off, qb.n-off).(*buffer)
		kh := b.View(kb, off, kb.n-off).(*buffer)
		vh := b.View(vb, off, vb.n-off).(*buffer)
		b.gemm(op, s.ptr, tensor.F32, s.n, qh, kh, tensor.GemmParams{TransB: true, M: p.Tq, N: p.Tk, K: p.D,
			LDA: HD, LDB: HD, LDC: p.Tk, Batch: p.B, StrideA: p.Tq * HD, StrideB: p.Tk * HD, StrideC: p.Tq * p.Tk,
			Alpha: p.Scale})
		b.launch(op, "attention", "attn_row_lse_f32", launchCfg{grid: [3]int{rows, 1, 1}, block: [3]int{block, 1, 1}},
			lb, s, cols, p.Tq, p.H, h)
		b.launch(op, "norm", "softmax_f32", launchCfg{grid: [3]int{rows, 1, 1}, block: [3]int{block, 1, 1}}, s, s, cols)
		pm := s
		if pt != nil {
			b.Copy(pt, s)
			pm = pt
		}
		b.gemm(op, ob.ptr+uintptr(off*ob.dt.Size()), ob.dt, ob.n-off, pm, vh, tensor.GemmParams{M: p.Tq, N: p.D, K: p.Tk,
			LDA: p.Tk, LDB: HD, LDC: HD, Batch: p.B, StrideA: p.Tq * p.Tk, StrideB: p.Tk * HD, StrideC: p.Tq * HD, Alpha: 1})
	}
}
