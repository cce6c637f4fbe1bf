package merge

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/lycoris"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// TestInspect covers a network (ranks and alphas per group, SD 1.x check
// failing for the tiny sizes and for SDXL names) and a checkpoint.
func TestInspect(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	info, err := Inspect(uc.Path("locon.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != "network" || info.Algorithm != "LoCon" || info.Modules != 282 {
		t.Fatalf("%+v", info)
	}
	groups := map[string]*Group{}
	for _, g := range info.Groups {
		groups[g.Name] = g
	}
	if g := groups["UNet conv 3×3"]; g == nil || g.Ranks[4] != g.Modules || g.Alphas["4.0"] != g.Modules {
		t.Errorf("3×3 group %+v", g)
	}
	if g := groups["UNet Linear"]; g == nil || g.Ranks[8] != g.Modules || g.Alphas["4.0"] != g.Modules {
		t.Errorf("Linear group %+v", g)
	}
	// The tiny model's channels are not SD 1.5's: every module is reported.
	if len(info.NotSD1) != 282 {
		t.Errorf("%d modules reported as not SD 1.x, want 282", len(info.NotSD1))
	}
	var buf bytes.Buffer
	info.WriteText(&buf)
	if !strings.Contains(buf.String(), "UNet conv 3×3") || !strings.Contains(buf.String(), "ss_network_dim = 8") {
		t.Errorf("text:\n%s", buf.String())
	}

	// An SDXL-style name and a right-sized SD 1.5 module.
	dir := t.TempDir()
	tab := SD15Table()
	l := tab.Layers["lora_te_text_model_encoder_layers_0_mlp_fc1"]
	m := &lycoris.FileModule{Name: l.Name, Down: make([]float32, 2*768), Up: make([]float32, 3072*2),
		DownShape: []int{2, 768}, UpShape: []int{3072, 2}, Alpha: 1, HasAlpha: true}
	m.Down[0], m.Up[0] = 1, 1
	x := *m
	x.Name = "lora_te1_text_model_encoder_layers_0_mlp_fc1"
	p := filepath.Join(dir, "n.safetensors")
	writeNetwork(t, p, []*lycoris.FileModule{m, &x}, safetensors.F16, nil)
	info, err = Inspect(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.NotSD1) != 1 || !strings.HasPrefix(info.NotSD1[0], "lora_te1_") {
		t.Errorf("not SD 1.x: %v", info.NotSD1)
	}

	base := tinyCheckpoint(t, dir)
	info, err = Inspect(base)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != "checkpoint" || info.SD1 != "ok" || len(info.Parts) != 3 {
		t.Errorf("checkpoint info %+v", info)
	}
}

// TestInspectLoHa inspects a LoHa network built on the shape-only SD 1.5
// UNet: every module is counted and fits an SD 1.x layer.
func TestInspectLoHa(t *testing.T) {
	u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, nil), unet.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	lin, conv := u.Layers()
	e := tensor.NewEngine(cpu.New())
	net, err := lycoris.New(e, lycoris.Config{Algo: lycoris.AlgoLoHa, Dim: 4, Alpha: 2, ConvDim: 2, ConvAlpha: 1},
		lin, conv, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "loha.safetensors")
	if err := net.Save(path, safetensors.F16, nil); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Algorithm != "LoHa" || info.Modules != 282 || len(info.NotSD1) != 0 || len(info.Other) != 0 {
		t.Errorf("algorithm %q, %d modules, not SD 1.x %v, other keys %v", info.Algorithm, info.Modules, info.NotSD1, info.Other)
	}
}
