package vae_test

import (
	"encoding/json"
	"sort"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/sdtest"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

func TestKeysSD15(t *testing.T) {
	path, ok := golden.Shared("golden/sd15/vae_keys.tsv")
	if !ok {
		t.Skip("../shared/golden/sd15/vae_keys.tsv not found")
	}
	want := sdtest.ReadKeyList(t, path)
	b := nn.NewBuilder(vae.Prefix, nil)
	vae.New(b, vae.DefaultConfig())
	got := sdtest.SpecLines(b.Params())
	if len(got) != len(want) {
		t.Errorf("declared %d keys, list has %d", len(got), len(want))
	}
	sdtest.DiffLists(t, "vae keys", got, want)
}

// loadCase builds the VAE of a golden case from its model.safetensors and
// checks that every file key under the prefix was consumed.
func loadCase(t *testing.T, c *golden.Case, e *tensor.Engine) *vae.VAE {
	t.Helper()
	cfg, err := vae.ConfigFromLDM(c.Config)
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	prefix := vae.Prefix
	if raw, ok := c.Raw["model_key_prefix"]; ok {
		if err := json.Unmarshal(raw, &prefix); err != nil {
			t.Fatal(err)
		}
	}
	f, err := safetensors.Open(c.Path("model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	src := sd.NewFileSource(f, e, tensor.F32)
	b := nn.NewBuilder(prefix, src)
	v := vae.New(b, cfg)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if un := src.Unused(prefix); len(un) > 0 {
		t.Fatalf("%s: %d unused tensors, first %s", c.Name, len(un), un[0])
	}
	return v
}

func TestGolden(t *testing.T) {
	golden.ForEach(t, "vae", func(t *testing.T, c *golden.Case) {
		e := tensor.NewEngine(cpu.New())
		v := loadCase(t, c, e)
		outs := map[string][]float32{}
		// The encode part.
		if _, ok := c.Tensors["image"]; ok {
			x := e.FromFloat32(c.Float32(t, "image"), c.Shape("image")...)
			e.NoGrad(func() {
				h, m := v.EncodeMoments(x)
				mean, raw, lv := v.Split(m)
				outs["h_encoder"] = h.Float32s()
				outs["mean"] = mean.Float32s()
				outs["logvar_raw"] = raw.Float32s()
				outs["logvar"] = lv.Float32s()
				outs["latent"] = tensor.Scale(mean, v.Cfg.ScaleFactor).Float32s()
				if _, ok := c.Tensors["noise"]; ok {
					s := make([]float32, len(outs["mean"]))
					vae.Sample(s, outs["mean"], outs["logvar"], c.Float32(t, "noise"))
					outs["sample"] = s
				}
				// The memory-saving path must give the same numbers.
				mean2, lv2 := v.Encode(x)
				golden.CheckRel(t, c.Name+"/Encode mean", mean2.Float32s(), outs["mean"], 0)
				golden.CheckRel(t, c.Name+"/Encode logvar", lv2.Float32s(), outs["logvar"], 0)
			})
			e.EndStep()
		}
		// The decode part.
		if _, ok := c.Tensors["z_scaled"]; ok {
			z := e.FromFloat32(c.Float32(t, "z_scaled"), c.Shape("z_scaled")...)
			e.NoGrad(func() {
				zu := tensor.Scale(z, 1/v.Cfg.ScaleFactor)
				hp := v.PostQuant(zu)
				outs["h_post_quant"] = hp.Float32s()
				outs["decoded"] = v.Decoder.Forward(hp).Float32s()
				golden.CheckRel(t, c.Name+"/Decode", v.Decode(zu).Float32s(), outs["decoded"], 0)
			})
			e.EndStep()
		}
		names := make([]string, 0, len(c.Tensors))
		for name := range c.Tensors {
			names = append(names, name)
		}
		sort.Strings(names)
		checked := 0
		for _, name := range names {
			spec := c.Tensors[name]
			if spec.Role != "output" {
				continue
			}
			got, ok := outs[name]
			if !ok {
				t.Errorf("%s: output %s (part %s) is not computed by this test", c.Name, name, spec.Part)
				continue
			}
			rel := c.Check(t, name, got)
			t.Logf("%s: %-12s rel L2 %.2e (tol %.0e)", c.Name, name, rel, c.Tol(name))
			checked++
		}
		if checked == 0 {
			t.Errorf("%s: no output checked", c.Name)
		}
	})
}

// TestEncodeFrees checks that Encode without gradients frees as it goes:
// at its peak it holds a few full-resolution activations, and afterwards
// only the two results, the small per-norm statistics (mean, rstd) and the
// attention log-sum-exp stay live.
func TestEncodeFrees(t *testing.T) {
	cb := newCounting(cpu.New())
	e := tensor.NewEngine(cb)
	cfg := vae.DefaultConfig()
	cfg.Ch = 32
	b := nn.NewBuilder(vae.Prefix, sdtest.RandSource{E: e, Seed: 3})
	v := vae.New(b, cfg)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	x := e.FromFloat32(sdtest.Randn(5, 2*3*64*80), 2, 3, 64, 80)
	norms := 0
	count := func(r *vae.ResBlock) { norms += 2 }
	for _, l := range v.Encoder.Down {
		for _, r := range l.Blocks {
			count(r)
		}
	}
	count(v.Encoder.Mid.Block1)
	count(v.Encoder.Mid.Block2)
	norms += 2 // mid.attn_1.norm, norm_out
	before := e.ArenaLive()
	weights := cb.live
	var mean, logvar *tensor.Tensor
	e.NoGrad(func() { mean, logvar = v.Encode(x) })
	live := e.ArenaLive() - before
	// One full-resolution activation is [2, Ch, 64, 80]; a ResBlock needs
	// its input, the normalised input and the conv output at once, the
	// downsampler the input, its padded copy and a scratch copy.
	act := 2 * cfg.Ch * 64 * 80 * 4
	if peak := cb.peak - weights; peak > 4*act {
		t.Errorf("Encode peak %d bytes above the weights, want at most 4 activations (%d bytes)", peak, 4*act)
	} else {
		t.Logf("Encode peak %.2f activations of [2,%d,64,80]", float64(peak)/float64(act), cfg.Ch)
	}
	// x stays; mean, logvar; 2 statistics per norm; 1 lse.
	if want := 2 + 2*norms + 1; live > want {
		t.Errorf("after Encode %d arena allocations are live, want at most %d (results and statistics)", live, want)
	}
	if !mean.Shape().Equal(tensor.Shape{2, 4, 8, 10}) || !logvar.Shape().Equal(tensor.Shape{2, 4, 8, 10}) {
		t.Errorf("mean %v, logvar %v, want [2,4,8,10]", mean.Shape(), logvar.Shape())
	}
}

// TestDecodeShape runs the decoder at a non-square size with batch 2.
func TestDecodeShape(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	cfg := vae.DefaultConfig()
	cfg.Ch = 32
	b := nn.NewBuilder(vae.Prefix, sdtest.RandSource{E: e, Seed: 4})
	v := vae.New(b, cfg)
	z := e.FromFloat32(sdtest.Randn(6, 2*4*3*5), 2, 4, 3, 5)
	var out []float32
	var sh tensor.Shape
	e.NoGrad(func() {
		y := v.Decode(z)
		sh = y.Shape()
		out = y.Float32s()
	})
	if !sh.Equal(tensor.Shape{2, 3, 24, 40}) {
		t.Fatalf("decoded shape %v, want [2,3,24,40]", sh)
	}
	if golden.Norm(out) == 0 {
		t.Fatal("decoded image is all zero")
	}
}

func TestConfigFromLDM(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		ok         bool
	}{
		{"sd15", `{"embed_dim":4,"ddconfig":{"double_z":true,"z_channels":4,"resolution":256,"in_channels":3,"out_ch":3,"ch":128,"ch_mult":[1,2,4,4],"num_res_blocks":2,"attn_resolutions":[],"dropout":0.0}}`, true},
		{"attention", `{"embed_dim":4,"ddconfig":{"z_channels":4,"in_channels":3,"out_ch":3,"ch":128,"ch_mult":[1,2,4,4],"num_res_blocks":2,"attn_resolutions":[32]}}`, false},
		{"single_z", `{"embed_dim":4,"ddconfig":{"double_z":false,"z_channels":4,"in_channels":3,"out_ch":3,"ch":128,"ch_mult":[1,2,4,4],"num_res_blocks":2}}`, false},
		{"groups", `{"embed_dim":4,"ddconfig":{"z_channels":4,"in_channels":3,"out_ch":3,"ch":48,"ch_mult":[1,2],"num_res_blocks":2}}`, false},
		{"syntax", `{"embed_dim":`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := vae.ConfigFromLDM([]byte(tc.json))
			if (err == nil) != tc.ok {
				t.Fatalf("ConfigFromLDM: err %v, want ok %v", err, tc.ok)
			}
			if tc.ok {
				d := vae.DefaultConfig()
				if c.Ch != d.Ch || len(c.ChMult) != 4 || c.ScaleFactor != d.ScaleFactor || c.Factor() != 8 {
					t.Errorf("got %+v, want %+v", c, d)
				}
			}
		})
	}
}
