package lycoris

import (
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/tensor"
)

// TestMirrorSteps trains a Linear and a 3×3 Conv2d LoCon for three AdamW
// steps with and without the low-precision mirror (forced in F32, so the
// two runs must agree to rounding): the mirror must pick up every
// parameter change (optimizer steps, SetValues, a direct write announced
// with Touch) and fold every backward's gradients.
func TestMirrorSteps(t *testing.T) {
	run := func(mirror bool) (outs [][]float32, params []float32) {
		e := tensor.NewEngine(cpu.New())
		src := &sd.RandomSource{E: e, DType: tensor.F32, Seed: 7}
		b := nn.NewBuilder(UNetPrefix, src)
		lin := nn.NewLinear(b, "time_embed.0", 12, 10, true)
		conv := nn.NewConv2d(b, "input_blocks.0.0", 3, 5, 3, 1, 1)
		if b.Err() != nil {
			t.Fatal(b.Err())
		}
		net, err := New(e, Config{Dim: 4, Alpha: 2, ConvDim: 2, ConvAlpha: 1}, []*nn.Linear{lin}, []*nn.Conv2d{conv}, rand.New(rand.NewPCG(3, 4)))
		if err != nil {
			t.Fatal(err)
		}
		net.forceMirror = mirror
		// Up factors start at zero; give them values so every gradient is non-zero.
		for _, m := range net.Modules {
			up := sd.RandomValues(9, m.Name, m.Up.Shape())
			if err := net.SetValues(m.Name+".lora_up.weight", up); err != nil {
				t.Fatal(err)
			}
		}
		m := e.B.Alloc(tensor.F32, net.Len())
		v := e.B.Alloc(tensor.F32, net.Len())
		e.B.Fill(m, 0)
		e.B.Fill(v, 0)
		rng := rand.New(rand.NewPCG(5, 6))
		randn := func(n int) []float32 {
			out := make([]float32, n)
			for i := range out {
				out[i] = float32(rng.NormFloat64())
			}
			return out
		}
		for step := 1; step <= 3; step++ {
			// Two micro-batches per step: the folds must accumulate.
			for micro := 0; micro < 2; micro++ {
				x := e.FromFloat32(randn(2*12), 2, 12)
				xc := e.FromFloat32(randn(2*3*6*6), 2, 3, 6, 6)
				yl, yc := lin.Forward(x), conv.Forward(xc)
				loss := tensor.Add(tensor.MSELoss(yl, e.FromFloat32(randn(yl.Len()), yl.Shape()...), nil),
					tensor.MSELoss(yc, e.FromFloat32(randn(yc.Len()), yc.Shape()...), nil))
				e.Backward(loss, 1)
				outs = append(outs, yl.Float32s(), yc.Float32s())
				e.EndStep()
			}
			e.B.AdamW(net.Params, net.Grads, m, v, tensor.AdamWParams{LR: 0.05, Beta1: 0.9, Beta2: 0.999,
				Eps: 1e-8, WeightDecay: 0.01, Step: step, GradScale: 1})
			net.ZeroGrad()
			if step == 2 {
				// An inference forward (a sample image) reads the
				// parameters, then a direct write, as restoring a training
				// state does, changes them.
				e.NoGrad(func() { lin.Forward(e.FromFloat32(randn(12), 1, 12)) })
				e.EndStep()
				p := make([]float32, net.Len())
				e.B.Download(p, net.Params)
				for i := range p {
					p[i] *= 0.5
				}
				e.B.Upload(net.Params, p)
				net.Touch()
			}
		}
		params = make([]float32, net.Len())
		e.B.Download(params, net.Params)
		return outs, params
	}
	outsA, pA := run(false)
	outsB, pB := run(true)
	for i := range outsA {
		if d := golden.RelL2(outsB[i], outsA[i]); d > 1e-6 {
			t.Errorf("forward %d: mirror differs from the F32 factors by relative L2 %.3g", i, d)
		}
	}
	if d := golden.RelL2(pB, pA); d > 1e-6 {
		t.Errorf("parameters after 3 steps: mirror differs by relative L2 %.3g", d)
	}
}
