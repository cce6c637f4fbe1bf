package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/tensor"
)

// TestAttentionWideHeads checks the GEMM-softmax-GEMM forward used for head
// dims above 256 (the VAE's single 512-wide head) against the CPU backend.
func TestAttentionWideHeads(t *testing.T) {
	gpu := device(t)
	for _, dt := range dtypes {
		t.Run(dt.String(), func(t *testing.T) {
			p := &pair{t: t, gpu: gpu, cpu: cpu.New(), dt: dt, rng: rand.New(rand.NewPCG(uint64(dt), 512))}
			for _, ap := range []tensor.AttnParams{
				{B: 2, H: 1, Tq: 96, Tk: 96, D: 512},
				{B: 1, H: 2, Tq: 40, Tk: 77, D: 320},
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
				p.check(fmt.Sprintf("Attention (GEMM path) %+v", ap), og, oc, tolFor(dt))
				p.check(fmt.Sprintf("Attention (GEMM path) lse %+v", ap), lg, lc, 1e-5)
			}
		})
	}
}
