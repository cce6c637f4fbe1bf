package cuda

import (
	"fmt"
	"os"
	"sync/atomic"

	"loco/pkg/tensor"
)

// Tensor-core attention (kernels/flash.cu): FlashAttention-2-style forward
// and backward with mma.sync m16n8k16 (fp16 or bf16 operands, fp32
// accumulation and softmax), for F16/BF16 storage on sm_80 and newer. The
// head dim D is padded to the smallest supported DP >= D; D must be a
// multiple of 8 (whole 16-byte chunks per row) and the tensors 16-byte
// aligned. Everything else (F32 storage, other D, older GPUs, Tk == 0)
// goes to the fp32 kernels of attention.cu.

// flashThreads is FL_THREADS of flash.cu: four warps, 16 rows each.
const flashThreads = 128

// flashConfig is one instantiation of FL_INST in flash.cu: the padded head
// dim and the streamed tile of each kernel (the resident tile is 64 rows).
type flashConfig struct {
	dp     int
	fwdBK  int // key tile of the forward
	dkdvBQ int // query tile of the dk/dv kernel
	dqBK   int // key tile of the dq kernel
}

// flashConfigs must match FL_DIMS in flash.cu. Shared memory stays at most
// 99 KiB per block, the opt-in limit of sm_86/sm_89 consumer cards.
var flashConfigs = []flashConfig{
	{32, 64, 64, 64},
	{48, 64, 64, 64},
	{64, 64, 64, 64},
	{80, 64, 64, 64},
	{96, 32, 32, 32},
	{128, 32, 32, 32},
	{160, 32, 32, 32},
}

func init() {
	// The compile test checks that every kernel the Go side may launch is
	// in the PTX.
	var names []string
	for _, c := range flashConfigs {
		for _, s := range []string{"f16", "bf16"} {
			for _, k := range []string{"flash_fwd", "flash_bwd_dkdv", "flash_bwd_dq"} {
				names = append(names, fmt.Sprintf("%s_%s_d%d", k, s, c.dp))
			}
		}
	}
	expectedKernels["flash"] = names
}

// flashFor returns the configuration for head dim d, or false when the
// flash kernels do not handle it.
func flashFor(d int) (flashConfig, bool) {
	if d <= 0 || d%8 != 0 {
		return flashConfig{}, false
	}
	for _, c := range flashConfigs {
		if d <= c.dp {
			return c, true
		}
	}
	return flashConfig{}, false
}

// Shared-memory bytes of each kernel (the kernels check them; see flash.cu).
func (c flashConfig) fwdShmem() int  { return (64 + 4*c.fwdBK) * (c.dp + 8) * 2 }
func (c flashConfig) dkdvShmem() int { return (2*64+4*c.dkdvBQ)*(c.dp+8)*2 + 4*c.dkdvBQ*4 }
func (c flashConfig) dqShmem() int   { return (2*64 + 4*c.dqBK) * (c.dp + 8) * 2 }

var flashOff atomic.Bool

func init() { flashOff.Store(os.Getenv("LOCO_CUDA_FLASH") == "0") }

// SetFlashAttention turns the tensor-core attention kernels on or off for
// every backend of the process (on by default; LOCO_CUDA_FLASH=0 starts
// with them off) and returns the previous setting. Off, F16/BF16 attention
// runs on the fp32 kernels, as F32 always does: for comparisons and
// benchmarks.
func SetFlashAttention(on bool) (prev bool) { return !flashOff.Swap(!on) }

// flashUsable reports whether the flash kernels take attention with
// parameters p on storages bs (nil entries skipped).
func (b *Backend) flashUsable(p tensor.AttnParams, dt tensor.DType, bs ...*buffer) (flashConfig, bool) {
	if flashOff.Load() || b.arch < 80 || (dt != tensor.F16 && dt != tensor.BF16) || p.Tk <= 0 {
		return flashConfig{}, false
	}
	c, ok := flashFor(p.D)
	if !ok {
		return flashConfig{}, false
	}
	for _, x := range bs {
		if x != nil && x.ptr%16 != 0 {
			return flashConfig{}, false
		}
	}
	return c, true
}

// flashForward runs the flash forward if it applies and reports whether it did.
func (b *Backend) flashForward(op string, o, lse, q, k, v *buffer, p tensor.AttnParams) bool {
	c, ok := b.flashUsable(p, q.dt, o, lse, q, k, v)
	if !ok {
		return false
	}
	cfg := launchCfg{grid: [3]int{(p.Tq + 63) / 64, p.B * p.H, 1}, block: [3]int{flashThreads, 1, 1}, shmem: c.fwdShmem()}
	b.launch(op, "flash", fmt.Sprintf("flash_fwd_%s_d%d", sfx(q.dt), c.dp), cfg,
		o, lse, q, k, v, p.H, p.Tq, p.Tk, int32(p.D), p.Scale, p.Causal)
	return true
}

// flashBackward runs the flash backward if it applies and reports whether
// it did: delta = rowsum(dO∘O) (attention.cu's kernel), then one pass over
// key tiles for dk/dv and one over query tiles for dq, each adding into its
// outputs (no atomics).
func (b *Backend) flashBackward(op string, dq, dk, dv, do, q, k, v, o, lse *buffer, p tensor.AttnParams) bool {
	c, ok := b.flashUsable(p, q.dt, dq, dk, dv, do, q, k, v, o, lse)
	if !ok {
		return false
	}
	s := sfx(q.dt)
	rows := p.B * p.Tq * p.H
	delta := b.scratch(op, 4*rows)
	b.launch(op, "attention", "attn_delta_"+s, launchCfg{grid: [3]int{(rows + 3) / 4, 1, 1}, block: [3]int{attThreads, 1, 1}},
		devPtr(delta), do, o, rows, p.H, p.Tq, int32(p.D))
	if dk != nil || dv != nil {
		cfg := launchCfg{grid: [3]int{(p.Tk + 63) / 64, p.B * p.H, 1}, block: [3]int{flashThreads, 1, 1}, shmem: c.dkdvShmem()}
		b.launch(op, "flash", fmt.Sprintf("flash_bwd_dkdv_%s_d%d", s, c.dp), cfg,
			dk, dv, q, k, v, do, lse, devPtr(delta), p.H, p.Tq, p.Tk, int32(p.D), p.Scale, p.Causal, !p.Overwrite)
	}
	if dq != nil {
		cfg := launchCfg{grid: [3]int{(p.Tq + 63) / 64, p.B * p.H, 1}, block: [3]int{flashThreads, 1, 1}, shmem: c.dqShmem()}
		b.launch(op, "flash", fmt.Sprintf("flash_bwd_dq_%s_d%d", s, c.dp), cfg,
			dq, q, k, v, do, lse, devPtr(delta), p.H, p.Tq, p.Tk, int32(p.D), p.Scale, p.Causal, !p.Overwrite)
	}
	b.unscratch(delta)
	return true
}

// FlashAttentionApplies reports whether Attention and AttentionBackward on
// storage of dtype dt with parameters p run on the tensor-core kernels
// (given 16-byte aligned storage, as Alloc returns).
func (b *Backend) FlashAttentionApplies(dt tensor.DType, p tensor.AttnParams) bool {
	_, ok := b.flashUsable(p, dt)
	return ok
}
