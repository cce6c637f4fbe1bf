package lycoris

import (
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// TestStackAndDetach hooks networks of each kind on top of each other on
// the same layers: outputs add up (the first LoCon branch is fused, the
// next added; LoHa deltas add to the weight), and Detach takes exactly one
// network off, in any order, leaving the others.
func TestStackAndDetach(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	r := rand.New(rand.NewPCG(5, 5))
	l, c := smallLayers(e, r)
	xl := e.Persistent(tensor.F32, randVals(r, 2*6), 2, 6)
	xc := e.Persistent(tensor.F32, randVals(r, 3*4*4), 1, 3, 4, 4)
	out := func() []float32 {
		var v []float32
		e.NoGrad(func() {
			v = append(l.Forward(xl).Float32s(), c.Forward(xc).Float32s()...)
		})
		e.EndStep()
		return v
	}
	base := out()
	// One network alone, as a reference for each.
	alone := map[string][]float32{}
	nets := map[string]*Network{}
	for _, k := range []struct {
		name string
		cfg  Config
	}{
		{"locon1", Config{Dim: 2, ConvDim: 2}},
		{"locon2", Config{Dim: 3, ConvDim: 1, Tucker: true}},
		{"loha1", Config{Algo: AlgoLoHa, Dim: 2, ConvDim: 2}},
		{"loha2", Config{Algo: AlgoLoHa, Dim: 1, ConvDim: 1}},
	} {
		n, err := New(e, k.cfg, []*nn.Linear{l}, []*nn.Conv2d{c}, r)
		if err != nil {
			t.Fatal(err)
		}
		e.B.Upload(n.Params, randVals(r, n.Len())) // up and w2_a start at zero
		nets[k.name] = n
		alone[k.name] = out()
		n.Detach()
		if d := relL2(out(), base); d != 0 {
			t.Fatalf("%s: detached alone, output differs from the base by %g", k.name, d)
		}
	}
	// All four stacked (detached ones re-hooked in this order).
	order := []string{"locon1", "loha1", "locon2", "loha2"}
	for _, name := range order {
		n := nets[name]
		n.rehook(t, l, c)
	}
	want := make([]float32, len(base))
	for i := range want {
		want[i] = base[i]
		for _, name := range order {
			want[i] += alone[name][i] - base[i]
		}
	}
	if d := relL2(want, out()); d > 1e-5 {
		t.Fatalf("stacked: relative L2 %g from the sum of the single deltas", d)
	}
	// Take them off out of order: the rest must stay.
	for k, name := range []string{"locon1", "loha2", "locon2", "loha1"} {
		nets[name].Detach()
		for i := range want {
			want[i] -= alone[name][i] - base[i]
		}
		if d := relL2(want, out()); d > 1e-5 {
			t.Fatalf("after detaching %s (%d of 4): relative L2 %g", name, k+1, d)
		}
	}
}

// rehook hooks n's modules onto the layers again (New on the same layers
// with n's values).
func (n *Network) rehook(t *testing.T, l *nn.Linear, c *nn.Conv2d) {
	t.Helper()
	cfg := Config{Algo: n.Modules[0].algo, Dim: n.Modules[0].Rank, ConvDim: n.Modules[1].Rank, Tucker: n.Modules[1].Mid != nil,
		Alpha: n.Modules[0].Alpha, ConvAlpha: n.Modules[1].Alpha}
	m, err := New(n.e, cfg, []*nn.Linear{l}, []*nn.Conv2d{c}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, n.Len())
	n.e.B.Download(v, n.Params)
	n.e.B.Upload(m.Params, v)
	*n = *m
}

func randVals(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 0.5)
	}
	return v
}
