package merge

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// TestApplyBadInput: foreign networks are refused with the modules listed,
// a ratio must parse, base keys must exist, the output must not be an input,
// and no output file is left behind.
func TestApplyBadInput(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	good := uc.Path("locon.safetensors")
	src := readNet(t, good)
	rng := rand.New(rand.NewPCG(4, 4))
	mk := func(name string, out, in int) *lycoris.FileModule {
		return randomModule(rng, &Layer{Name: name, Shape: []int{out, in}, Kernel: 1}, 2, 1, false)
	}
	sdxl := filepath.Join(dir, "sdxl.safetensors")
	writeNetwork(t, sdxl, []*lycoris.FileModule{src.Modules[0],
		mk("lora_te1_text_model_encoder_layers_0_mlp_fc1", 3072, 768),
		mk("lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q", 640, 640)}, safetensors.F16, nil)
	sd2 := filepath.Join(dir, "sd2.safetensors")
	writeNetwork(t, sd2, []*lycoris.FileModule{mk("lora_te_text_model_encoder_layers_22_mlp_fc1", 4096, 1024)}, safetensors.F16, nil)
	sd2w := filepath.Join(dir, "sd2w.safetensors")
	writeNetwork(t, sd2w, []*lycoris.FileModule{mk("lora_te_text_model_encoder_layers_0_mlp_fc1", 4096, 1024)}, safetensors.F16, nil)
	// 1×1 down on a 3×3 layer without lora_mid (kohya would broadcast it).
	bc := *src.Modules[0] // lora_unet_conv_in, [4, 4, 3, 3] down
	bc.DownShape, bc.Down = []int{4, 4, 1, 1}, bc.Down[:16]
	broadcast := filepath.Join(dir, "bcast.safetensors")
	writeNetwork(t, broadcast, []*lycoris.FileModule{&bc}, safetensors.F32, nil)
	key := "model.diffusion_model.input_blocks.1.1.proj_in.weight"
	dir2 := filepath.Join(dir, "missing")
	os.Mkdir(dir2, 0o755)
	missing := tinyCheckpoint(t, dir2, key)

	out := filepath.Join(dir, "out.safetensors")
	for _, c := range []struct {
		name, base string
		nets       []Input
		out        string
		want       []string
	}{
		{"sdxl", base, []Input{{sdxl, 1, 1}}, out, []string{"2 of 3 module(s) match no layer", "lora_te1_text_model_encoder_layers_0_mlp_fc1", "transformer_blocks_1_attn1_to_q", "SDXL"}},
		{"sd2 layers", base, []Input{{sd2, 1, 1}}, out, []string{"lora_te_text_model_encoder_layers_22_mlp_fc1", "SD 2.x"}},
		{"sd2 width", base, []Input{{sd2w, 1, 1}}, out, []string{"lora_te_text_model_encoder_layers_0_mlp_fc1", "[256 64]", "SD 2.x"}},
		{"broadcast", base, []Input{{broadcast, 1, 1}}, out, []string{"lora_unet_conv_in", "1×1 on a 3×3 layer"}},
		{"missing keys", missing, []Input{{good, 1, 1}}, out, []string{"lacks 1 layer weight", key}},
		{"output is base", base, []Input{{good, 1, 1}}, base, []string{"also an input"}},
		{"output is network", base, []Input{{good, 1, 1}}, good, []string{"also an input"}},
		{"no network file", base, []Input{{filepath.Join(dir, "nope.safetensors"), 1, 1}}, out, []string{"nope.safetensors"}},
	} {
		_, err := Apply(ApplyOptions{Base: c.base, Networks: c.nets, Output: c.out})
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s: output file left behind", c.name)
		}
	}
}

func TestParseInput(t *testing.T) {
	dir := t.TempDir()
	odd := filepath.Join(dir, "a:b.safetensors")
	os.WriteFile(odd, nil, 0o644)
	for _, c := range []struct {
		arg      string
		path     string
		te, unet float64
		err      string
	}{
		{"net.safetensors", "net.safetensors", 1, 1, ""},
		{"net.safetensors:0.8", "net.safetensors", 0.8, 0.8, ""},
		{"net.safetensors:0.5:1.2", "net.safetensors", 0.5, 1.2, ""},
		{"net.safetensors:-1", "net.safetensors", -1, -1, ""},
		{odd, odd, 1, 1, ""},
		{"net.safetensors:abc", "", 0, 0, `ratio "abc" does not parse`},
		{"net.safetensors:0.8:x", "", 0, 0, `ratio "x" does not parse`},
		{"net.safetensors:", "", 0, 0, `ratio "" does not parse`},
		{":0.8", "", 0, 0, "no file name"},
		{"net.safetensors:NaN", "", 0, 0, "does not parse"},
	} {
		in, err := ParseInput(c.arg)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.arg, err, c.err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.arg, err)
		case in.Path != c.path || in.TE != c.te || in.UNet != c.unet:
			t.Errorf("%q: %+v", c.arg, in)
		}
	}
}
