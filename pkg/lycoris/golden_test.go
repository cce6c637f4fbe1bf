package lycoris

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// TestGoldenLoConUNet applies the golden LoCon to the golden UNet, checks
// the forward pass, the loss and the gradient of every LoCon tensor and of
// the input against the PyTorch/LyCORIS reference.
func TestGoldenLoConUNet(t *testing.T) {
	golden.ForEach(t, "locon_unet", func(t *testing.T, c *golden.Case) {
		cfg, lcfg := goldenLoConConfig(t, c)
		e := tensor.NewEngine(cpu.New())
		mf, err := safetensors.Open(c.Path("model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer mf.Close()
		u, err := unet.New(nn.NewBuilder(UNetPrefix, sd.NewFileSource(mf, e, tensor.F32)), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var ts []float32
		for _, v := range c.Int64(t, "timesteps") {
			ts = append(ts, float32(v))
		}
		newInputs := func() (x, ctx, target *tensor.Tensor) {
			x = e.FromFloat32(c.Float32(t, "x"), c.Shape("x")...).RequireGrad()
			ctx = e.FromFloat32(c.Float32(t, "context"), c.Shape("context")...)
			target = e.FromFloat32(c.Float32(t, "target"), c.Shape("target")...)
			return
		}
		x, ctx, _ := newInputs()
		var base *tensor.Tensor
		e.NoGrad(func() { base = u.Forward(x, ts, ctx) })
		c.Check(t, "out_base", base.Float32s())
		e.EndStep()

		lin, conv := u.Layers()
		net, err := New(e, lcfg, lin, conv, rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			t.Fatal(err)
		}
		setGoldenFactors(t, net, c.Path("locon.safetensors"))

		// The mirror (mirror.go) is what F16/BF16 training computes with;
		// forced in F32 here, its refresh and gradient fold are checked
		// against the reference too.
		for _, v := range []struct{ mirror, ck bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
			ck := v.ck
			net.forceMirror = v.mirror
			u.Checkpoint = ck
			net.ZeroGrad()
			x, ctx, target := newInputs()
			out := u.Forward(x, ts, ctx)
			loss := tensor.MSELoss(out, target, nil)
			e.Backward(loss, 1)
			c.Check(t, "out", out.Float32s())
			c.Check(t, "loss", loss.Float32s())
			gx := make([]float32, x.Len())
			e.B.Download(gx, x.Grad())
			c.Check(t, "grad/x", gx)
			worst, worstKey, n := 0.0, "", 0
			for _, en := range net.Entries {
				g, err := net.Values(en.Key, true)
				if err != nil {
					t.Fatal(err)
				}
				rel := c.Check(t, "grad/"+en.Key, g)
				if !c.IsZero("grad/"+en.Key) && rel > worst {
					worst, worstKey = rel, en.Key
				}
				n++
			}
			t.Logf("mirror %v, checkpointing %v: %d LoCon gradients, worst relative L2 %.3g (%s); arena %d live", v.mirror, ck, n, worst, worstKey, e.ArenaLive())
			e.EndStep()
		}
	})
}

// setGoldenFactors loads every trainable tensor of the golden LoCon file at
// path into net, failing unless the file holds exactly the network's
// tensors, and returns the file's alphas by key.
func setGoldenFactors(t testing.TB, net *Network, path string) map[string][]float32 {
	t.Helper()
	lf, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	alphas := map[string][]float32{}
	loaded := 0
	for _, k := range lf.Names() {
		v, err := lf.ReadFloat32(k)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(k, ".alpha") {
			alphas[k] = v
			continue
		}
		if err := net.SetValues(k, v); err != nil {
			t.Fatal(err)
		}
		loaded++
	}
	if loaded != len(net.Entries) {
		t.Fatalf("%s has %d trainable tensors, the network %d", path, loaded, len(net.Entries))
	}
	return alphas
}

// goldenLoConConfig reads a locon_unet golden case's configuration: the
// UNet's and the network's.
func goldenLoConConfig(t testing.TB, c *golden.Case) (unet.Config, Config) {
	t.Helper()
	var cfg unet.Config
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	var lc struct {
		Dim        int     `json:"network_dim"`
		Alpha      float32 `json:"network_alpha"`
		ConvDim    int     `json:"conv_dim"`
		ConvAlpha  float32 `json:"conv_alpha"`
		Multiplier float32 `json:"multiplier"`
		Tucker     bool    `json:"use_tucker"`
	}
	if err := json.Unmarshal(c.Config, &lc); err != nil {
		t.Fatal(err)
	}
	return cfg, Config{Dim: lc.Dim, Alpha: lc.Alpha, ConvDim: lc.ConvDim, ConvAlpha: lc.ConvAlpha,
		Multiplier: lc.Multiplier, Tucker: lc.Tucker}
}
