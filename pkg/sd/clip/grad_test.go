package clip_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/sdtest"
	"loco/pkg/tensor"
)

// TestGradFiniteDifferences checks the backward pass of the whole text
// encoder: the gradients of an MSE loss on the clip-skip output with
// respect to the token embedding table (the input side) and to layer 0's
// layer_norm1 gamma (the deepest LayerNorm) against central finite
// differences. A LoCon on a Linear inside any layer and the Extra hook
// path are covered too: a trainable delta on layer 0's q_proj.
func TestGradFiniteDifferences(t *testing.T) {
	for _, skip := range []int{1, 2} {
		t.Run(map[int]string{1: "last", 2: "penultimate"}[skip], func(t *testing.T) {
			testGrad(t, skip)
		})
	}
}

type param struct {
	name string
	t    *tensor.Tensor
	grad tensor.Storage
}

func testGrad(t *testing.T, skip int) {
	e := tensor.NewEngine(cpu.New())
	cfg := clip.Config{VocabSize: 30, ContextLength: 8, Width: 16, Layers: 3, Heads: 2, MLP: 32}
	b := nn.NewBuilder(clip.Prefix, sdtest.RandSource{E: e, Seed: 11})
	m := clip.New(b, cfg)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	// A LoRA-like trainable delta on layer 0's q_proj: x·Dᵀ with D [16,16].
	delta := e.Persistent(tensor.F32, scaled(sdtest.Randn(21, 16*16), 0.05), 16, 16)
	m.Layers[0].Q.Extra = func(x *tensor.Tensor) *tensor.Tensor { return tensor.Linear(x, delta, nil) }

	ps := []*param{
		{name: "token_embedding", t: m.TokenEmb.W},
		{name: "position_embedding", t: m.PosEmb.W},
		{name: "layers.0.layer_norm1.weight", t: m.Layers[0].LN1.Gamma},
		{name: "q_proj delta", t: delta},
	}
	for _, p := range ps {
		p.grad = e.B.Alloc(tensor.F32, p.t.Len())
		e.B.Fill(p.grad, 0)
		p.t.Param(p.grad)
	}
	ids := [][]int32{{28, 3, 7, 7, 12, 29, 29, 29}, {28, 19, 4, 1, 0, 9, 29, 29}}
	target := sdtest.Randn(31, 2*8*16)
	// The finite-difference loss is summed on the host in float64, so
	// that its own rounding stays far below the differences.
	loss := func() float64 {
		var out []float32
		e.NoGrad(func() { out = m.Encode(ids, skip).Float32s() })
		e.EndStep()
		var l float64
		for i, o := range out {
			d := float64(o) - float64(target[i])
			l += d * d
		}
		return l / float64(len(out))
	}

	out := m.Encode(ids, skip)
	l := tensor.MSELoss(out, e.FromFloat32(target, out.Shape()...), nil)
	e.Backward(l, 1)
	e.EndStep()

	r := rand.New(rand.NewPCG(41, 2))
	for _, p := range ps {
		g := make([]float32, p.t.Len())
		e.B.Download(g, p.grad)
		vals := p.t.Float32s()
		// Directional derivative along a random direction over the whole
		// tensor, then single coordinates with the largest gradients.
		dir := make([]float32, len(vals))
		var norm float64
		for i := range dir {
			dir[i] = float32(r.NormFloat64())
			norm += float64(dir[i]) * float64(dir[i])
		}
		var analytic float64
		for i := range dir {
			dir[i] /= float32(math.Sqrt(norm)) // unit length
			analytic += float64(dir[i]) * float64(g[i])
		}
		fd := centralDiff(e, p.t, vals, dir, 1e-2, loss)
		if err := math.Abs(fd-analytic) / math.Max(math.Abs(analytic), 1e-6); err > 2e-3 {
			t.Errorf("%s: directional derivative %g, finite differences %g (rel err %.2g)", p.name, analytic, fd, err)
		} else {
			t.Logf("%s: directional derivative %.6g, finite differences %.6g (rel err %.2g)", p.name, analytic, fd, err)
		}
		if analytic == 0 {
			t.Errorf("%s: zero gradient", p.name)
		}
		best := 0
		for i := range g {
			if math.Abs(float64(g[i])) > math.Abs(float64(g[best])) {
				best = i
			}
		}
		unit := make([]float32, len(vals))
		unit[best] = 1
		fd = centralDiff(e, p.t, vals, unit, 1e-2, loss)
		if err := math.Abs(fd-float64(g[best])) / math.Abs(float64(g[best])); err > 5e-3 {
			t.Errorf("%s[%d]: gradient %g, finite differences %g (rel err %.2g)", p.name, best, g[best], fd, err)
		}
	}
	// Token rows that no sequence uses get no gradient.
	g := make([]float32, m.TokenEmb.W.Len())
	e.B.Download(g, ps[0].grad)
	for _, row := range []int{2, 5, 27} {
		for j := 0; j < cfg.Width; j++ {
			if g[row*cfg.Width+j] != 0 {
				t.Fatalf("token_embedding row %d (unused) has gradient %g", row, g[row*cfg.Width+j])
			}
		}
	}
}

// centralDiff is (L(θ+h·d) − L(θ−h·d)) / 2h, restoring θ.
func centralDiff(e *tensor.Engine, p *tensor.Tensor, vals, dir []float32, h float32, loss func() float64) float64 {
	shift := func(s float32) {
		v := make([]float32, len(vals))
		for i := range v {
			v[i] = vals[i] + s*dir[i]
		}
		e.B.Upload(p.Data(), v)
	}
	shift(h)
	lp := loss()
	shift(-h)
	lm := loss()
	e.B.Upload(p.Data(), vals)
	return (lp - lm) / (2 * float64(h))
}

func scaled(v []float32, s float32) []float32 {
	for i := range v {
		v[i] *= s
	}
	return v
}
