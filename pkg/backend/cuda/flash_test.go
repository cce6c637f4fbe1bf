package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/backend/cuda"
	"loco/pkg/golden"
	"loco/pkg/tensor"
)

// flashCases cover the tensor-core attention kernels (flash.cu): every
// padded head size class (D 8 -> 32, 40 -> 48, 64, 80, 128, 160), Tq != Tk,
// Tk = 77 (SD cross-attention), tails of both sides, several key and query
// tiles (the double buffering), causal masks, B and H > 1.
var flashCases = []tensor.AttnParams{
	{B: 2, H: 3, Tq: 70, Tk: 45, D: 40},
	{B: 2, H: 3, Tq: 150, Tk: 77, D: 40},
	{B: 1, H: 2, Tq: 200, Tk: 200, D: 40, Causal: true},
	{B: 2, H: 2, Tq: 100, Tk: 100, D: 64, Causal: true},
	{B: 1, H: 3, Tq: 130, Tk: 300, D: 64},
	{B: 1, H: 2, Tq: 33, Tk: 77, D: 80},
	{B: 2, H: 1, Tq: 129, Tk: 64, D: 80, Causal: false},
	{B: 1, H: 2, Tq: 48, Tk: 77, D: 128},
	{B: 1, H: 2, Tq: 90, Tk: 90, D: 160, Causal: true},
	{B: 2, H: 1, Tq: 65, Tk: 140, D: 160},
	{B: 1, H: 2, Tq: 40, Tk: 33, D: 8},
	{B: 1, H: 1, Tq: 1, Tk: 1, D: 40},
}

// gpuVsGpu compares two storages of the CUDA backend by relative L2.
func gpuVsGpu(t *testing.T, be *cuda.Backend, name string, got, want tensor.Storage, tol float64) {
	t.Helper()
	if err := be.Sync(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	g, w := make([]float32, got.Len()), make([]float32, want.Len())
	be.Download(g, got)
	be.Download(w, want)
	if e := golden.RelL2(g, w); !(e <= tol) {
		t.Errorf("%s: flash vs fp32 kernel relative L2 %.3g > %.3g", name, e, tol)
	} else {
		t.Logf("%s: flash vs fp32 kernel relative L2 %.3g", name, e)
	}
}

// gpuCopy returns a new storage holding the values of s.
func gpuCopy(be *cuda.Backend, s tensor.Storage) tensor.Storage {
	v := make([]float32, s.Len())
	be.Download(v, s)
	c := be.Alloc(s.DType(), s.Len())
	be.Upload(c, v)
	return c
}

// TestFlashAttention compares the tensor-core kernels with the CPU backend
// (float32 on the same rounded inputs) and with the fp32-arithmetic CUDA
// kernels, forward (o, lse; outputs NaN-poisoned first) and backward (dq,
// dk, dv prefilled with random values, since the backward adds into them),
// on fresh random inputs with a random scale around 1/sqrt(D).
func TestFlashAttention(t *testing.T) {
	gpu := device(t)
	defer cuda.SetFlashAttention(cuda.SetFlashAttention(true))
	if !gpu.FlashAttentionApplies(tensor.F16, flashCases[0]) {
		if d := gpu.Describe(); strings.Contains(d, "sm_7") || strings.Contains(d, "sm_6") {
			t.Skipf("tensor-core attention needs sm_80+: %s", d)
		}
		t.Fatalf("flash kernels not used for %+v on %s", flashCases[0], gpu.Describe())
	}
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			p := &pair{t: t, gpu: gpu, cpu: cpu.New(), dt: dt, rng: rand.New(rand.NewPCG(uint64(dt), 4242))}
			tol := tolFor(dt)
			for _, ap := range flashCases {
				ap.Scale = float32((0.5 + 1.5*p.rng.Float64()) / math.Sqrt(float64(ap.D)))
				if !gpu.FlashAttentionApplies(dt, ap) {
					t.Fatalf("flash kernels not used for %+v", ap)
				}
				name := fmt.Sprintf("B%d H%d Tq%d Tk%d D%d causal=%v", ap.B, ap.H, ap.Tq, ap.Tk, ap.D, ap.Causal)
				nq, nk := ap.B*ap.Tq*ap.H*ap.D, ap.B*ap.Tk*ap.H*ap.D
				qg, qc := p.up(randn(p.rng, nq))
				kg, kc := p.up(randn(p.rng, nk))
				vg, vc := p.up(randn(p.rng, nk))

				og, oc := p.outs(nq, false)
				lg, lc := p.outs(ap.B*ap.H*ap.Tq, true)
				gpu.Attention(og, lg, qg, kg, vg, ap)
				p.cpu.Attention(oc, lc, qc, kc, vc, ap)
				p.check(name+" o", og, oc, tol)
				p.check(name+" lse", lg, lc, 1e-4)

				// The fp32 kernels on the same device inputs.
				cuda.SetFlashAttention(false)
				of, _ := p.outs(nq, false)
				lf, _ := p.outs(ap.B*ap.H*ap.Tq, true)
				gpu.Attention(of, lf, qg, kg, vg, ap)
				cuda.SetFlashAttention(true)
				gpuVsGpu(t, gpu, name+" o", og, of, tol)
				gpuVsGpu(t, gpu, name+" lse", lg, lf, 1e-4)

				dog, doc := p.up(randn(p.rng, nq))
				dqg, dqc := p.up(randn(p.rng, nq))
				dkg, dkc := p.up(randn(p.rng, nk))
				dvg, dvc := p.up(randn(p.rng, nk))
				dqf, dkf, dvf := gpuCopy(gpu, dqg), gpuCopy(gpu, dkg), gpuCopy(gpu, dvg)
				gpu.AttentionBackward(dqg, dkg, dvg, dog, qg, kg, vg, og, lg, ap)
				p.cpu.AttentionBackward(dqc, dkc, dvc, doc, qc, kc, vc, oc, lc, ap)
				p.check(name+" dq", dqg, dqc, 2*tol)
				p.check(name+" dk", dkg, dkc, 2*tol)
				p.check(name+" dv", dvg, dvc, 2*tol)

				cuda.SetFlashAttention(false)
				gpu.AttentionBackward(dqf, dkf, dvf, dog, qg, kg, vg, og, lg, ap)
				cuda.SetFlashAttention(true)
				gpuVsGpu(t, gpu, name+" dq", dqg, dqf, 2*tol)
				gpuVsGpu(t, gpu, name+" dk", dkg, dkf, 2*tol)
				gpuVsGpu(t, gpu, name+" dv", dvg, dvf, 2*tol)

				for _, s := range []tensor.Storage{qg, kg, vg, og, lg, of, lf, dog, dqg, dkg, dvg, dqf, dkf, dvf} {
					gpu.Free(s)
				}
			}
		})
	}
}

// TestFlashAttentionPartialGrads checks the backward with some gradient
// outputs nil (each kernel must skip what it is not given and leave the
// rest right), and a causal case.
func TestFlashAttentionPartialGrads(t *testing.T) {
	gpu := device(t)
	defer cuda.SetFlashAttention(cuda.SetFlashAttention(true))
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			p := &pair{t: t, gpu: gpu, cpu: cpu.New(), dt: dt, rng: rand.New(rand.NewPCG(uint64(dt), 77))}
			tol := tolFor(dt)
			for _, ap := range []tensor.AttnParams{
				{B: 2, H: 2, Tq: 96, Tk: 77, D: 40},
				{B: 1, H: 2, Tq: 70, Tk: 70, D: 80, Causal: true},
			} {
				ap.Scale = float32(1 / math.Sqrt(float64(ap.D)))
				nq, nk := ap.B*ap.Tq*ap.H*ap.D, ap.B*ap.Tk*ap.H*ap.D
				qg, qc := p.up(randn(p.rng, nq))
				kg, kc := p.up(randn(p.rng, nk))
				vg, vc := p.up(randn(p.rng, nk))
				og, oc := p.outs(nq, false)
				lg, lc := p.outs(ap.B*ap.H*ap.Tq, true)
				gpu.Attention(og, lg, qg, kg, vg, ap)
				p.cpu.Attention(oc, lc, qc, kc, vc, ap)
				dog, doc := p.up(randn(p.rng, nq))
				for _, which := range []string{"dq", "dk", "dv", "dk+dv"} {
					var dqg, dkg, dvg, dqc, dkc, dvc tensor.Storage
					if which == "dq" {
						dqg, dqc = p.up(randn(p.rng, nq))
					}
					if strings.Contains(which, "dk") {
						dkg, dkc = p.up(randn(p.rng, nk))
					}
					if strings.Contains(which, "dv") {
						dvg, dvc = p.up(randn(p.rng, nk))
					}
					gpu.AttentionBackward(dqg, dkg, dvg, dog, qg, kg, vg, og, lg, ap)
					p.cpu.AttentionBackward(dqc, dkc, dvc, doc, qc, kc, vc, oc, lc, ap)
					name := fmt.Sprintf("%+v only %s:", ap, which)
					if dqg != nil {
						p.check(name+" dq", dqg, dqc, 2*tol)
					}
					if dkg != nil {
						p.check(name+" dk", dkg, dkc, 2*tol)
					}
					if dvg != nil {
						p.check(name+" dv", dvg, dvc, 2*tol)
					}
				}
			}
		})
	}
}

// BenchmarkAttentionFlash times the tensor-core kernels at the SD 1.5
// attention sizes (512 px, batch 3: self-attention at 64², 32², 16²
// latents with head dims 40, 80, 160, and cross-attention over 77 tokens),
// and for F16 the fp32 kernels at the same sizes. TFLOP/s counts
// 4·B·H·Tq·Tk·D for the forward and 2.5 times that for the backward.
func BenchmarkAttentionFlash(b *testing.B) {
	be := device(b)
	defer cuda.SetFlashAttention(cuda.SetFlashAttention(true))
	cases := []tensor.AttnParams{
		{B: 3, H: 8, Tq: 4096, Tk: 4096, D: 40},
		{B: 3, H: 8, Tq: 1024, Tk: 1024, D: 80},
		{B: 3, H: 8, Tq: 256, Tk: 256, D: 160},
		{B: 3, H: 8, Tq: 4096, Tk: 77, D: 40},
		{B: 3, H: 8, Tq: 1024, Tk: 77, D: 80},
		{B: 3, H: 8, Tq: 256, Tk: 77, D: 160},
	}
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		for _, p := range cases {
			p.Scale = float32(1 / math.Sqrt(float64(p.D)))
			nq, nk := p.B*p.Tq*p.H*p.D, p.B*p.Tk*p.H*p.D
			q, k, v := filled(be, dt, nq, 11), filled(be, dt, nk, 12), filled(be, dt, nk, 13)
			o, do := filled(be, dt, nq, 14), filled(be, dt, nq, 15)
			dq, dk, dv := filled(be, dt, nq, 16), filled(be, dt, nk, 17), filled(be, dt, nk, 18)
			lse := be.Alloc(tensor.F32, p.B*p.H*p.Tq)
			flops := 4 * float64(p.B*p.H*p.Tq*p.Tk*p.D)
			name := fmt.Sprintf("%v/T%dx%d_D%d", dt, p.Tq, p.Tk, p.D)
			kernels := []string{"flash"}
			if dt == tensor.F16 {
				kernels = append(kernels, "fp32")
			}
			for _, kern := range kernels {
				cuda.SetFlashAttention(kern == "flash")
				b.Run(name+"/fwd/"+kern, func(b *testing.B) { timeOp(b, be, flops, func() { be.Attention(o, lse, q, k, v, p) }) })
				// The backward reads the forward's lse: compute it with this kernel first.
				be.Attention(o, lse, q, k, v, p)
				b.Run(name+"/bwd/"+kern, func(b *testing.B) {
					timeOp(b, be, 2.5*flops, func() { be.AttentionBackward(dq, dk, dv, do, q, k, v, o, lse, p) })
				})
			}
			cuda.SetFlashAttention(true)
			for _, s := range []tensor.Storage{q, k, v, o, do, dq, dk, dv, lse} {
				be.Free(s)
			}
		}
	}
}
