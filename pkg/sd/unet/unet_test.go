package unet

import (
	"encoding/json"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/sdtest"
	"loco/pkg/tensor"
)

const prefix = "model.diffusion_model."

// TestKeysSD15 builds the real-size UNet in shape-only mode and compares its
// key and shape list with golden/sd15/unet_keys.tsv.
func TestKeysSD15(t *testing.T) {
	path, ok := golden.Shared("golden/sd15/unet_keys.tsv")
	if !ok {
		t.Skip("../shared/golden/sd15/unet_keys.tsv not found")
	}
	want := sdtest.ReadKeyList(t, path)
	b := nn.NewBuilder(prefix, nil)
	if _, err := New(b, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	got := sdtest.SpecLines(b.Params())
	if len(got) != len(want) {
		t.Errorf("declared %d keys, list has %d", len(got), len(want))
	}
	sdtest.DiffLists(t, "unet keys", got, want)
	total := 0
	for _, p := range b.Params() {
		total += p.Shape.Numel()
	}
	if total != 859520964 {
		t.Errorf("parameter count %d, want 859520964", total)
	}
}

func loadCase(t *testing.T, c *golden.Case, e *tensor.Engine) *UNet { return loadCaseB(t, c, e) }

func loadCaseB(t testing.TB, c *golden.Case, e *tensor.Engine) *UNet {
	t.Helper()
	var cfg Config
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(c.Path("model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	src := sd.NewFileSource(f, e, tensor.F32)
	u, err := New(nn.NewBuilder(prefix, src), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if un := src.Unused(prefix); len(un) > 0 {
		t.Fatalf("unused keys: %v", un)
	}
	return u
}

func inputs(t *testing.T, c *golden.Case, e *tensor.Engine) (x *tensor.Tensor, ts []float32, ctx *tensor.Tensor) {
	x = e.FromFloat32(c.Float32(t, "x"), c.Shape("x")...)
	for _, v := range c.Int64(t, "timesteps") {
		ts = append(ts, float32(v))
	}
	ctx = e.FromFloat32(c.Float32(t, "context"), c.Shape("context")...)
	return
}

func TestGoldenForward(t *testing.T) {
	golden.ForEach(t, "unet_forward", func(t *testing.T, c *golden.Case) {
		e := tensor.NewEngine(cpu.New())
		u := loadCase(t, c, e)
		x, ts, ctx := inputs(t, c, e)
		var out *tensor.Tensor
		e.NoGrad(func() { out = u.Forward(x, ts, ctx) })
		rel := c.Check(t, "out", out.Float32s())
		t.Logf("out: relative L2 error %.3g", rel)
	})
}
