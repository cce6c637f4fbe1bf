package sd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

func writeST(t *testing.T, path string, shapes map[string][]int, md map[string]string) {
	t.Helper()
	var ts []safetensors.Tensor
	for k, s := range shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i%13) - 6
		}
		x, err := safetensors.FromFloat32(k, safetensors.F32, s, v)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, x)
	}
	if err := safetensors.WriteFile(path, ts, md); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCheckpointRefusals(t *testing.T) {
	dir := t.TempDir()
	sd1 := map[string][]int{UNetPrefix + "input_blocks.0.0.weight": {8, 4, 3, 3}}
	cases := []struct {
		name   string
		shapes map[string][]int
		md     map[string]string
		want   string // "" = accepted
	}{
		{"sd1", sd1, nil, ""},
		{"sdxl", map[string][]int{"conditioner.embedders.0.transformer.text_model.embeddings.position_ids": {1, 77}}, nil, "SDXL"},
		{"sd2", map[string][]int{"cond_stage_model.model.ln_final.weight": {1024}}, nil, "SD 2.x"},
		{"sd2ctx", map[string][]int{UNetPrefix + "input_blocks.0.0.weight": {8, 4, 3, 3},
			UNetPrefix + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": {320, 1024}}, nil, "SD 2.x"},
		{"inpaint", map[string][]int{UNetPrefix + "input_blocks.0.0.weight": {8, 9, 3, 3}}, nil, "inpainting"},
		{"vpred", sd1, map[string]string{"modelspec.prediction_type": "v"}, "v-prediction"},
		{"empty", map[string][]int{"foo": {2}}, nil, "not an SD 1.x checkpoint"},
		{"diffusers", map[string][]int{"down_blocks.0.resnets.0.conv1.weight": {2}}, nil, "diffusers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".safetensors")
			writeST(t, p, c.shapes, c.md)
			ck, err := OpenCheckpoint(p)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				ck.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and mentioning %q", err, p, c.want)
			}
		})
	}
}

func TestOpenCheckpointPickle(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"model.ckpt":        []byte("PK\x03\x04rest"),
		"model.safetensors": {0x80, 0x02, 'c', 'x'},
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenCheckpoint(p)
		if err == nil || !strings.Contains(err.Error(), "pickle") {
			t.Errorf("%s: error %v, want a pickle message", name, err)
		}
	}
	if _, err := OpenCheckpoint(filepath.Join(dir, "missing.safetensors")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestCheckpointEMAAndIgnoreList(t *testing.T) {
	dir := t.TempDir()
	k := UNetPrefix + "input_blocks.0.0.weight"
	p := filepath.Join(dir, "m.safetensors")
	writeST(t, p, map[string][]int{
		k:                                    {8, 4, 3, 3},
		emaKey(k):                            {8, 4, 3, 3},
		"alphas_cumprod":                     {1000},
		UNetPrefix + "x":                     {3},
		TEPrefix + "embeddings.position_ids": {1, 77},
	}, nil)
	if got := emaKey(k); got != "model_ema.diffusion_modelinput_blocks00weight" {
		t.Fatalf("emaKey = %s", got)
	}
	ck, err := OpenCheckpoint(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	ck.UseEMA = true
	e := tensor.NewEngine(cpu.New())
	src := ck.Source(e, tensor.F32)
	w, err := src.Load(k, tensor.Shape{8, 4, 3, 3})
	if err != nil || w.Len() != 288 {
		t.Fatalf("load: %v", err)
	}
	if _, err := src.Load(UNetPrefix+"missing", tensor.Shape{1}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing key: %v", err)
	}
	if _, err := src.Load(k, tensor.Shape{8, 4, 1, 1}); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Errorf("wrong shape: %v", err)
	}
	un := src.Unexpected("")
	if len(un) != 1 || un[0] != UNetPrefix+"x" {
		t.Errorf("unexpected keys %v, want only %sx", un, UNetPrefix)
	}
}
