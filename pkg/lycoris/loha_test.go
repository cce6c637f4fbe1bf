package lycoris

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

// smallLayers builds one Linear and one 3×3 conv with random base weights,
// keyed as UNet layers so that they get kohya names.
func smallLayers(e *tensor.Engine, r *rand.Rand) (*nn.Linear, *nn.Conv2d) {
	vals := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.5)
		}
		return v
	}
	l := &nn.Linear{Key: UNetPrefix + "time_embed.0", In: 6, Out: 5,
		W: e.Persistent(tensor.F32, vals(30), 5, 6), B: e.Persistent(tensor.F32, vals(5), 5)}
	c := &nn.Conv2d{Key: UNetPrefix + "input_blocks.0.0", In: 3, Out: 4, Kernel: 3, Stride: 1, Pad: 1,
		W: e.Persistent(tensor.F32, vals(108), 4, 3, 3, 3), B: e.Persistent(tensor.F32, vals(4), 4)}
	return l, c
}

func TestLoHaDeltaMatchesDefinition(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	r := rand.New(rand.NewPCG(1, 9))
	l, c := smallLayers(e, r)
	net, err := New(e, Config{Algo: AlgoLoHa, Dim: 3, Alpha: 2, ConvDim: 2, ConvAlpha: 1}, []*nn.Linear{l}, []*nn.Conv2d{c}, r)
	if err != nil {
		t.Fatal(err)
	}
	// Random values everywhere (w2_a starts at zero).
	v := make([]float32, net.Len())
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	e.B.Upload(net.Params, v)
	for _, m := range net.Modules {
		get := func(suf string) ([]float32, tensor.Shape) {
			x, err := net.Values(m.Name+suf, false)
			if err != nil {
				t.Fatal(err)
			}
			en, _ := net.Entry(m.Name + suf)
			return x, en.Shape
		}
		w1a, s1a := get(".hada_w1_a")
		w1b, s1b := get(".hada_w1_b")
		w2a, _ := get(".hada_w2_a")
		w2b, _ := get(".hada_w2_b")
		out, rank, cols := s1a[0], s1a[1], s1b[1]
		scale := float64(m.Alpha) / float64(m.Rank)
		got := m.DeltaLoHa().Float32s()
		for o := 0; o < out; o++ {
			for j := 0; j < cols; j++ {
				var p1, p2 float64
				for k := 0; k < rank; k++ {
					p1 += float64(w1a[o*rank+k]) * float64(w1b[k*cols+j])
					p2 += float64(w2a[o*rank+k]) * float64(w2b[k*cols+j])
				}
				want := scale * p1 * p2
				if d := math.Abs(float64(got[o*cols+j]) - want); d > 1e-5*(1+math.Abs(want)) {
					t.Fatalf("%s ΔW[%d,%d] = %v, want %v", m.Name, o, j, got[o*cols+j], want)
				}
			}
		}
	}
}

// TestLoHaGradients checks every LoHa factor's gradient through a Linear
// and a conv against central finite differences.
func TestLoHaGradients(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	r := rand.New(rand.NewPCG(2, 9))
	l, c := smallLayers(e, r)
	net, err := New(e, Config{Algo: AlgoLoHa, Dim: 2, Alpha: 2, ConvDim: 2, ConvAlpha: 2}, []*nn.Linear{l}, []*nn.Conv2d{c}, r)
	if err != nil {
		t.Fatal(err)
	}
	params := make([]float32, net.Len())
	for i := range params {
		params[i] = float32(r.NormFloat64() * 0.5)
	}
	xl := make([]float32, 2*6)
	xc := make([]float32, 1*3*4*4)
	for _, x := range [][]float32{xl, xc} {
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
	}
	loss := func() *tensor.Tensor {
		yl := l.Forward(e.FromFloat32(xl, 2, 6))
		yc := c.Forward(e.FromFloat32(xc, 1, 3, 4, 4))
		a := tensor.MSELoss(yl, e.Zeros(2, 5), nil)
		b := tensor.MSELoss(yc, e.Zeros(1, 4, 4, 4), nil)
		return tensor.Add(a, b)
	}
	e.B.Upload(net.Params, params)
	net.ZeroGrad()
	e.Backward(loss(), 1)
	grad := make([]float32, net.Len())
	e.B.Download(grad, net.Grads)
	e.EndStep()
	var num, den float64
	const h = 1e-2
	for i := range params {
		orig := params[i]
		var lp, lm float32
		for s, dst := range []*float32{&lp, &lm} {
			params[i] = orig + h*float32(1-2*s)
			e.B.Upload(net.Params, params)
			e.NoGrad(func() { *dst = loss().Item() })
			e.EndStep()
		}
		params[i] = orig
		fd := float64(lp-lm) / (2 * h)
		d := float64(grad[i]) - fd
		num += d * d
		den += fd * fd
	}
	if rel := math.Sqrt(num / den); !(rel < 1e-2) {
		t.Fatalf("LoHa gradients: relative L2 error %.3g against finite differences", rel)
	}
}

func TestLoHaSaveLoad(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	r := rand.New(rand.NewPCG(3, 9))
	l, c := smallLayers(e, r)
	net, err := New(e, Config{Algo: AlgoLoHa, Dim: 3, Alpha: 1.5, ConvDim: 2, ConvAlpha: 1}, []*nn.Linear{l}, []*nn.Conv2d{c}, r)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "loha.safetensors")
	if err := net.Save(path, safetensors.F16, map[string]string{"ss_network_args": `{"algo": "loha"}`}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Modules) != 2 || !f.Modules[0].IsLoHa() {
		t.Fatalf("read back %d modules", len(f.Modules))
	}
	l2, c2 := smallLayers(e, r)
	net2, err := New(e, Config{Algo: AlgoLoHa, Dim: 3, Alpha: 1, ConvDim: 2, ConvAlpha: 1}, []*nn.Linear{l2}, []*nn.Conv2d{c2}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := net2.Load(f); err != nil {
		t.Fatal(err)
	}
	for _, en := range net.Entries {
		a, _ := net.Values(en.Key, false)
		b, _ := net2.Values(en.Key, false)
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-3*(1+math.Abs(float64(a[i]))) { // saved as F16
				t.Fatalf("%s[%d]: %v vs %v", en.Key, i, a[i], b[i])
			}
		}
	}
	if net2.Modules[0].Alpha != 1.5 {
		t.Errorf("alpha %v, want 1.5 from the file", net2.Modules[0].Alpha)
	}
	// A LoCon network refuses a LoHa file.
	l3, c3 := smallLayers(e, r)
	net3, _ := New(e, Config{Dim: 3, ConvDim: 2}, []*nn.Linear{l3}, []*nn.Conv2d{c3}, r)
	if err := net3.Load(f); err == nil {
		t.Error("LoCon network loaded a LoHa file")
	}
}
