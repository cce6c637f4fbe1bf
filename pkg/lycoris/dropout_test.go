package lycoris

import (
	"math"
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// dropoutRig is one Linear (6→4) and one 3×3 conv (3→4) with rank 4
// LoCon modules whose up factors are the identity, so that the branch
// output is scale·mask⊙down(x) and the mask can be read back as
// (y_train − y_base)/(y_eval − y_base).
type dropoutRig struct {
	e   *tensor.Engine
	net *Network
	lin *nn.Linear
	cnv *nn.Conv2d
	xl  []float32 // [2,7,6]
	xc  []float32 // [2,3,5,5]
}

func newDropoutRig(t *testing.T) *dropoutRig {
	t.Helper()
	e := tensor.NewEngine(cpu.New())
	r := rand.New(rand.NewPCG(3, 4))
	vals := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	lin := &nn.Linear{Key: UNetPrefix + "time_embed.0", In: 6, Out: 4, W: e.Persistent(tensor.F32, vals(24), 4, 6)}
	cnv := &nn.Conv2d{Key: UNetPrefix + "input_blocks.0.0", In: 3, Out: 4, Kernel: 3, Stride: 1, Pad: 1,
		W: e.Persistent(tensor.F32, vals(108), 4, 3, 3, 3)}
	net, err := New(e, Config{Dim: 4, Alpha: 2, ConvDim: 4, ConvAlpha: 2}, []*nn.Linear{lin}, []*nn.Conv2d{cnv}, r)
	if err != nil {
		t.Fatal(err)
	}
	rig := &dropoutRig{e: e, net: net, lin: lin, cnv: cnv, xl: vals(2 * 7 * 6), xc: vals(2 * 3 * 5 * 5)}
	rig.setUp(true)
	return rig
}

// setUp makes every lora_up the identity (or zero).
func (g *dropoutRig) setUp(identity bool) {
	for _, m := range g.net.Modules {
		v := make([]float32, 16)
		if identity {
			for i := 0; i < 4; i++ {
				v[i*4+i] = 1
			}
		}
		if err := g.net.SetValues(m.Name+".lora_up.weight", v); err != nil {
			panic(err)
		}
	}
}

// outputs runs both layers without recording.
func (g *dropoutRig) outputs() (lin, cnv []float32) {
	g.e.NoGrad(func() {
		lin = g.lin.Forward(g.e.FromFloat32(g.xl, 2, 7, 6)).Float32s()
		cnv = g.cnv.Forward(g.e.FromFloat32(g.xc, 2, 3, 5, 5)).Float32s()
	})
	g.e.EndStep()
	return
}

// masks returns the effective masks of both modules for a training
// forward with the given seed.
func (g *dropoutRig) masks(t *testing.T, seed uint64) (lin, cnv []float64) {
	t.Helper()
	g.net.Eval()
	g.setUp(false)
	bl, bc := g.outputs()
	g.setUp(true)
	el, ec := g.outputs()
	g.net.Train(seed)
	tl, tc := g.outputs()
	g.net.Eval()
	ratio := func(tr, ev, base []float32) []float64 {
		out := make([]float64, len(tr))
		for i := range tr {
			d := float64(ev[i]) - float64(base[i])
			if math.Abs(d) < 1e-4 {
				t.Fatalf("branch output %d is %g: too small to read the mask", i, d)
			}
			out[i] = (float64(tr[i]) - float64(base[i])) / d
		}
		return out
	}
	return ratio(tl, el, bl), ratio(tc, ec, bc)
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-3 }

// checkValues checks that every mask value is 0 or keep and returns the
// fraction of zeros.
func checkValues(t *testing.T, what string, m []float64, keep float64) float64 {
	t.Helper()
	zeros := 0
	for i, v := range m {
		switch {
		case near(v, 0):
			zeros++
		case near(v, keep):
		default:
			t.Fatalf("%s: mask value %d is %g, want 0 or %g", what, i, v, keep)
		}
	}
	return float64(zeros) / float64(len(m))
}

func TestDropoutOffInEval(t *testing.T) {
	g := newDropoutRig(t)
	if err := g.net.SetDropout(Dropout{Dropout: 0.5, Rank: 0.5, Module: 0.5}); err != nil {
		t.Fatal(err)
	}
	el, ec := g.outputs()
	g.net.Train(7)
	g.net.Eval()
	al, ac := g.outputs()
	for i := range el {
		if el[i] != al[i] {
			t.Fatal("Linear: dropout applied in evaluation mode")
		}
	}
	for i := range ec {
		if ec[i] != ac[i] {
			t.Fatal("conv: dropout applied in evaluation mode")
		}
	}
}

// TestFeatureDropout: each rank feature of each position is dropped on its
// own, kept ones scaled by 1/(1−p).
func TestFeatureDropout(t *testing.T) {
	g := newDropoutRig(t)
	if err := g.net.SetDropout(Dropout{Dropout: 0.25}); err != nil {
		t.Fatal(err)
	}
	var zl, zc float64
	for seed := uint64(1); seed <= 8; seed++ {
		ml, mc := g.masks(t, seed)
		zl += checkValues(t, "Linear", ml, 1/0.75)
		zc += checkValues(t, "conv", mc, 1/0.75)
		// Not constant over positions: some (sample, rank) pair has both.
		mixed := false
		for b := 0; b < 2 && !mixed; b++ {
			for j := 0; j < 4 && !mixed; j++ {
				first := ml[(b*7)*4+j]
				for p := 1; p < 7; p++ {
					if !near(ml[(b*7+p)*4+j], first) {
						mixed = true
					}
				}
			}
		}
		if !mixed {
			t.Errorf("seed %d: the Linear mask is constant over the sequence: not element-wise dropout", seed)
		}
	}
	zl, zc = zl/8, zc/8
	t.Logf("dropped fraction: Linear %.3f, conv %.3f (p = 0.25)", zl, zc)
	if zl < 0.15 || zl > 0.35 || zc < 0.15 || zc > 0.35 {
		t.Errorf("dropped fraction Linear %.3f conv %.3f, want about 0.25", zl, zc)
	}
}

// TestRankDropout: one draw per (sample, rank channel), shared by every
// position of the sample; kept channels scaled by 1/(1−p).
func TestRankDropout(t *testing.T) {
	g := newDropoutRig(t)
	if err := g.net.SetDropout(Dropout{Rank: 0.5}); err != nil {
		t.Fatal(err)
	}
	var zeros float64
	for seed := uint64(1); seed <= 8; seed++ {
		ml, mc := g.masks(t, seed)
		zeros += checkValues(t, "Linear", ml, 2)
		checkValues(t, "conv", mc, 2)
		for b := 0; b < 2; b++ {
			for j := 0; j < 4; j++ {
				for p := 0; p < 7; p++ {
					if !near(ml[(b*7+p)*4+j], ml[(b*7)*4+j]) {
						t.Fatalf("seed %d: Linear mask of sample %d rank %d varies over positions", seed, b, j)
					}
				}
				for p := 0; p < 25; p++ {
					if !near(mc[(b*4+j)*25+p], mc[(b*4+j)*25]) {
						t.Fatalf("seed %d: conv mask of sample %d rank %d varies over pixels", seed, b, j)
					}
				}
			}
		}
	}
	if zeros /= 8; zeros < 0.25 || zeros > 0.75 {
		t.Errorf("dropped fraction %.3f, want about 0.5", zeros)
	}
}

// TestModuleDropout: a module's branch is all kept or all skipped.
func TestModuleDropout(t *testing.T) {
	g := newDropoutRig(t)
	if err := g.net.SetDropout(Dropout{Module: 0.5}); err != nil {
		t.Fatal(err)
	}
	skipped, kept := 0, 0
	for seed := uint64(1); seed <= 16; seed++ {
		ml, mc := g.masks(t, seed)
		for _, m := range [][]float64{ml, mc} {
			z := checkValues(t, "module", m, 1)
			switch z {
			case 0:
				kept++
			case 1:
				skipped++
			default:
				t.Fatalf("seed %d: module partly skipped (%.2f)", seed, z)
			}
		}
	}
	t.Logf("module dropout p=0.5: %d skipped, %d kept", skipped, kept)
	if skipped < 6 || kept < 6 {
		t.Errorf("%d skipped, %d kept of 32 draws with p = 0.5", skipped, kept)
	}
}

// TestDropoutDeterministicUnderRecompute: the masks depend only on the
// seed and the module, so a gradient-checkpointed block (whose forward is
// re-run in the backward pass) gets the same gradients as a plain one, and
// two training forwards with one seed agree.
func TestDropoutDeterministicUnderRecompute(t *testing.T) {
	g := newDropoutRig(t)
	if err := g.net.SetDropout(Dropout{Dropout: 0.3, Rank: 0.3, Module: 0.2}); err != nil {
		t.Fatal(err)
	}
	// Random up factors so that every factor gets a gradient.
	r := rand.New(rand.NewPCG(5, 5))
	for _, m := range g.net.Modules {
		v := make([]float32, 16)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		g.net.SetValues(m.Name+".lora_up.weight", v)
	}
	grads := func(seed uint64, checkpoint bool) ([]float32, float32) {
		g.net.ZeroGrad()
		g.net.Train(seed)
		defer g.net.Eval()
		var loss float32
		err := tensor.Catch(func() {
			block := func(in []*tensor.Tensor) *tensor.Tensor {
				yl := g.lin.Forward(in[0])
				yc := g.cnv.Forward(in[1])
				return tensor.Concat(0, tensor.Reshape(yl, 56), tensor.Reshape(yc, 200))
			}
			xl := g.e.FromFloat32(g.xl, 2, 7, 6)
			xc := g.e.FromFloat32(g.xc, 2, 3, 5, 5)
			var y *tensor.Tensor
			if checkpoint {
				y = g.e.Checkpoint(block, xl, xc)
			} else {
				y = block([]*tensor.Tensor{xl, xc})
			}
			l := tensor.MSELoss(tensor.Reshape(y, 1, 256), g.e.Zeros(1, 256), nil)
			loss = l.Item()
			g.e.Backward(l, 1)
		})
		g.e.EndStep()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float32, g.net.Len())
		g.e.B.Download(out, g.net.Grads)
		return out, loss
	}
	for seed := uint64(1); seed <= 4; seed++ {
		a, la := grads(seed, false)
		b, lb := grads(seed, true)
		c, lc := grads(seed, false)
		if la != lb || la != lc {
			t.Fatalf("seed %d: losses %v (plain), %v (checkpointed), %v (again)", seed, la, lb, lc)
		}
		nonzero := false
		for i := range a {
			if a[i] != c[i] {
				t.Fatalf("seed %d: gradient %d differs between two runs with one seed: %v, %v", seed, i, a[i], c[i])
			}
			if d := math.Abs(float64(a[i] - b[i])); d > 1e-5*(1+math.Abs(float64(a[i]))) {
				t.Fatalf("seed %d: gradient %d plain %v, checkpointed %v", seed, i, a[i], b[i])
			}
			nonzero = nonzero || a[i] != 0
		}
		if !nonzero {
			t.Fatalf("seed %d: all gradients zero", seed)
		}
	}
	d1, _ := grads(1, false)
	d2, _ := grads(2, false)
	same := true
	for i := range d1 {
		same = same && d1[i] == d2[i]
	}
	if same {
		t.Error("seeds 1 and 2 give the same gradients: the masks do not depend on the seed")
	}
}

func TestSetDropoutErrors(t *testing.T) {
	g := newDropoutRig(t)
	for _, d := range []Dropout{{Dropout: 1}, {Rank: -0.1}, {Module: 1.5}, {Dropout: math.NaN()}} {
		if err := g.net.SetDropout(d); err == nil {
			t.Errorf("SetDropout(%+v) accepted", d)
		}
	}
	e := tensor.NewEngine(cpu.New())
	l, c := smallLayers(e, rand.New(rand.NewPCG(1, 1)))
	net, err := New(e, Config{Algo: AlgoLoHa, Dim: 2}, []*nn.Linear{l}, []*nn.Conv2d{c}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := net.SetDropout(Dropout{Rank: 0.1}); err == nil {
		t.Error("rank_dropout accepted on a LoHa network")
	}
	if err := net.SetDropout(Dropout{Module: 0.1}); err != nil {
		t.Errorf("module_dropout on LoHa: %v", err)
	}
}
