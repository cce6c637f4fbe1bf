package lycoris

import (
	"math/rand/v2"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/tensor"
)

// TestGoldenLoConTE applies the golden text-encoder LoCon and checks the
// output, the loss and every LoCon gradient.
func TestGoldenLoConTE(t *testing.T) {
	golden.ForEach(t, "locon_te", func(t *testing.T, c *golden.Case) {
		cfg, err := clip.ParseConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		e := tensor.NewEngine(cpu.New())
		mf, err := safetensors.Open(c.Path("model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer mf.Close()
		b := nn.NewBuilder(sd.TEPrefix, sd.NewFileSource(mf, e, tensor.F32))
		m := clip.New(b, cfg)
		if b.Err() != nil {
			t.Fatal(b.Err())
		}
		var lins []*nn.Linear
		for _, nl := range m.Linears() {
			lins = append(lins, nl.L)
		}
		net, err := New(e, Config{Dim: 8, Alpha: 4}, lins, nil, rand.New(rand.NewPCG(3, 3)))
		if err != nil {
			t.Fatal(err)
		}
		for k, a := range setGoldenFactors(t, net, c.Path("locon.safetensors")) {
			if len(a) != 1 || a[0] != 4 {
				t.Fatalf("%s: alpha %v, want 4", k, a)
			}
		}
		idsFlat := c.Int64(t, "ids")
		shape := c.Shape("ids")
		ids := make([][]int32, shape[0])
		for i := range ids {
			for _, v := range idsFlat[i*shape[1] : (i+1)*shape[1]] {
				ids[i] = append(ids[i], int32(v))
			}
		}
		out := m.Encode(ids, 1)
		loss := tensor.MSELoss(out, e.FromFloat32(c.Float32(t, "target"), c.Shape("target")...), nil)
		e.Backward(loss, 1)
		c.Check(t, "out", out.Float32s())
		c.Check(t, "loss", loss.Float32s())
		worst := 0.0
		for _, en := range net.Entries {
			g, err := net.Values(en.Key, true)
			if err != nil {
				t.Fatal(err)
			}
			worst = max(worst, c.Check(t, "grad/"+en.Key, g))
		}
		t.Logf("%d text-encoder LoCon gradients, worst relative L2 %.3g", len(net.Entries), worst)
	})
}
