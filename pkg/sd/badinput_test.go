package sd_test

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// tinyConfigs are the golden tiny sizes (CLIP width 32 so that it feeds
// the UNet, a 600-token vocabulary to keep the file small).
func tinyConfigs() (unet.Config, vae.Config, clip.Config) {
	u := unet.DefaultConfig()
	u.ModelChannels, u.ContextDim = 32, 32
	v := vae.DefaultConfig()
	v.Ch = 32
	c := clip.Config{VocabSize: 600, ContextLength: 77, Width: 32, Layers: 3, Heads: 1, MLP: 128, Eps: 1e-5}
	return u, v, c
}

func tinyParams(t testing.TB) []nn.ParamSpec {
	t.Helper()
	uc, vc, cc := tinyConfigs()
	ub := nn.NewBuilder(sd.UNetPrefix, nil)
	if _, err := unet.New(ub, uc); err != nil {
		t.Fatal(err)
	}
	vb := nn.NewBuilder(sd.VAEPrefix, nil)
	vae.New(vb, vc)
	cb := nn.NewBuilder(sd.TEPrefix, nil)
	clip.New(cb, cc)
	return append(append(ub.Params(), vb.Params()...), cb.Params()...)
}

// loadAll opens a single-file checkpoint and builds the three tiny models
// from it, returning the first error and the unexpected keys.
func loadAll(path string) ([]string, error) {
	ck, err := sd.OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	e := tensor.NewEngine(cpu.New())
	src := ck.Source(e, tensor.F32)
	return buildAll(src, func(p string) []string { return src.Unexpected(p) })
}

func buildAll(src nn.Source, unexpected func(string) []string) ([]string, error) {
	uc, vc, cc := tinyConfigs()
	if _, err := unet.New(nn.NewBuilder(sd.UNetPrefix, src), uc); err != nil {
		return nil, err
	}
	vb := nn.NewBuilder(sd.VAEPrefix, src)
	vae.New(vb, vc)
	if err := vb.Err(); err != nil {
		return nil, err
	}
	cb := nn.NewBuilder(sd.TEPrefix, src)
	clip.New(cb, cc)
	if err := cb.Err(); err != nil {
		return nil, err
	}
	return unexpected(""), nil
}

// splitFile returns the parsed header and the data section of a
// safetensors file.
func splitFile(t *testing.T, raw []byte) (map[string]json.RawMessage, []byte) {
	t.Helper()
	n := binary.LittleEndian.Uint64(raw)
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr, raw[8+n:]
}

func joinFile(t *testing.T, hdr map[string]json.RawMessage, data []byte) []byte {
	t.Helper()
	js, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	return append(append(out, js...), data...)
}

type entry struct {
	DType   string  `json:"dtype"`
	Shape   []int   `json:"shape"`
	Offsets []int64 `json:"data_offsets"`
}

func editEntry(t *testing.T, hdr map[string]json.RawMessage, key string, fn func(*entry)) {
	t.Helper()
	var e entry
	if err := json.Unmarshal(hdr[key], &e); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	fn(&e)
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	hdr[key] = raw
}

// TestBadInputSingleFile feeds broken checkpoints through the real loading
// path (OpenCheckpoint, then the three models) and checks that each gives
// one line naming the file and the tensor or field at fault.
func TestBadInputSingleFile(t *testing.T) {
	dir := t.TempDir()
	params := tinyParams(t)
	good := filepath.Join(dir, "good.safetensors")
	if err := sd.WriteRandomCheckpoint(good, params, safetensors.F16, 1, nil); err != nil {
		t.Fatal(err)
	}
	if un, err := loadAll(good); err != nil || len(un) > 0 {
		t.Fatalf("the good file: err %v, unexpected %v", err, un)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	conv := sd.UNetPrefix + "input_blocks.1.0.in_layers.2.weight" // [32, 32, 3, 3]
	attn := sd.VAEPrefix + "decoder.mid.attn_1.q.weight"          // [128, 128, 1, 1]
	cases := []struct {
		name  string
		bytes func() []byte
		write func(path string) // instead of bytes
		want  []string          // substrings besides the path
	}{
		{name: "not safetensors", bytes: func() []byte {
			return []byte("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 2132625894\n")
		}, want: []string{"header"}},
		{name: "empty", bytes: func() []byte { return nil }},
		{name: "truncated header", bytes: func() []byte { return raw[:200] }, want: []string{"header"}},
		{name: "truncated data", bytes: func() []byte { return raw[:len(raw)/2] }},
		{name: "offsets past the end", bytes: func() []byte {
			h, d := splitFile(t, raw)
			editEntry(t, h, conv, func(e *entry) { e.Offsets[1] = int64(len(d)) + 1000 })
			return joinFile(t, h, d)
		}, want: []string{conv}},
		{name: "offsets disagree with shape", bytes: func() []byte {
			h, d := splitFile(t, raw)
			editEntry(t, h, conv, func(e *entry) { e.Offsets[1] -= 2 })
			return joinFile(t, h, d)
		}, want: []string{conv}},
		{name: "overlapping offsets", bytes: func() []byte {
			h, d := splitFile(t, raw)
			var other entry
			json.Unmarshal(h[attn], &other)
			editEntry(t, h, conv, func(e *entry) {
				n := e.Offsets[1] - e.Offsets[0]
				e.Offsets[0] = other.Offsets[0]
				e.Offsets[1] = other.Offsets[0] + n
			})
			return joinFile(t, h, d)
		}, want: []string{}},
		{name: "wrong shape", bytes: func() []byte {
			h, d := splitFile(t, raw)
			editEntry(t, h, conv, func(e *entry) { e.Shape = []int{32, 32, 9, 1} })
			return joinFile(t, h, d)
		}, want: []string{conv, "shape", "[32,32,9,1]"}},
		{name: "wrong dtype", bytes: func() []byte {
			h, d := splitFile(t, raw)
			editEntry(t, h, attn, func(e *entry) { e.DType = "I16" })
			return joinFile(t, h, d)
		}, want: []string{attn}},
		{name: "missing tensor", write: func(path string) {
			var ps []nn.ParamSpec
			for _, p := range params {
				if p.Key != attn {
					ps = append(ps, p)
				}
			}
			if err := sd.WriteRandomCheckpoint(path, ps, safetensors.F16, 1, nil); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"missing", attn}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".safetensors")
			if c.write != nil {
				c.write(path)
			} else if err := os.WriteFile(path, c.bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			un, err := loadAll(path)
			checkOneLine(t, err, append([]string{path}, c.want...))
			if err == nil {
				t.Logf("unexpected keys: %v", un)
			}
		})
	}

	// An unexpected tensor is reported by name; ignored ones are not.
	t.Run("unexpected tensor", func(t *testing.T) {
		extra := append(append([]nn.ParamSpec(nil), params...),
			nn.ParamSpec{Key: sd.UNetPrefix + "input_blocks.1.0.extra.weight", Shape: tensor.Shape{4}})
		path := filepath.Join(dir, "extra.safetensors")
		if err := sd.WriteRandomCheckpoint(path, extra, safetensors.F16, 1, nil); err != nil {
			t.Fatal(err)
		}
		un, err := loadAll(path)
		if err != nil || len(un) != 1 || un[0] != sd.UNetPrefix+"input_blocks.1.0.extra.weight" {
			t.Errorf("err %v, unexpected %v; want only the extra tensor", err, un)
		}
	})
}

// checkOneLine wants a non-nil, one-line error holding every substring.
func checkOneLine(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want an error naming %q", want)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not name %q", msg, w)
		}
	}
	t.Logf("%s", msg)
}

// TestBadInputDiffusers checks the same for diffusers folders: broken or
// missing weights files, missing and misshaped tensors, unexpected ones,
// and folders of models loco does not train.
func TestBadInputDiffusers(t *testing.T) {
	uc, vc, cc := tinyCases(t)
	dq := "vae/decoder.mid_block.attentions.0.to_q.weight"
	cases := []struct {
		name  string
		o     folderOpts
		edit  func(t *testing.T, dir string)
		open  bool     // the error comes from OpenDiffusers
		want  []string // substrings; "DIR" stands for the folder
		unexp []string // instead of an error: these unexpected tensors
	}{
		{name: "missing tensor", o: folderOpts{drop: dq},
			want: []string{"DIR/vae/diffusion_pytorch_model.safetensors", "missing", "decoder.mid_block.attentions.0.to_q.weight", "decoder.mid.attn_1.q.weight"}},
		{name: "wrong shape", o: folderOpts{reshape: map[string][]int{dq: {256, 64}}},
			want: []string{"DIR/vae/diffusion_pytorch_model.safetensors", "decoder.mid_block.attentions.0.to_q.weight", "[256,64]"}},
		{name: "unexpected tensor", o: folderOpts{extra: map[string][]int{"unet/down_blocks.0.resnets.0.extra.weight": {3}}},
			unexp: []string{"unet/down_blocks.0.resnets.0.extra.weight"}},
		{name: "no text encoder", edit: func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "text_encoder"))
		}, want: []string{"DIR/text_encoder/model.safetensors", "text_model.embeddings.token_embedding.weight", "no such file"}},
		{name: "not safetensors", open: true, edit: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"), []byte("<html>rate limited</html>"), 0o644)
		}, want: []string{"DIR/unet/diffusion_pytorch_model.safetensors"}},
		{name: "truncated", open: true, edit: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-100)
		}, want: []string{"DIR/vae/diffusion_pytorch_model.safetensors"}},
		{name: "pickle only", open: true, edit: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"))
			os.WriteFile(filepath.Join(dir, "unet", "diffusion_pytorch_model.bin"), []byte("PK\x03\x04"), 0o644)
		}, want: []string{"DIR/unet/diffusion_pytorch_model.bin", "pickle"}},
		{name: "no unet", open: true, edit: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"))
		}, want: []string{"DIR/unet/diffusion_pytorch_model.safetensors", "not found"}},
		{name: "sdxl", open: true, edit: func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "text_encoder_2"), 0o755)
		}, want: []string{"DIR", "SDXL", "text_encoder_2"}},
		{name: "sd2 config", open: true, o: folderOpts{configs: map[string]any{"unet": map[string]any{"cross_attention_dim": 1024}}},
			want: []string{"DIR/unet/config.json", "cross_attention_dim", "1024"}},
		{name: "inpainting config", open: true, o: folderOpts{configs: map[string]any{"unet": map[string]any{"in_channels": 9}}},
			want: []string{"DIR/unet/config.json", "in_channels", "9"}},
		{name: "v-prediction", open: true, edit: func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "scheduler"), 0o755)
			os.WriteFile(filepath.Join(dir, "scheduler", "scheduler_config.json"), []byte(`{"prediction_type": "v_prediction"}`), 0o644)
		}, want: []string{"DIR/scheduler/scheduler_config.json", "v_prediction"}},
		{name: "corrupt config", open: true, edit: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "vae", "config.json"), []byte(`{"layers_per_block": `), 0o644)
		}, want: []string{"DIR/vae/config.json"}},
		{name: "inpainting weights", open: true, o: folderOpts{reshape: map[string][]int{"unet/conv_in.weight": {32, 9, 4, 1}}},
			want: []string{"DIR/unet/diffusion_pytorch_model.safetensors", "conv_in.weight", "9 input channels"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeDiffusers(t, dir, uc, vc, cc, c.o)
			if c.edit != nil {
				c.edit(t, dir)
			}
			want := make([]string, len(c.want))
			for i, w := range c.want {
				want[i] = strings.ReplaceAll(w, "DIR", dir)
			}
			d, err := sd.OpenDiffusers(dir)
			if c.open {
				checkOneLine(t, err, want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			un, err := loadGoldenModels(t, d, uc.Config, vc.Config, cc.Config)
			if c.unexp != nil {
				if err != nil || strings.Join(un, ",") != strings.Join(c.unexp, ",") {
					t.Errorf("err %v, unexpected %v; want %v", err, un, c.unexp)
				}
				return
			}
			checkOneLine(t, err, want)
		})
	}
}

// loadGoldenModels builds the golden tiny models from a diffusers folder.
func loadGoldenModels(t *testing.T, d *sd.Diffusers, ucRaw, vcRaw, ccRaw json.RawMessage) ([]string, error) {
	t.Helper()
	var ucfg unet.Config
	if err := json.Unmarshal(ucRaw, &ucfg); err != nil {
		t.Fatal(err)
	}
	vcfg, err := vae.ConfigFromLDM(vcRaw)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := clip.ParseConfig(ccRaw)
	if err != nil {
		t.Fatal(err)
	}
	src := d.Source(tensor.NewEngine(cpu.New()), tensor.F32)
	if _, err := unet.New(nn.NewBuilder(sd.UNetPrefix, src), ucfg); err != nil {
		return nil, err
	}
	vb := nn.NewBuilder(sd.VAEPrefix, src)
	vae.New(vb, vcfg)
	if err := vb.Err(); err != nil {
		return nil, err
	}
	cb := nn.NewBuilder(sd.TEPrefix, src)
	clip.New(cb, ccfg)
	if err := cb.Err(); err != nil {
		return nil, err
	}
	return src.Unexpected(""), nil
}
