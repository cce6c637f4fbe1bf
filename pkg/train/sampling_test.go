package train_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
	"loco/pkg/tensor"
	"loco/pkg/train"
	"loco/pkg/train/traintest"
)

func TestSampleEvery(t *testing.T) {
	for _, c := range []struct {
		every             train.SampleEvery
		step, epoch       int
		epochEnd, enabled bool
		want              bool
	}{
		{train.SampleEvery{}, 4, 1, true, false, false},
		{train.SampleEvery{Epochs: 1}, 3, 1, true, true, true},
		{train.SampleEvery{Epochs: 1}, 2, 1, false, true, false},
		{train.SampleEvery{Epochs: 2}, 3, 1, true, true, false},
		{train.SampleEvery{Epochs: 2}, 6, 2, true, true, true},
		{train.SampleEvery{Epochs: 2, Steps: 1}, 5, 2, false, true, false}, // epochs win
		{train.SampleEvery{Steps: 2}, 4, 1, false, true, true},
		{train.SampleEvery{Steps: 2}, 3, 1, true, true, false},
	} {
		if got := c.every.Due(c.step, c.epoch, c.epochEnd); got != c.want || c.every.Enabled() != c.enabled {
			t.Errorf("%+v.Due(%d, %d, %v) = %v (enabled %v), want %v (enabled %v)", c.every, c.step, c.epoch, c.epochEnd,
				got, c.every.Enabled(), c.want, c.enabled)
		}
	}
}

func TestSampleNames(t *testing.T) {
	at := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	for _, c := range []struct {
		r          train.SampleRound
		name       string
		i          int
		seed       int64
		hasSeed    bool
		want, shee string
	}{
		{train.SampleRound{Epoch: 3, Step: 12, At: at}, "pralyco", 0, 5, false, "pralyco_e000003_00_20231114221320.png", "pralyco_e000003_sheet.png"},
		{train.SampleRound{Step: 250, At: at}, "pralyco", 12, 42, true, "pralyco_000250_12_20231114221320_42.png", "pralyco_000250_sheet.png"},
		{train.SampleRound{Step: 0, At: at}, "", 1, 7, true, "000000_01_20231114221320_7.png", "000000_sheet.png"},
	} {
		if got := c.r.FileName(c.name, c.i, c.seed, c.hasSeed); got != c.want {
			t.Errorf("FileName = %q, want %q", got, c.want)
		}
		if got := c.r.SheetName(c.name); got != c.shee {
			t.Errorf("SheetName = %q, want %q", got, c.shee)
		}
	}
	if a, b := train.SampleSeed(1, 3, 0), train.SampleSeed(1, 3, 1); a == b || a < 0 || a != train.SampleSeed(1, 3, 0) {
		t.Errorf("SampleSeed: %d, %d: want distinct, non-negative, repeatable", a, b)
	}
}

// outputs runs the UNet and the text encoder of m on fixed inputs.
func outputs(t *testing.T, m train.Models) []float32 {
	t.Helper()
	e := m.E
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 4*8*8)
	ctx := make([]float32, 77*32)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for i := range ctx {
		ctx[i] = float32(r.NormFloat64())
	}
	ids := make([]int32, 77)
	ids[0], ids[1], ids[2] = 49406, 320, 49407
	for i := 3; i < 77; i++ {
		ids[i] = 49407
	}
	var out []float32
	err := tensor.Catch(func() {
		e.NoGrad(func() {
			out = append(out, m.UNet.Forward(e.FromFloat32(x, 1, 4, 8, 8), []float32{500}, e.FromFloat32(ctx, 1, 77, 32)).Float32s()...)
			out = append(out, m.TE.Encode([][]int32{ids}, 1).Float32s()...)
		})
	})
	e.EndStep()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

// TestAttachNetwork: a network file attached at a multiplier gives the
// outputs of the network it was saved from at that multiplier; two
// attachments add up; a mismatched file is refused.
func TestAttachNetwork(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "model.safetensors")
	if err := traintest.WriteCheckpoint(ck, 1, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	e := tensor.NewEngine(cpu.New())
	m, _, _, err := train.LoadModels(ck, e, tensor.F32, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := outputs(t, m)
	ul, uc := m.UNet.Layers()
	lins, convs, err := lycoris.SelectUNet(lycoris.PresetFull, ul, uc)
	if err != nil {
		t.Fatal(err)
	}
	for _, nl := range m.TE.Linears() {
		lins = append(lins, nl.L)
	}
	net, err := lycoris.New(e, lycoris.Config{Dim: 4, Alpha: 2, ConvDim: 2, ConvAlpha: 1, Tucker: true}, lins, convs, rand.New(rand.NewPCG(5, 6)))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, en := range net.Entries {
		v := make([]float32, en.Shape.Numel())
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.1)
		}
		if err := net.SetValues(en.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "net.safetensors")
	if err := net.Save(path, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	net.Multiplier = 0.5
	want := outputs(t, m)
	if relErr(want, base) < 1e-3 {
		t.Fatalf("the random network hardly changes the outputs (%g): the test would prove nothing", relErr(want, base))
	}
	lycoris.Detach(lins, convs)
	if got := outputs(t, m); relErr(got, base) != 0 {
		t.Fatalf("Detach did not restore the base model")
	}
	f, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := train.AttachNetwork(m, f, 0.5, 0.5); err != nil {
		t.Fatal(err)
	}
	if d := relErr(outputs(t, m), want); d > 1e-6 {
		t.Errorf("attached at 0.5: relative error %g against the saved network at 0.5", d)
	}
	// 0.5 = 0.25 + 0.25: stacking the file twice.
	ul2, uc2 := m.UNet.Layers()
	lycoris.Detach(ul2, uc2)
	for _, nl := range m.TE.Linears() {
		nl.L.Adapters = nil
	}
	for range 2 {
		if _, err := train.AttachNetwork(m, f, 0.25, 0.25); err != nil {
			t.Fatal(err)
		}
	}
	if d := relErr(outputs(t, m), want); d > 1e-5 {
		t.Errorf("attached twice at 0.25: relative error %g against the saved network at 0.5", d)
	}
	// A module the model does not have.
	bad := &lycoris.File{Path: "other.safetensors", Modules: append([]*lycoris.FileModule{{Name: "lora_unet_input_blocks_4_1_proj_in",
		Down: []float32{1}, Up: []float32{1}, DownShape: []int{1, 1}, UpShape: []int{1, 1}}}, f.Modules[:1]...)}
	if _, err := train.AttachNetwork(m, bad, 1, 1); err == nil || !strings.Contains(err.Error(), "other.safetensors: 1 of 2 modules match no layer") {
		t.Errorf("mismatched network: got error %v", err)
	}
}
