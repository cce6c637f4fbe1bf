package sd_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// tinyCases finds the first golden case of the UNet, VAE and CLIP kinds.
func tinyCases(t *testing.T) (u, v, c *golden.Case) {
	t.Helper()
	root, ok := golden.Root()
	if !ok {
		t.Skip("golden folder not found: skipping the diffusers-folder golden test")
	}
	all, err := golden.All(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range all {
		switch {
		case k.Kind == "unet_forward" && u == nil:
			u = k
		case k.Kind == "vae" && v == nil:
			v = k
		case k.Kind == "clip_text" && c == nil:
			c = k
		}
	}
	if u == nil || v == nil || c == nil {
		t.Fatalf("golden folder %s lacks a unet_forward, vae or clip_text case", root)
	}
	t.Cleanup(func() { u.Close(); v.Close(); c.Close() })
	return u, v, c
}

// folderOpts varies the diffusers folder written from the golden models.
type folderOpts struct {
	oldVAENames bool             // pre-0.14 VAE attention names (query, key, value, proj_attn)
	drop        string           // a diffusers key to leave out ("dir/key")
	extra       map[string][]int // extra F32 tensors ("dir/key" -> shape)
	reshape     map[string][]int // stored shape overrides ("dir/key" -> shape, same element count)
	configs     map[string]any   // sub-folder -> config.json content
}

// writeDiffusers converts the golden tiny models into a diffusers folder:
// each tensor under its diffusers name, VAE attention weights as [C, C]
// Linear weights, the bytes copied unchanged.
func writeDiffusers(t *testing.T, dir string, u, v, c *golden.Case, o folderOpts) {
	t.Helper()
	ut, err := sd.UNetTable(sd.SD15UNetLayout())
	if err != nil {
		t.Fatal(err)
	}
	vt, err := sd.VAETable(sd.SD15VAELayout())
	if err != nil {
		t.Fatal(err)
	}
	parts := []struct {
		sub, file, prefix string
		table             *sd.KeyTable
		c                 *golden.Case
	}{
		{"unet", "diffusion_pytorch_model.safetensors", sd.UNetPrefix, ut, u},
		{"vae", "diffusion_pytorch_model.safetensors", sd.VAEPrefix, vt, v},
		{"text_encoder", "model.safetensors", sd.CLIPModelPrefix, sd.CLIPTable(), c},
	}
	old := strings.NewReplacer(".to_q.", ".query.", ".to_k.", ".key.", ".to_v.", ".value.", ".to_out.0.", ".proj_attn.")
	for _, p := range parts {
		f, err := safetensors.Open(p.c.Path("model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		var specs []safetensors.Spec
		data := map[string][]byte{}
		for _, k := range f.Names() {
			rest, ok := strings.CutPrefix(k, p.prefix)
			if !ok {
				t.Fatalf("%s: key %s outside %s", p.c.Name, k, p.prefix)
			}
			m, ok := p.table.ToDiffusers(rest)
			if !ok {
				t.Fatalf("%s: key %s has no diffusers name", p.c.Name, k)
			}
			name := m.Key
			if o.oldVAENames && p.sub == "vae" {
				name = old.Replace(name)
			}
			if p.sub+"/"+name == o.drop {
				continue
			}
			info, _ := f.Info(k)
			shape := info.Shape
			if m.Squeeze {
				if len(shape) != 4 || shape[2] != 1 || shape[3] != 1 {
					t.Fatalf("%s: squeezed key %s has shape %v", p.c.Name, k, shape)
				}
				shape = shape[:2]
			}
			if s, ok := o.reshape[p.sub+"/"+name]; ok {
				shape = s
			}
			raw, err := f.ReadRaw(k)
			if err != nil {
				t.Fatal(err)
			}
			specs = append(specs, safetensors.Spec{Name: name, DType: info.DType, Shape: shape})
			data[name] = raw
		}
		f.Close()
		for k, s := range o.extra {
			if sub, name, _ := strings.Cut(k, "/"); sub == p.sub {
				n := 1
				for _, d := range s {
					n *= d
				}
				specs = append(specs, safetensors.Spec{Name: name, DType: safetensors.F32, Shape: s})
				data[name] = make([]byte, 4*n)
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, p.sub), 0o755); err != nil {
			t.Fatal(err)
		}
		w, err := safetensors.Create(filepath.Join(dir, p.sub, p.file), specs, map[string]string{"format": "pt"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			if err := w.Write(s.Name, data[s.Name]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if cfg, ok := o.configs[p.sub]; ok {
			raw, _ := json.Marshal(cfg)
			if err := os.WriteFile(filepath.Join(dir, p.sub, "config.json"), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// sd15Configs are the parts of diffusers' config.json files the reader
// uses, with SD 1.5's values (the tiny models share the block layout).
var sd15Configs = map[string]any{
	"unet": map[string]any{"_class_name": "UNet2DConditionModel", "in_channels": 4, "layers_per_block": 2, "cross_attention_dim": 768,
		"down_block_types": []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
	"vae": map[string]any{"_class_name": "AutoencoderKL", "layers_per_block": 2, "block_out_channels": []int{128, 256, 512, 512}},
}

// TestDiffusersGolden writes a diffusers folder from the golden tiny UNet,
// VAE and CLIP models and checks that the models load from it through the
// key tables, unchanged, and still match the golden outputs.
func TestDiffusersGolden(t *testing.T) {
	uc, vc, cc := tinyCases(t)
	for _, tc := range []struct {
		name string
		o    folderOpts
	}{
		{"current", folderOpts{configs: sd15Configs}},
		{"old-vae-names-no-config", folderOpts{oldVAENames: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeDiffusers(t, dir, uc, vc, cc, tc.o)
			if !sd.IsDiffusers(dir) {
				t.Fatal("IsDiffusers false on the folder")
			}
			d, err := sd.OpenDiffusers(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			e := tensor.NewEngine(cpu.New())
			src := d.Source(e, tensor.F32)

			// UNet.
			var ucfg unet.Config
			if err := json.Unmarshal(uc.Config, &ucfg); err != nil {
				t.Fatal(err)
			}
			u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, src), ucfg)
			if err != nil {
				t.Fatal(err)
			}
			x := e.FromFloat32(uc.Float32(t, "x"), uc.Shape("x")...)
			var ts []float32
			for _, s := range uc.Int64(t, "timesteps") {
				ts = append(ts, float32(s))
			}
			ctx := e.FromFloat32(uc.Float32(t, "context"), uc.Shape("context")...)
			e.NoGrad(func() {
				t.Logf("unet out: rel L2 %.2e", uc.Check(t, "out", u.Forward(x, ts, ctx).Float32s()))
			})
			e.EndStep()

			// VAE.
			vcfg, err := vae.ConfigFromLDM(vc.Config)
			if err != nil {
				t.Fatal(err)
			}
			vb := nn.NewBuilder(sd.VAEPrefix, src)
			v := vae.New(vb, vcfg)
			if err := vb.Err(); err != nil {
				t.Fatal(err)
			}
			img := e.FromFloat32(vc.Float32(t, "image"), vc.Shape("image")...)
			z := e.FromFloat32(vc.Float32(t, "z_scaled"), vc.Shape("z_scaled")...)
			e.NoGrad(func() {
				mean, logvar := v.Encode(img)
				t.Logf("vae mean: rel L2 %.2e", vc.Check(t, "mean", mean.Float32s()))
				t.Logf("vae logvar: rel L2 %.2e", vc.Check(t, "logvar", logvar.Float32s()))
				dec := v.Decode(tensor.Scale(z, 1/v.Cfg.ScaleFactor))
				t.Logf("vae decoded: rel L2 %.2e", vc.Check(t, "decoded", dec.Float32s()))
			})
			e.EndStep()

			// CLIP.
			ccfg, err := clip.ParseConfig(cc.Config)
			if err != nil {
				t.Fatal(err)
			}
			cb := nn.NewBuilder(sd.TEPrefix, src)
			m := clip.New(cb, ccfg)
			if err := cb.Err(); err != nil {
				t.Fatal(err)
			}
			sh := cc.Shape("ids")
			flat := cc.Int64(t, "ids")
			ids := make([][]int32, sh[0])
			for i := range ids {
				for _, id := range flat[i*sh[1] : (i+1)*sh[1]] {
					ids[i] = append(ids[i], int32(id))
				}
			}
			e.NoGrad(func() {
				t.Logf("clip last: rel L2 %.2e", cc.Check(t, "last", m.Encode(ids, 1).Float32s()))
				t.Logf("clip penultimate: rel L2 %.2e", cc.Check(t, "penultimate", m.Encode(ids, 2).Float32s()))
			})
			e.EndStep()

			if un := src.Unexpected(""); len(un) > 0 {
				t.Errorf("unconsumed tensors: %v", un)
			}
			// Info and Names speak single-file names and shapes.
			names := d.Names()
			if len(names) == 0 {
				t.Fatal("Names is empty")
			}
			k := sd.VAEPrefix + "decoder.mid.attn_1.q.weight"
			if i, ok := d.Info(k); !ok || len(i.Shape) != 4 || i.Shape[2] != 1 || i.Shape[3] != 1 {
				t.Errorf("Info(%s) = %+v, %v; want a [C,C,1,1] shape", k, i, ok)
			}
		})
	}
}
