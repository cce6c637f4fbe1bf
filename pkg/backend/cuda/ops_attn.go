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
	if p.D <= 0 || p.D > attMaxD {
		tensor.Errorf(op, "head dim %d outside 1..%d", p.D, attMaxD)
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
