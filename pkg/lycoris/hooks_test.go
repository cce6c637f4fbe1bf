package lycoris

import (
	"math/rand/v2"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
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
		if d := golden.RelL2(out(), base); d != 0 {
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
	if d := golden.RelL2(out(), want); d > 1e-5 {
		t.Fatalf("stacked: relative L2 %g from the sum of the single deltas", d)
	}
	// Take them off out of order: the rest must stay.
	for k, name := range []string{"locon1", "loha2", "locon2", "loha1"} {
		nets[name].Detach()
		for i := range want {
			want[i] -= alone[name][i] - base[i]
		}
		if d := golden.RelL2(out(), want); d > 1e-5 {
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

// TestConfigModules builds a network for some of the layers only, with
// ranks per module (a file read with dim_from_weights); a name no layer
// has is an error.
func TestConfigModules(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	r := rand.New(rand.NewPCG(6, 6))
	l, c := smallLayers(e, r)
	ln, _ := KohyaName(l.Key)
	cn, _ := KohyaName(c.Key)
	n, err := New(e, Config{Dim: 4, Alpha: 2, ConvDim: 2, Modules: map[string]int{cn: 3}}, []*nn.Linear{l}, []*nn.Conv2d{c}, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Modules) != 1 || n.Modules[0].Name != cn || n.Modules[0].Rank != 3 || n.Modules[0].Alpha != 3 {
		t.Fatalf("modules %+v, want only %s at rank 3 (alpha = rank: conv_alpha unset)", n.Modules, cn)
	}
	if len(l.Adapters) != 0 || len(c.Adapters) != 1 {
		t.Fatalf("adapters: linear %d, conv %d; want 0 and 1", len(l.Adapters), len(c.Adapters))
	}
	n.Detach()
	n, err = New(e, Config{Dim: 4, Alpha: 2, ConvDim: 2, Modules: map[string]int{ln: 5, cn: 0}}, []*nn.Linear{l}, []*nn.Conv2d{c}, r)
	if err != nil {
		t.Fatal(err)
	}
	if n.Modules[0].Rank != 5 || n.Modules[0].Alpha != 2 || n.Modules[1].Rank != 2 {
		t.Fatalf("ranks %d (alpha %g), %d; want 5 (alpha 2), 2", n.Modules[0].Rank, n.Modules[0].Alpha, n.Modules[1].Rank)
	}
	if en, ok := n.Entry(ln + ".lora_down.weight"); !ok || en.Shape[0] != 5 {
		t.Fatalf("%s.lora_down.weight: %v", ln, en.Shape)
	}
	n.Detach()
	if _, err := New(e, Config{Dim: 4, Modules: map[string]int{"lora_unet_nowhere": 2}}, []*nn.Linear{l}, []*nn.Conv2d{c}, r); err == nil ||
		!strings.Contains(err.Error(), "lora_unet_nowhere") {
		t.Fatalf("a module no layer has: %v", err)
	}
}
